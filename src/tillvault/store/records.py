"""The terminal's transaction records in the hot tier: intent, outcome, batches, outbox.

Every change is one journal write: an event appended to the hash chain and the current
state (``transactions``, ``batches``, ``outbox``) updated in the same SQLite transaction.
Natural keys make retries safe: (terminal id, invoice) and (terminal id, business date,
STAN) are unique, and a caller's idempotency key returns the first result of a retry.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from tillvault.errors import InvalidInput, TransactionNotFound
from tillvault.store.encoding import canonical, decode, row_checksum, row_intact
from tillvault.store.journal import SALE, SETTLEMENT, Journal, WriteContext, now_ms
from tillvault.store.schema import LIVE_SALE

TX_COLUMNS = (
    "invoice",
    "terminal_id",
    "batch",
    "stan",
    "business_date",
    "kind",
    "status",
    "amount",
    "currency",
    "card_token",
    "masked_pan",
    "brand",
    "card_type",
    "entry_mode",
    "merchant_id",
    "operator_id",
    "customer_ref",
    "original_invoice",
    "rrn",
    "auth_code",
    "response_code",
    "reason",
    "fee",
    "created_ms",
    "updated_ms",
    "idem_key",
    "extra",
)

KINDS = ("sale", "refund", "void", "reversal", "offline_sale")
#: Statuses a transaction moves through. ``pending`` is the durable intent before the host answers.
STATUSES = (
    "pending",
    "approved",
    "declined",
    "offline_approved",
    "not_completed",
    "reversed",
    "voided",
    "refused",
)
#: Fields an outcome may change.
OUTCOME_FIELDS = ("status", "rrn", "auth_code", "response_code", "reason", "fee", "card_type", "extra")

STAN_MAX = 999_999
#: Batch numbers run from 1 to this, then 1 again (six digits on the host).
BATCH_MAX = 999_999
#: The largest invoice number the journal can hold (SQLite's 64-bit integer).
MAX_INVOICE = 2**63 - 1
#: Rows of a batch sealed into a local segment (left when the purge after sealing failed) count in
#: that segment's aggregates, not again here. A correlated EXISTS probes the unique batch index
#: (an ``IN (SELECT ...)`` built a temporary table at every sale: about 30 µs).
NOT_IN_LOCAL_SEGMENT = "NOT EXISTS (SELECT 1 FROM segments s WHERE s.batch = transactions.batch AND s.local = 1)"


#: The row as :data:`TX_COLUMNS` in that order (``SELECT *`` would add the checksum).
_TX_SELECT = "SELECT " + ", ".join(TX_COLUMNS) + " FROM transactions"
_EXTRA = TX_COLUMNS.index("extra")


def _raw_row(row: Sequence[Any]) -> dict[str, Any]:
    """A ``_TX_SELECT`` row as a dict, ``extra`` still its stored JSON text (what the checksum covers)."""
    return dict(zip(TX_COLUMNS, row, strict=True))


def _row_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A ``_TX_SELECT`` row as the dict callers see (``extra`` decoded)."""
    out = dict(zip(TX_COLUMNS, row, strict=True))
    if out["extra"] is not None:
        out["extra"] = decode(out["extra"])
    return out


def _extra_text(extra: Any) -> str | None:
    return extra if extra is None or isinstance(extra, str) else canonical(extra).decode("utf-8")


def _store_row(conn: sqlite3.Connection, tx: dict[str, Any], *, before: dict[str, Any] | None = None) -> None:
    """Insert ``tx``, or with ``before`` update only the columns that changed (fewer pages per commit).

    ``extra`` may be a dict or its stored JSON text (a row read with :func:`_raw_row`): text is
    compared and checksummed as it is, never decoded and encoded again.
    """
    values = {k: tx.get(k) for k in TX_COLUMNS}
    values["extra"] = _extra_text(values["extra"])
    checksum = row_checksum(values)
    if before is None:
        conn.execute(_TX_INSERT, (*values.values(), checksum))
        return
    old_extra = _extra_text(before.get("extra"))
    changed = [k for k in TX_COLUMNS if k != "invoice" and values[k] != (old_extra if k == "extra" else before.get(k))]
    sets = ", ".join(f"{k} = ?" for k in (*changed, "checksum"))
    conn.execute(
        f"UPDATE transactions SET {sets} WHERE invoice = ?",
        (*(values[k] for k in changed), checksum, values["invoice"]),
    )


def _change_row(
    conn: sqlite3.Connection, invoice: int, changes: dict[str, Any], status: str, ts: int
) -> dict[str, Any]:
    """Apply ``changes`` and ``status`` to the stored row ``invoice``; the new row (``extra`` decoded).

    :raises TransactionNotFound: no such invoice.
    """
    row = conn.execute(f"{_TX_SELECT} WHERE invoice = ?", (invoice,)).fetchone()
    if row is None:
        raise TransactionNotFound(f"no transaction with invoice {invoice:06d}")
    before = _raw_row(row)
    tx = dict(before)
    tx.update(changes)
    tx["status"] = status
    tx["updated_ms"] = ts
    _store_row(conn, tx, before=before)
    if isinstance(tx["extra"], str):  # unchanged: still the stored text
        tx["extra"] = decode(tx["extra"])
    return tx


_TX_INSERT = (
    f"INSERT INTO transactions ({', '.join((*TX_COLUMNS, 'checksum'))}) "
    f"VALUES ({', '.join('?' for _ in range(len(TX_COLUMNS) + 1))})"
)


class Records:
    """Transaction records of one terminal on top of a :class:`Journal`."""

    def __init__(self, journal: Journal, terminal_id: str) -> None:
        self.journal = journal
        self.terminal_id = terminal_id
        self._open_count: int | None = None
        #: The first STAN of a business day (the terminal derives it from its clock).
        #: The first STAN of a business day whose first message is at this instant (ms since the
        #: epoch); the terminal derives it from the time of day.
        self.first_stan: Callable[[int], int] = lambda _at_ms: 1
        journal.on_external_change.append(self.forget_cached_counts)  # another process sold or settled

    # -- batches ------------------------------------------------------------------------------
    def _open_batch(self, conn: sqlite3.Connection, ts: int) -> int:
        row = conn.execute("SELECT batch FROM batches WHERE status = 'open' ORDER BY batch DESC LIMIT 1").fetchone()
        if row is not None:
            return int(row[0])
        last = conn.execute("SELECT max(batch) FROM batches").fetchone()[0]
        batch = 1 if last is None else int(last) % 999_999 + 1
        conn.execute("INSERT INTO batches (batch, status, opened_ms) VALUES (?, 'open', ?)", (batch, ts))
        return batch

    def damaged_rows(self, batch: int) -> list[int]:
        """Invoices of ``batch`` whose row no longer matches its checksum (changed on disk after
        it was written): such a batch must not be totalled, uploaded or sealed as it stands."""
        rows = self.journal.conn.execute("SELECT * FROM transactions WHERE batch = ? ORDER BY invoice", (batch,))
        return [int(row["invoice"]) for row in rows if not row_intact(row)]

    def current_batch(self) -> int:
        """The open batch number (1 before the first sale)."""
        row = self.journal.conn.execute(
            "SELECT batch FROM batches WHERE status = 'open' ORDER BY batch DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            return int(row[0])
        last = self.journal.conn.execute("SELECT max(batch) FROM batches").fetchone()[0]
        return 1 if last is None else int(last) % 999_999 + 1

    def open_batch_count(self) -> int:
        """Transactions in the open batch (what the settlement reserve is sized on); cached."""
        if self._open_count is None:
            # A batch whose close was interrupted still needs its upload bookkeeping: count it too.
            row = self.journal.conn.execute(
                "SELECT count(*) FROM transactions WHERE batch IN "
                "(SELECT batch FROM batches WHERE status IN ('open', 'closing'))"
            ).fetchone()
            self._open_count = int(row[0])
        return self._open_count

    def next_stan(self, conn: sqlite3.Connection, business_date: str, at_ms: int) -> int:
        """The day's next STAN for a message at ``at_ms``, inside a write: the day's first is
        :attr:`first_stan` of that instant, then one more each time up to 999,999, then 1 again."""
        return self.journal.next_counter(conn, f"stan:{business_date}", wrap=STAN_MAX, first=self.first_stan(at_ms))

    def forget_cached_counts(self) -> None:
        """Drop cached counts (after a batch closes, or another process wrote)."""
        self._open_count = None

    # -- intent and outcome -------------------------------------------------------------------
    def record_intent(
        self,
        *,
        kind: str,
        amount: int,
        currency: str,
        business_date: str,
        idem_key: str | None = None,
        ts_ms: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Durably journal a transaction as ``pending`` before anything is sent; return its row.

        Allocates the invoice number, the STAN (unique per terminal per business day) and
        the open batch in the same transaction. With ``idem_key``, a retry returns the
        existing record instead of writing a second one.

        :raises InvalidInput: bad kind or amount, or an unknown field.
        :raises StorageFull: the engine ran out of space; nothing was written.
        """
        if kind not in KINDS:
            raise InvalidInput(f"transaction kind {kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise InvalidInput(f"amount must be a non-negative integer in minor units, got {amount!r}")
        unknown = set(fields) - set(TX_COLUMNS)
        if unknown:
            raise InvalidInput(f"unknown transaction field(s): {', '.join(sorted(unknown))}")
        if idem_key is not None:
            existing = self.by_idem_key(idem_key)
            if existing is not None:
                return existing
        ts = now_ms() if ts_ms is None else ts_ms

        def apply(ctx: WriteContext) -> dict[str, Any]:
            conn = ctx.conn
            invoice = self.journal.next_counter(conn, "invoice")
            stan = self.next_stan(conn, business_date, ts)
            tx = dict.fromkeys(TX_COLUMNS)
            tx.update(fields)
            tx.update(
                invoice=invoice,
                terminal_id=self.terminal_id,
                batch=self._open_batch(conn, ts),
                stan=stan,
                business_date=business_date,
                kind=kind,
                status="pending",
                amount=amount,
                currency=currency,
                created_ms=ts,
                updated_ms=ts,
                idem_key=idem_key,
            )
            _store_row(conn, tx)
            ctx.emit("intent", _event_view(tx))
            return tx

        tx = dict(self.journal.write(apply, klass=SALE, ts_ms=ts).result)
        if self._open_count is not None:
            self._open_count += 1
        return tx

    def record_outcome(
        self,
        invoice: int,
        *,
        status: str,
        outbox: Sequence[dict[str, Any]] = (),
        klass: str = SALE,
        event: str = "outcome",
        ts_ms: int | None = None,
        also: Callable[[WriteContext], None] | None = None,
        **changes: Any,
    ) -> dict[str, Any]:
        """Durably journal what happened to ``invoice`` (and queue outbox messages atomically).

        ``also(ctx)`` makes further changes in the same transaction (a voided sale, a customer).

        :raises TransactionNotFound: no such invoice.
        :raises InvalidInput: unknown status or field.
        """
        if status not in STATUSES:
            raise InvalidInput(f"transaction status {status!r} is not one of {', '.join(STATUSES)}")
        unknown = set(changes) - set(OUTCOME_FIELDS)
        if unknown:
            raise InvalidInput(f"outcome cannot change field(s): {', '.join(sorted(unknown))}")
        ts = now_ms() if ts_ms is None else ts_ms

        def apply(ctx: WriteContext) -> dict[str, Any]:
            conn = ctx.conn
            tx = _change_row(conn, invoice, changes, status, ts)
            for message in outbox:
                self._enqueue(conn, message, ts)
            ctx.emit(event, _event_view(tx))
            if also is not None:
                also(ctx)
            return tx

        return dict(self.journal.write(apply, klass=klass, ts_ms=ts).result)

    def set_status(self, ctx: WriteContext, invoice: int, status: str, **changes: Any) -> dict[str, Any]:
        """Change another record's status inside a write (e.g. the sale a void cancels), journalled."""
        if status not in STATUSES:
            raise InvalidInput(f"transaction status {status!r} is not one of {', '.join(STATUSES)}")
        tx = _change_row(ctx.conn, invoice, changes, status, ctx.ts_ms)
        ctx.emit("status", {"invoice": invoice, "status": status, **changes})
        return tx

    # -- outbox -------------------------------------------------------------------------------
    def _enqueue(self, conn: sqlite3.Connection, message: dict[str, Any], ts: int) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO outbox (kind, invoice, payload, status, created_ms, idem_key, next_attempt_ms) "
            "VALUES (?, ?, ?, 'pending', ?, ?, 0)",
            (message["kind"], message.get("invoice"), message["payload"], ts, message.get("idem_key")),
        )

    def outbox_pending(self, limit: int = 100, *, after_id: int = 0) -> list[dict[str, Any]]:
        """Outbox messages not yet delivered, oldest first (those with an id above ``after_id``)."""
        rows = self.journal.conn.execute(
            "SELECT * FROM outbox WHERE status = 'pending' AND id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [dict(r) for r in rows]

    def outbox_head_due_ms(self) -> int | None:
        """When the oldest undelivered message is next due (ms), or None when the outbox is empty."""
        row = self.journal.conn.execute(
            "SELECT next_attempt_ms FROM outbox WHERE status = 'pending' ORDER BY id LIMIT 1"
        ).fetchone()
        return None if row is None else int(row[0])

    def outbox_count(self) -> int:
        """Messages still waiting in the outbox."""
        return int(self.journal.conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0])

    def outbox_done(self, message_id: int, *, status: str = "delivered", reply: dict[str, Any] | None = None) -> None:
        """Mark an outbox message delivered (a settlement-class write: draining must not fail for space)."""

        def apply(ctx: WriteContext) -> None:
            ctx.conn.execute("UPDATE outbox SET status = ?, last_error = NULL WHERE id = ?", (status, message_id))
            ctx.emit("outbox_" + status, {"id": message_id, "reply": reply or {}})

        self.journal.write(apply, klass=SETTLEMENT)

    def outbox_retry_later(self, message_id: int, *, error: str, next_attempt_ms: int) -> None:
        """Record a failed delivery attempt (not journalled as an event: it changes no money)."""
        self.journal.execute_direct(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_ms = ? WHERE id = ?",
            (error[:200], next_attempt_ms, message_id),
        )

    # -- queries ------------------------------------------------------------------------------
    def get(self, invoice: int) -> dict[str, Any]:
        """The record with ``invoice``.

        :raises InvalidInput: ``invoice`` is not a positive whole number.
        :raises TransactionNotFound: no such invoice.
        """
        if isinstance(invoice, bool) or not isinstance(invoice, int) or invoice < 1:
            raise InvalidInput(f"invoice must be a positive whole number (as on the receipt), got {invoice!r}")
        if invoice > MAX_INVOICE:
            raise TransactionNotFound(f"no transaction with invoice {invoice} (invoices go up to {MAX_INVOICE:,})")
        row = self.journal.conn.execute(f"{_TX_SELECT} WHERE invoice = ?", (invoice,)).fetchone()
        if row is None:
            raise TransactionNotFound(f"no transaction with invoice {invoice:06d}")
        return _row_dict(row)

    def by_idem_key(self, idem_key: str) -> dict[str, Any] | None:
        """The record a caller's idempotency key created, if any."""
        row = self.journal.conn.execute(f"{_TX_SELECT} WHERE idem_key = ?", (idem_key,)).fetchone()
        return None if row is None else _row_dict(row)

    def list(
        self,
        *,
        batch: int | None = None,
        status: str | None = None,
        business_date: str | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Records, newest first, optionally filtered by batch, status and business date.

        :raises InvalidInput: a batch outside 1..999,999, a status that is not one, or a limit below 1.
        """
        if batch is not None and not 1 <= batch <= BATCH_MAX:
            raise InvalidInput(f"batch numbers run from 1 to {BATCH_MAX:,}, got {batch}")
        if status is not None and status not in STATUSES:
            raise InvalidInput(f"status {status!r} is not one of {', '.join(STATUSES)}")
        if limit < 1:
            raise InvalidInput(f"the limit must be 1 or more, got {limit}")
        limit = min(limit, MAX_INVOICE)
        sql = _TX_SELECT
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        for column, value in (("batch", batch), ("status", status), ("business_date", business_date)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY invoice DESC LIMIT ?"
        args.append(limit)
        return [_row_dict(r) for r in self.journal.conn.execute(sql, args)]

    def offline_exposure(self) -> tuple[int, int]:
        """(count, amount) of offline-approved sales whose advice has not been delivered."""
        row = self.journal.conn.execute(
            "SELECT count(*), coalesce(sum(t.amount), 0) FROM outbox o JOIN transactions t ON t.invoice = o.invoice "
            "WHERE o.kind = 'advice' AND o.status = 'pending'"
        ).fetchone()
        return int(row[0]), int(row[1])

    def refunded_amount(self, original_invoice: int) -> int:
        """Minor units already refunded (approved or in flight) against ``original_invoice``."""
        row = self.journal.conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM transactions WHERE original_invoice = ? AND kind = 'refund' "
            "AND status IN ('pending', 'approved', 'offline_approved') "
            f"AND {NOT_IN_LOCAL_SEGMENT}",  # lingering rows: counted there
            (original_invoice,),
        ).fetchone()
        return int(row[0])

    def pending(self) -> builtins.list[dict[str, Any]]:
        """Intents without an outcome (what crash recovery must resolve), oldest first."""
        rows = self.journal.conn.execute(
            f"{_TX_SELECT} INDEXED BY transactions_pending WHERE status = 'pending' ORDER BY invoice"
        )
        return [_row_dict(r) for r in rows]

    def count_by_status(self) -> dict[str, int]:
        """Number of records per status."""
        rows = self.journal.conn.execute("SELECT status, count(*) FROM transactions GROUP BY status")
        return {r[0]: int(r[1]) for r in rows}

    def day_total(self, business_date: str, *, card_token: str | None = None) -> tuple[int, int]:
        """(amount, count) of approved or pending sales on a business day, for one card or the terminal."""
        conn = self.journal.conn
        if card_token is None:  # kept by triggers (schema 5): one row, however busy the day
            row = conn.execute(
                "SELECT amount, count FROM day_sales WHERE business_date = ?", (business_date,)
            ).fetchone()
            return (int(row[0]), int(row[1])) if row is not None else (0, 0)
        row = conn.execute(
            f"SELECT coalesce(sum(amount), 0), count(*) FROM transactions WHERE card_token = ? AND business_date = ? "
            # Rows of a sealed batch that linger (the purge failed) count in the local segment's aggregates.
            f"AND {LIVE_SALE} AND {NOT_IN_LOCAL_SEGMENT}",
            (card_token, business_date),
        ).fetchone()
        return int(row[0]), int(row[1])

    def unreferenced_refunds(self, business_date: str, card_token: str) -> int:
        """Minor units refunded to a card on a business day without an original sale (open or in flight)."""
        row = self.journal.conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM transactions WHERE card_token = ? AND business_date = ? "
            "AND kind = 'refund' AND original_invoice IS NULL "
            "AND status IN ('pending', 'approved', 'offline_approved') "
            f"AND {NOT_IN_LOCAL_SEGMENT}",  # lingering rows: counted there
            (card_token, business_date),
        ).fetchone()
        return int(row[0])


def _event_view(tx: dict[str, Any]) -> dict[str, Any]:
    """What an event records of a transaction: everything but the caller's idempotency key."""
    return {k: v for k, v in tx.items() if k != "idem_key"}
