"""Batch settlement at the host and the business-day cut.

A batch (terminal id, batch number, currency) settles when a 0500 (920000, or 960000 after a
batch upload) balances with the host's totals, or on any 960000: after a batch upload the
terminal closes its batch whatever the answer, so the host settles on its own figures and
reconciliation lists what still differs. Settling: every live sale and refund of that batch not yet
settled gets ``settled_date`` = the host's **open business date** and its fee (named, from the
fee schedule in force, see :mod:`.fees`). From then on the transaction is final at the host: a
reversal or a changing batch upload of it is refused ("12"); voids of a settled batch were
already refused. A balanced 0500 repeated changes nothing. A transaction that reaches an
already settled batch later (a late advice, say) stays unsettled until the next balanced 0500
of that batch, which settles it on that day's business date.

The open business date is the host's date, except that a day already paid out is closed: once
``tillvault payout --date D`` has run, settlements go to D + 1 or later (the acquirer's
"day cut", 日切), so a payout never misses a transaction settled after it ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from tillvault.domain.iso8583 import PROC_REFUND, PROC_SALE
from tillvault.host.fees import FeeSchedule, brand_of
from tillvault.host.ledger import LIVE_STATUSES, HostLedger
from tillvault.host.settings import card_type_rule, fee_schedule

__all__ = ["SettledBatch", "close_through", "closed_through", "open_business_date", "settle_batch"]

_CLOSED_KEY = "closed_through"


def closed_through(ledger: HostLedger) -> date | None:
    """The last business date closed by a payout run, or None."""
    value = ledger.meta(_CLOSED_KEY)
    return date.fromisoformat(value) if value else None


def open_business_date(ledger: HostLedger, today: date) -> date:
    """The business date a settlement made now belongs to: ``today``, or the day after the last
    closed one when that is later."""
    closed = closed_through(ledger)
    if closed is not None and closed >= today:
        return closed + timedelta(days=1)
    return today


def close_through(ledger: HostLedger, day: date) -> None:
    """Close every business date up to ``day`` (never reopens a later one)."""
    with ledger.atomic():
        closed = closed_through(ledger)
        if closed is None or day > closed:
            ledger.set_meta(_CLOSED_KEY, day.isoformat())


@dataclass(frozen=True, slots=True)
class SettledBatch:
    """What one balanced 0500 settled: ``count`` transactions on ``business_date`` with
    ``fees`` (minor units, signed) in total."""

    business_date: date
    count: int
    fees: int


def _fee_left(ledger: HostLedger, sale_id: int | None, fee_of: dict[int, int]) -> int:
    """What refunds may still return of a sale's fee: its fee less what earlier refunds returned.

    A refund naming no sale (or one not found) returns nothing: no fee was paid for it here.
    ``fee_of`` holds the figures this settlement already priced (the sale may be in this batch).
    """
    if sale_id is None:
        return 0
    if sale_id not in fee_of:
        row = ledger.rows(
            "SELECT coalesce((SELECT fee FROM authorizations WHERE id = ?), 0)"
            " + coalesce((SELECT sum(fee) FROM authorizations WHERE original_id = ? AND proc_code = ?"
            " AND fee IS NOT NULL), 0) AS left",
            (sale_id, sale_id, PROC_REFUND),
        )
        fee_of[sale_id] = int(row[0]["left"]) if row else 0
    return max(0, fee_of[sale_id])


def settle_batch(ledger: HostLedger, *, terminal_id: str, batch: int, currency: str, today: date) -> SettledBatch:
    """Mark the live, unsettled sales and refunds of the batch settled and price their fees.

    ``terminal_id`` in field 41 form (space padded). Runs in one ledger transaction (joins an
    open :meth:`~HostLedger.atomic`). When nothing is left to settle (a repeated 0500), the
    result carries the date the batch last settled on.
    """
    with ledger.atomic():
        business = open_business_date(ledger, today)
        marks = ",".join("?" * len(LIVE_STATUSES))
        rows = ledger.rows(
            "SELECT a.id, a.proc_code, a.amount, a.masked_pan, a.merchant_id, a.original_id, c.card_type"
            " FROM authorizations a LEFT JOIN accounts c"
            " ON c.kind = 'cardholder' AND c.key = a.card_token AND c.currency = a.currency"
            " WHERE a.terminal_id = ? AND a.batch = ? AND a.currency = ? AND a.proc_code IN (?, ?)"
            f" AND a.status IN ({marks}) AND a.settled_date IS NULL ORDER BY a.id",
            (terminal_id, batch, currency, PROC_SALE, PROC_REFUND, *LIVE_STATUSES),
        )
        rule = card_type_rule(ledger)
        schedules: dict[str, FeeSchedule] = {}
        total = 0
        day = business.isoformat()
        marked: list[tuple[str, int, str | None, int]] = []
        fee_of: dict[int, int] = {}  # a sale's fee still returnable, as priced in this batch
        for row in rows:
            merchant = (row["merchant_id"] or "").strip()
            if merchant not in schedules:
                schedules[merchant] = fee_schedule(ledger, merchant or None)
            card_type = row["card_type"] or rule.card_type(row["masked_pan"])
            kind = "sale" if row["proc_code"] == PROC_SALE else "refund"
            charge = schedules[merchant].charge(kind, row["amount"], card_type, brand_of(row["masked_pan"]), currency)
            amount = charge.amount
            if kind == "sale":
                fee_of[row["id"]] = amount
            elif amount < 0:
                amount = -min(-amount, _fee_left(ledger, row["original_id"], fee_of))
                fee_of[row["original_id"]] = fee_of.get(row["original_id"], 0) + amount
            total += amount
            marked.append((day, amount, charge.name if amount else None, row["id"]))
        ledger.execute_many("UPDATE authorizations SET settled_date = ?, fee = ?, fee_name = ? WHERE id = ?", marked)
        if not rows:
            # A repeated 0500: answer with the date the batch's money settled on.
            last = ledger.rows(
                "SELECT MAX(settled_date) AS day FROM authorizations"
                " WHERE terminal_id = ? AND batch = ? AND currency = ?",
                (terminal_id, batch, currency),
            )
            if last and last[0]["day"]:
                business = date.fromisoformat(last[0]["day"])
        return SettledBatch(business, len(rows), total)
