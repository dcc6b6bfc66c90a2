"""Batch close that cannot fail for space: drain, 0500, batch upload when out of balance, close.

Every write here is settlement-class: it may draw on the reserve that sales cannot touch
(DESIGN.md invariant 3). Each step is journalled in small transactions so the bounded WAL
suffices on a full disk, and the close is resumable: a batch marked ``closing`` is
re-settled with the same STAN after a crash or a failed attempt. Nothing is ever dropped:
if the host cannot be reached the batch stays open (or closing) and the merchant is told.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tillvault.domain import iso8583 as iso
from tillvault.domain.money import currency_info, format_amount
from tillvault.errors import HostProtocolError, HostTimeout, HostUnavailable, JournalCorrupt, SettlementError
from tillvault.store.encoding import decode
from tillvault.store.journal import SETTLEMENT, WriteContext

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

LIVE_SALE = ("approved", "offline_approved")
ATTEMPTS = 3
STRIP_CHUNK = 100


@dataclass
class SettlementReport:
    """The result of a batch close (``tillvault settle --json``)."""

    ok: bool
    batch: int
    currency: str
    totals: iso.BatchTotals
    balanced: bool
    uploaded: int = 0
    host_totals: iso.BatchTotals | None = None
    closed_ms: int | None = None
    reason: str = ""
    differences: list[dict[str, Any]] = field(default_factory=list)
    drained: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the contract's keys."""
        t = self.totals
        out: dict[str, Any] = {
            "ok": self.ok,
            "batch": self.batch,
            "currency": self.currency,
            "sales_count": t.sales_count,
            "sales_amount": t.sales_amount,
            "refunds_count": t.refunds_count,
            "refunds_amount": t.refunds_amount,
            "voided_count": t.sales_reversal_count,
            "voided_amount": t.sales_reversal_amount,
            "net_amount": t.net_amount,
            "balanced": self.balanced,
            "uploaded": self.uploaded,
            "drained": self.drained,
            "closed_ms": self.closed_ms,
            "reason": self.reason,
            "differences": self.differences,
        }
        if self.host_totals is not None:
            h = self.host_totals
            out["host"] = {
                "sales_count": h.sales_count,
                "sales_amount": h.sales_amount,
                "refunds_count": h.refunds_count,
                "refunds_amount": h.refunds_amount,
            }
        return out

    def lines(self) -> list[tuple[str, str, str]]:
        """(what, count, amount) rows for a printed settlement report."""
        t, c = self.totals, self.currency
        return [
            ("sales", str(t.sales_count), format_amount(t.sales_amount, c)),
            ("refunds", str(t.refunds_count), format_amount(t.refunds_amount, c)),
            ("voided / reversed", str(t.sales_reversal_count), format_amount(t.sales_reversal_amount, c)),
            ("net", "", format_amount(t.net_amount, c)),
        ]


def refuse_damaged(t: Terminal, batch: int, what: str) -> None:
    """Refuse to go on with a batch whose rows changed on disk since they were written.

    :raises JournalCorrupt: naming the invoices; nothing was sent or changed.
    """
    bad = t.records.damaged_rows(batch)
    if bad:
        shown = ", ".join(f"{i:06d}" for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise JournalCorrupt(
            f"batch {batch:06d} cannot be {what}: transaction(s) {shown} changed on disk since they were "
            "written (checksum mismatch). Nothing was sent. Run tillvault scrub (with two devices it repairs "
            "from the good copy), then call support with these invoices"
        )


def batch_totals(t: Terminal, batch: int) -> iso.BatchTotals:
    """The terminal's totals for ``batch`` from its journal (integer minor units)."""
    rows = t.journal.conn.execute(
        "SELECT kind, status, count(*), coalesce(sum(amount), 0) FROM transactions WHERE batch = ? "
        "GROUP BY kind, status",
        (batch,),
    ).fetchall()
    acc = {"sc": 0, "sa": 0, "rc": 0, "ra": 0, "src": 0, "sra": 0, "rrc": 0, "rra": 0}
    for kind, status, count, amount in rows:
        if kind in ("sale", "offline_sale"):
            if status in LIVE_SALE:
                acc["sc"] += count
                acc["sa"] += amount
            elif status in ("voided", "reversed"):
                acc["src"] += count
                acc["sra"] += amount
        elif kind == "refund":
            if status in LIVE_SALE:
                acc["rc"] += count
                acc["ra"] += amount
            elif status in ("voided", "reversed"):
                acc["rrc"] += count
                acc["rra"] += amount
    return iso.BatchTotals(
        sales_count=acc["sc"],
        sales_amount=acc["sa"],
        refunds_count=acc["rc"],
        refunds_amount=acc["ra"],
        sales_reversal_count=acc["src"],
        sales_reversal_amount=acc["sra"],
        refunds_reversal_count=acc["rrc"],
        refunds_reversal_amount=acc["rra"],
    )


def _exchange(t: Terminal, request: dict[str, str]) -> dict[str, str]:
    """Send with retries on a lost reply (same message: the host answers a duplicate alike)."""
    last: Exception | None = None
    for _ in range(ATTEMPTS):
        try:
            return t.host_client().exchange(request)
        except (HostUnavailable, HostTimeout, HostProtocolError) as exc:
            last = exc
    raise SettlementError(
        f"the host did not answer the settlement ({last}); nothing was lost and the batch stays open: "
        "retry with tillvault settle when the network is back"
    )


def settle(t: Terminal) -> SettlementReport:
    """Close the open (or an interrupted closing) batch with the host.

    :raises SettlementError: the host cannot be reached, or queued advices/reversals could not
        be delivered first; nothing is lost and the batch can be settled again later.
    """
    t.recover()
    drain = t.drain_outbox(force=True)
    if drain.remaining:
        raise SettlementError(
            f"{drain.remaining} queued advice(s)/reversal(s) could not reach the host ({drain.last_error}); "
            "they must arrive before the batch closes. Nothing was lost: retry tillvault settle"
        )
    conn = t.journal.conn
    row = conn.execute(
        "SELECT batch, status, report FROM batches WHERE status IN ('closing', 'open') ORDER BY batch LIMIT 1"
    ).fetchone()
    currency = t.merchant.currency
    if row is None:
        batch = t.records.current_batch()
        return SettlementReport(
            ok=True,
            batch=batch,
            currency=currency,
            totals=iso.BatchTotals(),
            balanced=True,
            reason="nothing to settle: the batch is empty",
            drained=drain.delivered,
        )
    batch = int(row["batch"])
    state = decode(row["report"]) if row["report"] else {}
    refuse_damaged(t, batch, "settled")
    totals = batch_totals(t, batch)
    if row["status"] == "open":
        state = {"stan": _allocate_stan(t), "after_upload": False}
        _mark(t, batch, "closing", state, "settle_started", {"batch": batch, "stan": state["stan"]})
    common: dict[str, Any] = {
        "terminal_id": t.config.terminal_id,
        "merchant_id": t.merchant.merchant_id,
        "batch": batch % 1_000_000,
        "currency": currency_info(currency).numeric,
    }
    request = iso.settlement_request(totals=totals, stan=state["stan"], after_upload=state["after_upload"], **common)
    reply = _exchange(t, request)
    uploaded = 0
    if reply.get("39") == "95" and not state["after_upload"]:
        uploaded = _upload_batch(t, batch, common)
        state = {"stan": _allocate_stan(t), "after_upload": True}
        _mark(t, batch, "closing", state, "upload_done", {"batch": batch, "uploaded": uploaded})
        request = iso.settlement_request(totals=totals, stan=state["stan"], after_upload=True, **common)
        reply = _exchange(t, request)
    code = reply.get("39", "")
    host_totals = iso.BatchTotals.from_fields(reply) if "88" in reply else None
    balanced = code == "00"
    if code not in ("00", "95"):
        raise SettlementError(
            f"the host refused the settlement: {iso.response_text(code)}; the batch stays open, nothing was lost"
        )
    report = SettlementReport(
        ok=balanced,
        batch=batch,
        currency=currency,
        totals=totals,
        balanced=balanced,
        uploaded=uploaded,
        host_totals=host_totals,
        drained=drain.delivered,
    )
    if not balanced:
        report.reason = (
            "out of balance after batch upload: the host's totals differ from the terminal's; "
            "the batch is closed and the difference reported to the acquirer"
        )
        report.differences = _total_differences(totals, host_totals)
    else:
        report.reason = "balanced" + (f" after uploading {uploaded} transaction(s)" if uploaded else "")
    report.closed_ms = t.now_ms()
    _close(t, batch, report)
    return report


def _allocate_stan(t: Terminal) -> int:
    date = t.business_date()
    return int(t.journal.write(lambda ctx: t.records.next_stan(ctx.conn, date, t.now_ms()), klass=SETTLEMENT).result)


def _mark(t: Terminal, batch: int, status: str, state: dict[str, Any], event: str, body: dict[str, Any]) -> None:
    from tillvault.store.encoding import canonical

    def apply(ctx: WriteContext) -> None:
        ctx.conn.execute(
            "UPDATE batches SET status = ?, report = ? WHERE batch = ?", (status, canonical(state).decode(), batch)
        )
        ctx.emit(event, body)

    t.journal.write(apply, klass=SETTLEMENT, ts_ms=t.now_ms())


def _upload_batch(t: Terminal, batch: int, common: dict[str, Any]) -> int:
    """0320 for every live sale and refund of the batch; one small journal write per message."""
    rows = t.journal.conn.execute(
        "SELECT * FROM transactions WHERE batch = ? AND kind IN ('sale', 'offline_sale', 'refund') "
        "AND status IN ('approved', 'offline_approved') ORDER BY invoice",
        (batch,),
    ).fetchall()
    done = 0
    for row in rows:
        extra = decode(row["extra"]) if row["extra"] else {}
        from datetime import datetime

        when = (
            datetime.fromisoformat(extra["when"])
            if extra.get("when")
            else datetime.fromtimestamp(row["created_ms"] / 1000).astimezone()
        )
        request = iso.batch_upload_request(
            stan=_allocate_stan(t),
            invoice=row["invoice"] % 1_000_000,
            original_mti="0220" if row["status"] == "offline_approved" else "0200",
            original_stan=row["stan"],
            processing_code="200000" if row["kind"] == "refund" else "000000",
            amount=row["amount"],
            original_time=when.strftime("%H%M%S"),
            original_date=when.strftime("%m%d"),
            rrn=row["rrn"] or " " * 12,
            auth_code=row["auth_code"],
            **common,
        )
        reply = _exchange(t, request)
        t.journal.append(
            "batch_upload", {"batch": batch, "invoice": row["invoice"], "response": reply.get("39")}, klass=SETTLEMENT
        )
        done += 1
    return done


def _total_differences(ours: iso.BatchTotals, theirs: iso.BatchTotals | None) -> list[dict[str, Any]]:
    if theirs is None:
        return [{"what": "host totals", "problem": "the host's reply did not carry its totals"}]
    out = []
    for name in ("sales_count", "sales_amount", "refunds_count", "refunds_amount"):
        a, b = getattr(ours, name), getattr(theirs, name)
        if a != b:
            out.append({"what": name, "terminal": a, "host": b, "difference": a - b})
    return out


def _close(t: Terminal, batch: int, report: SettlementReport) -> None:
    from tillvault.store.encoding import canonical

    body = report.to_dict()

    def apply(ctx: WriteContext) -> None:
        ctx.conn.execute(
            "UPDATE batches SET status = 'closed', closed_ms = ?, report = ? WHERE batch = ?",
            (report.closed_ms, canonical(body).decode(), batch),
        )
        ctx.emit("batch_closed", body)

    t.journal.write(apply, klass=SETTLEMENT, ts_ms=t.now_ms())
    t.records.forget_cached_counts()


def strip_card_data(t: Terminal, batch: int) -> None:
    """Erase the encrypted PANs of a closed batch (no void is possible any more), in small writes."""
    while True:
        rows = t.journal.conn.execute(
            "SELECT invoice FROM transactions WHERE batch = ? AND extra LIKE '%pan_enc%' LIMIT ?",
            (batch, STRIP_CHUNK),
        ).fetchall()
        if not rows:
            return

        def apply(ctx: WriteContext, invoices: list[int] = [r[0] for r in rows]) -> None:  # noqa: B006
            for invoice in invoices:
                tx = t.records.get(invoice)
                extra = {k: v for k, v in (tx["extra"] or {}).items() if k != "pan_enc"}
                t.records.set_status(ctx, invoice, tx["status"], extra=extra or None)

        t.journal.write(apply, klass=SETTLEMENT, ts_ms=t.now_ms())


def closed_batches(t: Terminal) -> list[dict[str, Any]]:
    """Reports of closed batches, newest first."""
    rows = t.journal.conn.execute(
        "SELECT batch, closed_ms, report FROM batches WHERE status = 'closed' ORDER BY batch DESC"
    ).fetchall()
    return [{"batch": r["batch"], "closed_ms": r["closed_ms"], **decode(r["report"])} for r in rows]
