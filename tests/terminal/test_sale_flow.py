"""The sale flow against the reference host as a real separate process over TCP."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tillvault.errors import InvalidInput
from tillvault.host.ledger import HostLedger
from tillvault.host.process import HostProcess
from tillvault.terminal.terminal import Terminal

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
UNIONPAY = "6212345678901235"  # fails Luhn: UnionPay is exempt
EXPIRY = "3012"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(t: Terminal, invoice: int) -> list[str]:
    return [e.kind for e in t.journal.events() if e.data().get("invoice") == invoice]


def test_approved_sale_journals_intent_before_outcome_and_the_host_agrees(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger
) -> None:
    t = make_terminal()
    r = t.sale(1234, VISA, EXPIRY)
    assert r.status == "approved", r.reason
    assert r.masked_pan == "411111******1111" and r.rrn and r.auth_code
    assert _events(t, r.invoice) == ["intent", "outcome"]
    intent = next(e for e in t.journal.events() if e.kind == "intent" and e.data()["invoice"] == r.invoice)
    assert intent.data()["status"] == "pending"
    host_rows = [a for a in host_ledger.authorizations(t.config.terminal_id) if a.rrn == r.rrn]
    assert len(host_rows) == 1 and host_rows[0].amount == 1234
    assert "APPROVED" in r.receipt and VISA not in r.receipt


def test_unionpay_card_failing_luhn_is_approved(make_terminal: Callable[..., Terminal]) -> None:
    assert make_terminal().sale(500, UNIONPAY, EXPIRY).status == "approved"


@pytest.mark.parametrize(
    ("pan", "brand"),
    [("501800000009", "maestro"), ("6759649826438453", "maestro"), ("2200000000000004", "mir"),
     ("6200000000000005", "unionpay"), ("36227206271667", "diners"), ("4222222222222", "visa")],
)  # fmt: skip
def test_every_length_the_card_checks_allow_the_host_approves(
    make_terminal: Callable[..., Terminal], pan: str, brand: str
) -> None:
    # The host's own checks must not be narrower than the terminal's (a 12-digit Maestro was declined 14).
    r = make_terminal().sale(500, pan, "3012")
    assert (r.status, r.brand) == ("approved", brand), r.reason


def test_issuer_declines_insufficient_funds_51(make_terminal: Callable[..., Terminal], host_ledger: HostLedger) -> None:
    t = make_terminal()
    host_ledger.set_card(MASTERCARD, currency="156", credit_limit=1000, balance=0)
    r = t.sale(5000, MASTERCARD, EXPIRY)
    assert r.status == "declined" and r.response_code == "51"
    assert "insufficient funds" in r.reason
    assert t.records.get(r.invoice)["status"] == "declined"


def test_host_declines_over_its_amount_limit_61(make_terminal: Callable[..., Terminal]) -> None:
    r = make_terminal().sale(150_000, VISA, EXPIRY)
    assert (r.status, r.response_code) == ("declined", "61")


def test_issuer_unavailable_91(make_terminal: Callable[..., Terminal], host: HostProcess) -> None:
    t = make_terminal()
    host.set_faults({"decline": True})
    r = t.sale(100, VISA, EXPIRY)
    assert (r.status, r.response_code) == ("declined", "91")


def test_expired_and_invalid_cards_are_refused_locally_before_the_host(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger
) -> None:
    t = make_terminal()
    before = len(host_ledger.authorizations(t.config.terminal_id))
    expired = t.sale(100, VISA, "2001")
    bad = t.sale(100, "4111111111111112", EXPIRY)
    assert expired.status == bad.status == "refused"
    assert ("expir" in expired.reason and "Luhn" in bad.reason) or "check digit" in bad.reason.lower()
    assert len(host_ledger.authorizations(t.config.terminal_id)) == before
    assert t.records.list() == []


def test_timeout_queues_a_reversal_that_reverses_at_the_host(
    make_terminal: Callable[..., Terminal], host: HostProcess, host_ledger: HostLedger
) -> None:
    t = make_terminal(timeout=0.5)
    host.set_faults({"delay": {"seconds": 1.5, "count": 1, "mtis": ["0200"]}})
    r = t.sale(2500, VISA, EXPIRY)
    assert r.status == "not_completed"
    assert "reversal" in r.reason
    assert [m["kind"] for m in t.records.outbox_pending()] == ["reversal"]
    host.set_faults(None)
    report = t.drain_outbox(force=True)
    assert report.delivered == 1 and report.remaining == 0
    assert t.records.get(r.invoice)["status"] == "reversed"
    live = [a for a in host_ledger.authorizations(t.config.terminal_id) if a.stan == f"{r.stan:06d}" and a.live]
    assert live == [], "the host must have reversed the charge"


def test_host_down_offline_approval_then_advice_delivered(
    make_terminal: Callable[..., Terminal], host: HostProcess, host_ledger: HostLedger
) -> None:
    t = make_terminal(host_address=f"127.0.0.1:{_free_port()}")
    small = t.sale(5000, VISA, EXPIRY)
    big = t.sale(50_000, VISA, EXPIRY)  # above the 200.00 floor limit
    assert small.status == "offline_approved" and small.auth_code.startswith("Y1")
    assert big.status == "declined" and "floor limit" in big.reason
    assert [m["kind"] for m in t.records.outbox_pending()] == ["advice"]
    # The host comes back (same terminal, real address): the advice is delivered.
    t.use_host(host.address)
    report = t.drain_outbox(force=True)
    assert report.delivered == 1 and report.remaining == 0
    rows = [a for a in host_ledger.authorizations(t.config.terminal_id) if a.stan == f"{small.stan:06d}"]
    assert len(rows) == 1 and rows[0].amount == 5000 and rows[0].mti == "0220"


def test_an_advice_the_host_cannot_take_now_is_sent_again_never_dropped(
    make_terminal: Callable[..., Terminal], host: HostProcess, host_ledger: HostLedger
) -> None:
    t = make_terminal(host_address=f"127.0.0.1:{_free_port()}")
    sale = t.sale(800, VISA, EXPIRY)
    assert sale.status == "offline_approved"
    t.use_host(host.address)
    host.set_faults({"decline": {"count": 1, "mtis": ["0220"]}})  # "91 issuer unavailable", once
    try:
        first = t.drain_outbox(force=True)
    finally:
        host.set_faults(None)
    assert first.delivered == 0 and first.remaining == 1 and "with 91" in first.last_error
    again = t.drain_outbox(force=True)
    assert again.delivered == 1 and again.remaining == 0
    rows = [a for a in host_ledger.authorizations(t.config.terminal_id) if a.stan == f"{sale.stan:06d}"]
    assert len(rows) == 1 and rows[0].amount == 800 and rows[0].mti == "0220"  # the card is charged


def test_a_decline_carries_the_hosts_own_words(make_terminal: Callable[..., Terminal], host_ledger: HostLedger) -> None:
    from datetime import date

    from tillvault.host.merchants import set_merchant

    t = make_terminal()
    set_merchant(host_ledger, t.merchant.merchant_id, today=date.today(), activation_min=100_00)
    first = t.sale(50_00, VISA, EXPIRY)
    assert first.status == "declined" and "not activated" in first.reason, first.reason
    assert t.sale(100_00, VISA, EXPIRY).status == "approved"


def test_the_hosts_words_are_masked_before_they_are_cut() -> None:
    from tillvault.terminal.sale import _host_text

    text = _host_text({"63": "x" * 180 + " card 4111111111111111 blocked"})
    assert "41111111111111" not in text and "411111******" in text


def test_offline_queue_waits_on_its_head_then_drains_in_order_across_pages(
    make_terminal: Callable[..., Terminal], host: HostProcess, host_ledger: HostLedger
) -> None:
    t = make_terminal(host_address=f"127.0.0.1:{_free_port()}", offline={"max_count": 1000})
    stans = [t.sale(100 + i, VISA, EXPIRY).stan for i in range(230)]  # more than one page of the queue
    pending = t.records.outbox_pending(limit=1000)
    assert len(pending) == 230
    # A failed drain reschedules the head (with back-off); the messages behind it wait for the head.
    assert 1 <= pending[0]["attempts"] <= 5 and all(m["attempts"] == 0 for m in pending[1:])
    assert t.records.outbox_head_due_ms() == pending[0]["next_attempt_ms"] > 0
    t.use_host(host.address)
    report = t.drain_outbox(force=True)
    assert report.delivered == 230 and report.remaining == 0 and t.records.outbox_head_due_ms() is None
    advised = {a.stan for a in host_ledger.authorizations(t.config.terminal_id) if a.mti == "0220"}
    assert advised == {f"{s:06d}" for s in stans}


def test_offline_caps_limit_exposure(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal(host_address=f"127.0.0.1:{_free_port()}", offline={"max_count": 2})
    results = [t.sale(100, VISA, EXPIRY).status for _ in range(3)]
    assert results == ["offline_approved", "offline_approved", "declined"]


def test_retry_with_the_same_idempotency_key_charges_once(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger
) -> None:
    t = make_terminal()
    a = t.sale(777, VISA, EXPIRY, idem_key="pos-42")
    b = t.sale(777, VISA, EXPIRY, idem_key="pos-42")
    assert a.invoice == b.invoice and b.status == "approved"
    assert len(t.records.list()) == 1
    assert len([x for x in host_ledger.authorizations(t.config.terminal_id) if x.rrn == a.rrn]) == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("operator_id", MASTERCARD, "operator id '555555******4444' is a card number"),
        ("operator_id", "%B4111111111111111^DOE/JOHN^3012101?", "operator id must be 1-32"),
        ("idem_key", "378282246310005", "idempotency key '378282*****0005' holds a card number"),
        ("idem_key", "x" * 129, "idempotency key must be 1-128 printable characters"),
        ("idem_key", "order\n42", "idempotency key must be 1-128 printable characters"),
    ],
)
def test_a_card_number_in_the_operator_or_idempotency_field_is_refused_and_never_stored(
    make_terminal: Callable[..., Terminal], field: str, value: str, message: str
) -> None:
    # A card swiped or keyed into the wrong field: both fields are kept and listed in clear.
    t = make_terminal()
    with pytest.raises(InvalidInput) as caught:
        t.sale(500, VISA, EXPIRY, **{field: value})
    assert message in str(caught.value) and "4111111111111111" not in str(caught.value)
    assert MASTERCARD not in str(caught.value) and "378282246310005" not in str(caught.value)
    assert t.records.list() == []  # nothing written, nothing sent
    sale = t.sale(500, VISA, EXPIRY, operator_id="cashier-1", idem_key="order-42")
    with pytest.raises(InvalidInput, match="card number"):
        t.void(sale.invoice, idem_key="6011111111111117")
    assert t.find_transaction(sale.invoice)["status"] == "approved"


def test_pending_intent_after_a_crash_is_reversed_not_dropped(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger
) -> None:
    t = make_terminal()
    # A sale that reached the host, then the terminal died before journalling the outcome.
    tx = t.records.record_intent(
        kind="sale", amount=4321, currency="CNY", business_date=t.business_date(), extra={"when": t.now().isoformat()}
    )
    data = t.data_dir
    t.close()
    t2 = Terminal.open(data, exclusive=True)
    try:
        assert t2.records.get(tx["invoice"])["status"] == "not_completed"
        assert [m["kind"] for m in t2.records.outbox_pending()] == ["reversal"]
        assert t2.drain_outbox(force=True).delivered == 1
        assert t2.records.get(tx["invoice"])["status"] == "reversed"
    finally:
        t2.close()


def test_void_cancels_the_sale_at_the_host(make_terminal: Callable[..., Terminal], host_ledger: HostLedger) -> None:
    t = make_terminal()
    sale = t.sale(3000, VISA, EXPIRY)
    void = t.void(sale.invoice)
    assert void.status == "approved", void.reason
    assert t.records.get(sale.invoice)["status"] == "voided"
    again = t.void(sale.invoice)
    assert again.status == "refused" and "voided" in again.reason


def test_refund_bounded_by_the_original_sale(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    sale = t.sale(3000, VISA, EXPIRY)
    assert t.refund(2000, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"
    over = t.refund(1500, VISA, EXPIRY, original_invoice=sale.invoice)
    assert over.status == "refused" and "exceeds" in over.reason
    other_card = t.refund(500, MASTERCARD, EXPIRY, original_invoice=sale.invoice)
    assert other_card.status == "refused" and "not the card" in other_card.reason


def test_per_card_daily_limit_refuses_with_the_limit_named(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal(limits={"max_per_card_per_day": 10_000, "currency": "CNY"})
    assert t.sale(8000, VISA, EXPIRY).status == "approved"
    r = t.sale(3000, VISA, EXPIRY)
    assert r.status == "refused" and "per-card daily limit" in r.reason and "10.00" in r.reason
    assert t.sale(3000, "2223003122003222", EXPIRY).status == "approved"


def test_sale_refused_before_authorization_when_reserve_would_be_breached(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger
) -> None:
    t = make_terminal()
    t.auto_relieve = False  # no ladder: its released ballast would make room (tested in test_settlement)
    st = t.space.status()
    # Quota such that free space (inside the journal's free pages and outside) is the reserve plus 2 KiB.
    t.space.policy.quota_bytes = t.space.store_bytes() - st.journal_free_page_bytes + st.reserve_bytes + 2048
    seen_by_host = len(host_ledger.authorizations(t.config.terminal_id))
    r = t.sale(100, VISA, EXPIRY)
    assert r.status == "refused" and "storage device A is full" in r.reason and "No card was charged" in r.reason
    assert t.records.list() == []
    assert len(host_ledger.authorizations(t.config.terminal_id)) == seen_by_host


def test_member_is_stored_minimized_and_merged_by_phone(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    t.sale(1000, VISA, EXPIRY, customer_phone="+86 138-0013-8000", customer_name="王小明")
    t.sale(2000, "5105105105105100", EXPIRY, customer_phone="13800138000")
    rows = t.journal.conn.execute("SELECT * FROM customers").fetchall()
    assert len(rows) == 1 and rows[0]["visits"] == 2 and rows[0]["total_amount"] == 3000
    assert "王小明".encode() not in bytes(rows[0]["name_enc"])


def test_no_pan_in_clear_anywhere_after_many_sales(
    make_terminal: Callable[..., Terminal], host: HostProcess, tmp_path: Path
) -> None:
    t = make_terminal(timeout=0.5)
    pans = [f"4{n:014d}" for n in range(0, 1000 * 7919, 7919)]
    from tillvault.domain.cards import luhn_check_digit

    pans = [p + luhn_check_digit(p) for p in pans][:1000]
    host.set_faults({"drop": {"probability": 0.01}})
    statuses: dict[str, int] = {}
    for i, pan in enumerate(pans):
        r = t.sale(100 + i, pan, EXPIRY, customer_phone=f"1390000{i:04d}" if i % 4 == 0 else None)
        statuses[r.status] = statuses.get(r.status, 0) + 1
    host.set_faults(None)
    t.drain_outbox(force=True)
    assert statuses.get("approved", 0) > 900
    t.close()
    scanned = 0
    roots = [t.data_dir, Path(t.config.keyring).parent, host.data_dir]
    needles = [p.encode() for p in pans]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                blob = path.read_bytes()
                scanned += 1
                hits = [n for n in needles if n in blob]
                assert hits == [], f"{len(hits)} PAN(s) in clear in {path}"
    assert scanned >= 5


def test_sale_over_tls_to_the_host(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    from tillvault.host.process import start_host_process
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    crt, pem = tls_files
    with start_host_process(
        tmp_path / "h", env={"TILLVAULT_HOST_SECRET": "tls"}, extra_args=["--tls-cert", str(crt), "--tls-key", str(pem)]
    ) as host:
        t = Terminal.init(
            tmp_path / "t", terminal_id="TVTLS001", merchant_qr=DEMO_MERCHANT_QR, host=host.address, host_tls_ca=crt
        )
        try:
            assert t.sale(1234, VISA, EXPIRY).status == "approved"
            from tillvault.terminal.runbook import assess

            assert assess(t)["host"]["reachable"] is True, "the runbook's echo test goes over TLS too"
        finally:
            t.close()
        plain = Terminal.init(tmp_path / "p", terminal_id="TVTLS002", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
        try:
            r = plain.sale(1234, VISA, EXPIRY)  # plain TCP to a TLS host: no valid reply, reversal queued
            assert r.status in ("not_completed", "offline_approved", "declined")
        finally:
            plain.close()


def test_a_refunded_sale_cannot_also_be_voided(make_terminal: Callable[..., Terminal], host_ledger: HostLedger) -> None:
    t = make_terminal()
    sale = t.sale(1234, VISA, EXPIRY)
    assert t.refund(200, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"
    void = t.void(sale.invoice)
    assert void.status == "refused" and "refunded already" in void.reason and "10.34" in void.reason
    assert t.records.get(sale.invoice)["status"] == "approved"  # nothing changed
    live = [a for a in host_ledger.authorizations(t.config.terminal_id) if a.live]
    assert sorted(a.amount for a in live) == [200, 1234]  # the card got 2.00 back, not 14.34
    assert t.refund(1034, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"


def test_a_refund_without_its_original_is_held_to_the_per_transaction_limit(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal()
    over = t.refund(t.limits.max_per_transaction + 1, VISA, EXPIRY)
    assert over.status == "refused" and "per-transaction limit" in over.reason
    assert over.extra["limit"] == "max_per_transaction" and t.records.list() == []
    assert t.refund(500, VISA, EXPIRY).status == "approved"


def test_an_idempotency_key_reused_for_another_request_is_refused_naming_the_difference(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal()
    first = t.sale(700, VISA, EXPIRY, idem_key="K1")
    assert first.status == "approved"
    for call, differs in (
        (lambda: t.sale(900, VISA, EXPIRY, idem_key="K1"), "amount (9.00)"),
        (lambda: t.sale(700, MASTERCARD, EXPIRY, idem_key="K1"), "card"),
        (lambda: t.refund(700, VISA, EXPIRY, idem_key="K1"), "kind (refund)"),
        (lambda: t.void(first.invoice, idem_key="K1"), "kind (void)"),
    ):
        with pytest.raises(InvalidInput, match=re.escape(differs)) as caught:
            call()
        assert "K1" in str(caught.value) and "new key" in str(caught.value)
    assert len(t.records.list()) == 1  # nothing was written
    assert t.sale(700, VISA, EXPIRY, idem_key="K1").invoice == first.invoice  # a true retry still is one


def test_a_terminal_object_catches_up_with_sales_another_process_made(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal()
    assert t.sale(100, VISA, EXPIRY).status == "approved"
    data = t.data_dir
    t.close()
    reader = Terminal.open(data)  # opened first, writes later
    try:
        with Terminal.open(data, exclusive=True) as other:
            assert other.sale(200, VISA, EXPIRY).status == "approved"
        late = reader.sale(300, VISA, EXPIRY)
        assert late.status == "approved", late.reason
        assert late.invoice == 3
        assert reader.journal.verify().ok
    finally:
        reader.close()


def test_a_refused_card_still_shows_its_masked_number_and_brand(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    expired = t.sale(100, VISA, "2001")
    assert expired.status == "refused" and expired.masked_pan == "411111******1111" and expired.brand == "visa"
    mistyped = t.sale(100, "4111111111111112", EXPIRY)
    assert mistyped.status == "refused" and "Luhn" in mistyped.reason and mistyped.masked_pan == "411111******1112"
    assert t.records.list() == []


def test_a_sale_without_the_card_expiry_is_refused_before_anything_is_written(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal()
    for entry in ("chip", "keyed", "swipe"):
        r = t.sale(100, VISA, None, entry_mode=entry)
        assert r.status == "refused" and "expiry" in r.reason and r.masked_pan == "411111******1111"
    assert t.records.list() == []


def test_refunds_without_originals_to_one_card_are_held_to_its_daily_limit(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal(limits={"max_per_transaction": 6_000, "max_per_card_per_day": 10_000, "currency": "CNY"})
    assert t.refund(5_000, VISA, EXPIRY).status == "approved"
    assert t.refund(5_000, VISA, EXPIRY).status == "approved"
    third = t.refund(100, VISA, EXPIRY)
    assert third.status == "refused" and "per-card daily limit 100.00 CNY" in third.reason
    assert third.extra["limit"] == "max_per_card_per_day"
    assert t.refund(100, MASTERCARD, EXPIRY).status == "approved"  # another card has its own day
    assert len(t.records.list()) == 3


def test_a_settlement_in_the_day_does_not_restart_the_cards_refund_total(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal(limits={"max_per_transaction": 6_000, "max_per_card_per_day": 10_000, "currency": "CNY"})
    assert t.refund(5_000, VISA, EXPIRY).status == "approved"
    assert t.refund(5_000, VISA, EXPIRY).status == "approved"
    assert t.settle().ok
    assert t.records.list() == [], "both refunds are sealed"
    again = t.refund(100, VISA, EXPIRY)
    assert again.status == "refused" and "would total 101.00 CNY" in again.reason
    assert t.refund(100, MASTERCARD, EXPIRY).status == "approved"


def test_rows_of_a_sealed_batch_still_in_the_hot_tier_are_counted_once(
    make_terminal: Callable[..., Terminal], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tillvault.store.tiers import Tiers

    t = make_terminal(limits={"max_per_transaction": 6_000, "max_per_card_per_day": 10_000, "currency": "CNY"})
    sale = t.sale(6_000, VISA, EXPIRY)
    assert t.refund(4_000, VISA, EXPIRY).status == "approved"
    assert t.refund(1_000, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"
    monkeypatch.setattr(Tiers, "purge_sealed_rows", lambda self: 0)  # as when the purge after sealing hits a full disk
    assert t.settle().ok
    assert len(t.records.list()) == 3 and len(t.tiers.catalogue()) == 1, "sealed, and the rows linger"
    token = t.records.list()[0]["card_token"]
    assert t.unreferenced_refunds(t.business_date(), token) == 4_000
    assert t.refunded_amount(sale.invoice, batch=sale.batch) == 1_000
    assert t.day_total(t.business_date(), card_token=token) == (6_000, 1)
    assert t.refund(3_000, VISA, EXPIRY).status == "approved", "4,000 + 3,000 is within the day's 10,000"
    # Once the segment leaves the terminal, the lingering rows are what still counts.
    # (no archive here: the segment is marked evicted by hand, as the ladder would after offload)
    t.journal.execute_direct("UPDATE segments SET local = 0")
    t.tiers.forget_catalogue()
    assert t.unreferenced_refunds(t.business_date(), token) == 7_000
    assert t.day_total(t.business_date(), card_token=token) == (6_000, 1)
    assert t.refund(3_001, VISA, EXPIRY).status == "refused", "7,000 + 3,001 is over the day's 10,000"


def test_the_terminals_day_total_counts_a_sealed_batch_once_while_its_rows_linger(
    make_terminal: Callable[..., Terminal], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The purge after sealing hit a full disk: the terminal's daily limit still sees each sale once."""
    from tillvault.store.tiers import Tiers

    t = make_terminal(limits={"max_per_transaction": 6_000, "max_per_terminal_per_day": 10_000, "currency": "CNY"})
    assert t.sale(6_000, VISA, EXPIRY).status == "approved"
    assert t.sale(1_000, MASTERCARD, EXPIRY).status == "approved"
    monkeypatch.setattr(Tiers, "purge_sealed_rows", lambda self: 0)
    assert t.settle().ok
    assert len(t.records.list()) == 2 and len(t.tiers.catalogue()) == 1, "sealed, and the rows linger"
    today = t.business_date()
    assert t.day_total(today) == (7_000, 2)
    assert t.sale(3_000, VISA, EXPIRY).status == "approved", "7,000 + 3,000 is within the day's 10,000"
    assert t.day_total(today) == (10_000, 3)
    over = t.sale(1, VISA, EXPIRY)
    assert over.status == "refused" and over.extra.get("limit") == "max_per_terminal_per_day"
    # The segment leaves the device before the rows were purged: they count from the hot tier again.
    t.journal.execute_direct("UPDATE segments SET local = 0")
    t.tiers.forget_catalogue()
    assert t.day_total(today) == (10_000, 3)
    # ...and the purge of those rows takes them out once.
    monkeypatch.undo()
    t.tiers.purge_sealed_rows()
    assert len(t.records.list()) == 1
    assert t.records.day_total(today) == (3_000, 1)


def test_a_journal_of_schema_6_with_lingering_rows_is_migrated_to_count_them_once(tmp_path: Path) -> None:
    """Migration 7 rebuilds the day totals from the rows whose batch has no local segment."""
    import sqlite3

    from tillvault.store import schema

    conn = sqlite3.connect(tmp_path / "j.sqlite3", isolation_level=None)
    conn.execute("PRAGMA user_version = 0")
    for version in range(6):
        for statement in schema.MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    rows = [(1, 1, 500), (2, 1, 700), (3, 2, 900)]  # invoices 1-2 in batch 1, 3 in the open batch 2
    for invoice, batch, amount in rows:
        conn.execute(
            "INSERT INTO transactions (invoice, terminal_id, batch, stan, business_date, kind, status, amount, "
            "currency, created_ms, updated_ms, checksum) "
            "VALUES (?, 'T1', ?, ?, '2026-12-01', 'sale', 'approved', ?, 'CNY', 0, 0, x'00')",
            (invoice, batch, invoice, amount),
        )
    conn.execute(
        "INSERT INTO segments (name, batch, records, bytes, digest, first_seq, last_seq, sealed_ms) "
        "VALUES ('seg-1', 1, 2, 100, 'x', 1, 2, 0)"
    )
    assert conn.execute("SELECT amount, count FROM day_sales").fetchall() == [(2_100, 3)], "counted twice"
    assert schema.migrate(conn) == 6
    assert conn.execute("SELECT amount, count FROM day_sales").fetchall() == [(900, 1)]
    conn.execute("UPDATE segments SET local = 0")
    assert conn.execute("SELECT amount, count FROM day_sales").fetchall() == [(2_100, 3)]
    conn.execute("UPDATE segments SET local = 1")
    assert conn.execute("SELECT amount, count FROM day_sales").fetchall() == [(900, 1)]
    conn.execute("DELETE FROM transactions WHERE batch = 1")  # the purge: already out of the total
    assert conn.execute("SELECT amount, count FROM day_sales").fetchall() == [(900, 1)]


def test_a_terminal_swapped_in_under_the_same_id_the_same_day_is_not_taken_for_a_duplicate(
    make_terminal: Callable[..., Terminal],
) -> None:
    from datetime import datetime, time, timedelta

    now = [datetime.combine(datetime.now().date(), time(10, 0)).astimezone()]
    old = make_terminal("old", terminal_id="TVSWAP01", clock=lambda: now[0])
    sold = [old.sale(500 + i, "4111111111111111", "3012") for i in range(3)]
    assert [r.status for r in sold] == ["approved"] * 3 and sold[0].stan == 10 * 3600 * 10 + 1
    old.close()
    # The device fails; a replacement is set up with the same terminal id a few minutes later.
    now[0] += timedelta(minutes=7)
    new = make_terminal("new", terminal_id="TVSWAP01", clock=lambda: now[0])
    r = new.sale(700, "4111111111111111", "3012")
    assert r.status == "approved", r.reason  # before: STAN 1 again, declined 94 as a duplicate transmission
    assert r.stan > sold[-1].stan
    # The next day starts from its own time of day; at 00:00:00 that is 1.
    now[0] = datetime.combine(now[0].date() + timedelta(days=1), time(0, 0, 30)).astimezone()
    assert new.sale(800, "4111111111111111", "3012").stan == 30 * 10 + 1
    now[0] = datetime.combine(now[0].date() + timedelta(days=1), time(0, 0, 0)).astimezone()
    assert new.sale(800, "4111111111111111", "3012").stan == 1


def test_a_days_first_stan_comes_from_the_instant_that_gave_the_day(
    make_terminal: Callable[..., Terminal],
) -> None:
    """A day's first message written at 23:59:59 starts near 863,990, even if the clock has passed midnight since."""
    from datetime import datetime, time, timedelta

    today = datetime.now().date()
    late = datetime.combine(today, time(23, 59, 59)).astimezone()
    t = make_terminal(clock=lambda: late + timedelta(seconds=2))  # the clock read again: 00:00:01 tomorrow
    tx = t.records.record_intent(
        kind="sale", amount=100, currency="CNY", business_date=today.isoformat(), ts_ms=int(late.timestamp() * 1000)
    )
    assert tx["stan"] == (23 * 3600 + 59 * 60 + 59) * 10 + 1  # before: 11, from the clock read again


def test_a_spare_set_up_on_an_earlier_day_does_not_repeat_the_days_stans(
    make_terminal: Callable[..., Terminal],
) -> None:
    """The shop's terminal has sold for days; a spare set up yesterday replaces it at 15:00 today."""
    from datetime import datetime, time, timedelta

    today = datetime.now().date()
    shop_clock = [datetime.combine(today - timedelta(days=2), time(9, 0)).astimezone()]
    shop = make_terminal("shop", terminal_id="TVSPARE1", clock=lambda: shop_clock[0])
    assert shop.sale(100, "4111111111111111", "3012").status == "approved"
    spare_clock = [datetime.combine(today - timedelta(days=1), time(16, 0)).astimezone()]
    spare = make_terminal("spare", terminal_id="TVSPARE1", clock=lambda: spare_clock[0])
    assert spare.sale(100, "4111111111111111", "3012").status == "approved"  # its test sale, yesterday
    spare.close()
    sold = []
    for minute in range(0, 6 * 60, 30):  # a sale every half hour until 15:00
        shop_clock[0] = datetime.combine(today, time(9, 0)).astimezone() + timedelta(minutes=minute)
        sold.append(shop.sale(200 + minute, "4111111111111111", "3012"))
    assert all(r.status == "approved" for r in sold), [r.reason for r in sold]
    shop.close()
    spare = Terminal.open(spare.data_dir, clock=lambda: datetime.combine(today, time(15, 0)).astimezone())
    r = spare.sale(900, "4111111111111111", "3012")
    assert r.status == "approved", r.reason  # before: its first STAN of today was 1, the shop's 9:00 sale's
    assert r.stan == 15 * 3600 * 10 + 1 and r.stan > max(s.stan for s in sold)
    spare.close()


def test_a_sale_sends_a_slice_of_the_backlog_and_the_customer_is_not_held(
    make_terminal: Callable[..., Terminal], host: HostProcess, host_ledger: HostLedger
) -> None:
    import time as wall
    from datetime import datetime, timedelta

    now = [datetime.now().astimezone()]
    t = make_terminal(host_address=f"127.0.0.1:{_free_port()}", offline={"max_count": 1000}, clock=lambda: now[0])
    assert all(t.sale(100 + i, VISA, EXPIRY).status == "offline_approved" for i in range(60))
    t.use_host(host.address)  # the network is back; the back-off on the queue's head has run out
    now[0] += timedelta(minutes=30)
    assert t.sale(900, VISA, EXPIRY).status == "approved"
    assert t.records.outbox_count() == 60 - 25, "a sale sends 25 waiting advices at most"
    # A slow link (each advice answered after 0.1 s): a quarter of a second of them, then the sale.
    host.set_faults({"delay": {"seconds": 0.1, "mtis": ["0220"]}})
    began = wall.monotonic()
    assert t.sale(901, VISA, EXPIRY).status == "approved"
    took = wall.monotonic() - began
    sent = 35 - t.records.outbox_count()
    assert 1 <= sent <= 4 and took < 1.5, (sent, took)
    host.set_faults(None)
    report = t.settle()  # settlement sends everything before it totals
    assert report.ok and t.records.outbox_count() == 0
    advised = [a for a in host_ledger.authorizations(t.config.terminal_id) if a.mti == "0220"]
    assert len(advised) == 60
