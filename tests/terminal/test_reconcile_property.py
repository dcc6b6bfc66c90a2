"""Property: random sales, refunds, voids, declines, timeouts and offline approvals, with the host
failing at random points; after settlement the terminal, the host's ledger and the payout agree
to the cent (DESIGN.md invariant 8)."""

from __future__ import annotations

import socket
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tillvault.domain.cards import luhn_check_digit
from tillvault.host.ledger import HostLedger
from tillvault.host.payout import run_payout
from tillvault.host.server import AcquirerHost
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.reconcile import reconcile
from tillvault.terminal.settle import batch_totals
from tillvault.terminal.terminal import Terminal

PANS = [p + luhn_check_digit(p) for p in (f"4{n:014d}" for n in range(11, 19))]
POOR = PANS[-1]  # a card with almost no credit: declined 51

op = st.one_of(
    st.tuples(st.just("sale"), st.integers(1, 50_000), st.integers(0, len(PANS) - 1)),
    st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 100)),
    st.tuples(st.just("void"), st.integers(0, 30), st.just(0)),
    st.tuples(st.just("timeout"), st.integers(1, 9_000), st.integers(0, len(PANS) - 2)),
    st.tuples(st.just("offline"), st.integers(1, 9_000), st.integers(0, len(PANS) - 2)),
    st.tuples(st.just("garbage"), st.integers(1, 9_000), st.integers(0, len(PANS) - 2)),
    st.tuples(st.just("settle"), st.just(0), st.just(0)),
)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(op, min_size=5, max_size=35))
def test_three_views_agree_after_random_histories(tmp_path_factory, ops) -> None:  # type: ignore[no-untyped-def]
    work: Path = tmp_path_factory.mktemp("prop")
    with AcquirerHost(work / "host", secret=b"prop-secret", today=date.today) as host:
        host.ledger.set_card(POOR, currency="156", credit_limit=100, balance=0)
        t = Terminal.init(work / "t", terminal_id="TVPROP01", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
        t.config.host_timeout_s = 0.3
        dead = f"127.0.0.1:{_dead_port()}"
        approved: list[int] = []
        try:
            for kind, a, b in ops:
                if kind == "sale":
                    r = t.sale(a, PANS[b], "3012")
                elif kind == "refund" and approved:
                    orig = t.find_transaction(approved[a % len(approved)])
                    pan = next(p for p in PANS if p.endswith(orig["masked_pan"][-4:]))
                    r = t.refund(max(1, orig["amount"] * b // 100), pan, "3012", original_invoice=orig["invoice"])
                    continue
                elif kind == "void" and approved:
                    r = t.void(approved[a % len(approved)])
                    continue
                elif kind in ("timeout", "garbage"):
                    host.set_faults({"drop" if kind == "timeout" else "garbage": {"count": 1, "mtis": ["0200"]}})
                    r = t.sale(a, PANS[b], "3012")
                    host.set_faults(None)
                elif kind == "offline":
                    t.use_host(dead)
                    r = t.sale(a, PANS[b], "3012")
                    t.use_host(host.address)
                elif kind == "settle":
                    t.settle()
                    continue
                else:
                    continue
                if r.status in ("approved", "offline_approved"):
                    approved.append(r.invoice)
            report = t.settle()
            assert report.balanced, report.to_dict()
            # Every closed batch: terminal totals == host totals.
            ledger = HostLedger(work / "host", secret=b"prop-secret")
            try:
                for batch in [
                    int(x[0]) for x in t.journal.conn.execute("SELECT batch FROM batches WHERE status = 'closed'")
                ]:
                    hot = batch_totals(t, batch)
                    host_totals = ledger.batch_totals("TVPROP01", batch)
                    if t.records.list(batch=batch):  # not yet sealed away
                        assert hot.balances_with(host_totals)
                run_payout(ledger, date.today(), today=date.today())
            finally:
                ledger.close()
            import os

            os.environ["TILLVAULT_HOST_SECRET"] = "prop-secret"
            result = reconcile(t, work / "host")
            assert result["differences"] == [], result["differences"][:5]
            assert t.scrub()["ok"]
        finally:
            t.close()
