"""The reference host's own ledger: double-entry accounts, transfers and the authorization log.

One SQLite file, ``host-ledger.sqlite3`` in the host's data dir (WAL, ``synchronous=FULL``).
Money moves only as a *transfer* from one account (debited) to another (credited); each
account keeps ``debits_posted`` / ``credits_posted`` updated in the same SQLite transaction
as the transfer row, so total debits equal total credits by construction and
:meth:`HostLedger.check_balanced` can prove it from the transfers alone. Amounts are int
minor units.

Accounts (kind, key):

- ``cardholder`` keyed by HMAC-SHA256(PAN) under the host secret (:mod:`.secret`); only the
  masked PAN (first 6 / last 4) is stored. A sale debits it, a refund credits it. Its
  ``balance`` is credits − debits (funds the cardholder holds; negative: owed) and it may
  spend ``available = credit_limit + balance``. A card never seen before gets an account with
  the default credit limit.
  ``card_type`` (debit, credit, unknown; NULL: decided by the card-type rule) picks its fee rule.
- ``merchant_payable`` keyed by the card acceptor id (field 42): what the acquirer owes it.
- ``deposit`` (cash in/out: admin balance adjustments), ``suspense`` (uploaded transactions
  whose card the host cannot name).
- ``fee_income`` (key ``fees``), ``settlement`` (key ``bank``: money leaving for or arriving
  from merchants' bank accounts) and ``device_deposit`` (keyed by merchant id): settlement and
  payout, see :mod:`.settlement` and :mod:`.payout` and ``docs/settlement.md``.

The authorization log has one row per (terminal id, local date MMDD, STAN): duplicate
detection, reversals, voids, batch totals and batch upload all work from it. A cancelled
transfer is cancelled by a new transfer in the opposite direction linked by ``cancels``
(unique: nothing is cancelled twice).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from tillvault.domain.iso8583 import PROC_REFUND, PROC_SALE, PROC_VOID, BatchTotals, mask_pan, terminal_id_field
from tillvault.errors import ConfigError, InvalidInput
from tillvault.host.fees import CARD_TYPES
from tillvault.host.ledger_schema import drop_yearless_key, migrate
from tillvault.host.secret import card_token, load_host_secret, secret_check

__all__ = [
    "CARD_TYPES",
    "DEFAULT_CREDIT_LIMIT",
    "LEDGER_FILE",
    "LIVE_STATUSES",
    "Account",
    "AuthRecord",
    "HostLedger",
]

LEDGER_FILE = "host-ledger.sqlite3"
#: Default credit limit of a card the host has never seen: 50,000.00 in minor units.
DEFAULT_CREDIT_LIMIT = 5_000_000
#: Statuses of a log row whose money effect stands.
LIVE_STATUSES = ("approved", "advised", "uploaded")
#: ``INSERT ... RETURNING`` (SQLite 3.35+) saves the read-back after an insert; older SQLite reads back.
_HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
# printf('%012d') writes what f"{value:012d}" writes for the counter's non-negative values.
_RRN_RETURNING = "RETURNING value, EXISTS (SELECT 1 FROM authorizations WHERE rrn = printf('%012d', value))"
_ACCOUNT_COLUMNS = (
    "id, kind, key, currency, masked_pan, credit_limit, blocked, debits_posted, credits_posted, card_type"
)


_AUTH_COLUMNS = (
    "terminal_id",
    "local_date",
    "stan",
    "mti",
    "proc_code",
    "amount",
    "currency",
    "rrn",
    "auth_code",
    "response",
    "batch",
    "invoice",
    "status",
    "fingerprint",
    "card_token",
    "masked_pan",
    "merchant_id",
    "local_time",
    "transfer_id",
    "original_id",
    "tombstone",
    "response_json",
    "settled_date",
    "fee",
    "fee_name",
    "local_year",
)
_AUTH_COLUMN_SET = frozenset(_AUTH_COLUMNS)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Account:
    """One ledger account; amounts in minor units."""

    id: int
    kind: str
    key: str
    currency: str
    masked_pan: str | None
    credit_limit: int
    blocked: bool
    debits_posted: int
    credits_posted: int
    card_type: str | None = None

    @property
    def balance(self) -> int:
        """Credits − debits: funds held (negative: owed), minor units."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What a cardholder may still spend: credit limit + balance, minor units."""
        return self.credit_limit + self.balance

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: never the card token, only the masked PAN."""
        out = asdict(self)
        out["balance"] = self.balance
        out["available"] = self.available
        if self.kind == "cardholder":
            out["key"] = self.masked_pan
        return out


@dataclass(frozen=True, slots=True)
class AuthRecord:
    """One row of the authorization log."""

    id: int
    terminal_id: str
    local_date: str
    stan: str
    mti: str
    proc_code: str
    amount: int
    currency: str
    rrn: str | None
    auth_code: str | None
    response: str
    batch: int | None
    invoice: int | None
    status: str
    fingerprint: str | None
    card_token: str | None
    masked_pan: str | None
    merchant_id: str | None
    local_time: str | None
    transfer_id: int | None
    original_id: int | None
    tombstone: int
    response_json: str | None
    created_at: str
    updated_at: str
    settled_date: str | None = None
    fee: int | None = None
    fee_name: str | None = None
    local_year: int | None = None

    @property
    def live(self) -> bool:
        """True while the row's money effect stands."""
        return self.status in LIVE_STATUSES


class HostLedger:
    """The host's SQLite ledger in ``data_dir`` (created if missing).

    ``secret`` keys card tokens (default: :func:`~tillvault.host.secret.load_host_secret`).
    ``default_credit_limit`` (minor units) is given to cards seen for the first time.
    Thread-safe: one connection guarded by a lock; group calls with :meth:`atomic`.

    :raises ConfigError: the secret is not the one this ledger was created with.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        secret: bytes | None = None,
        config_dir: Path | None = None,
        default_credit_limit: int = DEFAULT_CREDIT_LIMIT,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / LEDGER_FILE
        self._secret = secret if secret is not None else load_host_secret(self.data_dir, config_dir)
        self.default_credit_limit = default_credit_limit
        self._lock = threading.RLock()
        self._depth = 0
        # A class, not a generator context manager: a request enters it about ten times.
        self._transaction = _Transaction(self)
        # (kind, key, currency) -> id of system accounts: accounts are never deleted, so an id
        # once committed stays valid; forgotten whenever a transaction does not commit.
        self._system_ids: dict[tuple[str, str, str], int] = {}
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        try:
            drop_yearless_key(self._db)  # a version-3 ledger, once (foreign keys still off)
            self._db.execute("PRAGMA foreign_keys=ON")
            self._create_schema()
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self) -> None:
        with self.atomic():
            migrate(self._db)
            check = secret_check(self._secret)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'secret_check'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('secret_check', ?)", (check,))
            elif row["value"] != check:
                raise ConfigError(
                    f"the host secret does not match the one {self.path} was created with "
                    "(check TILLVAULT_HOST_SECRET or the host config dir)"
                )

    # -- plumbing ------------------------------------------------------------------------------

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """Run the enclosed calls as one SQLite transaction (nesting joins the outer one).

        Committed when the outermost block ends normally, rolled back when it raises.
        """
        return self._transaction

    def _begin(self) -> None:
        """Enter a transaction block: take the lock, and open the transaction when outermost."""
        self._lock.acquire()
        if self._depth == 0:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._lock.release()
                raise
        self._depth += 1

    def _end(self, commit: bool) -> None:
        """Leave a transaction block; the outermost commits (``commit``) or rolls back."""
        try:
            if self._depth == 1:
                if commit:
                    try:
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._abandon()
                        raise
                else:
                    self._abandon()
        finally:
            self._depth -= 1
            self._lock.release()

    def _abandon(self) -> None:
        """Roll back the open transaction (if SQLite has not already) and forget what it taught."""
        # Ids learnt inside the transaction may be gone with it.
        self._system_ids.clear()
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a read under the lock (never interleaved with another thread's transaction)."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a read-only query under the lock (for the host's settlement and payout modules)."""
        return self._all(sql, args)

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one writing statement once per ``rows`` item, in one transaction (joins an open
        :meth:`atomic`). For the host's settlement, which marks a whole batch at once."""
        with self.atomic():
            self._db.executemany(sql, rows)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one writing statement in a transaction (joins an open :meth:`atomic`); the new rowid.

        For the host's settlement and payout modules; money moves only through :meth:`post`.
        """
        with self.atomic():
            cur = self._db.execute(sql, args)
            return cur.lastrowid or 0

    def meta(self, key: str) -> str | None:
        """The value stored under ``key`` in the ledger's meta table, or None."""
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row is not None else None

    def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key`` in the ledger's meta table."""
        self.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)
        )

    def setting(self, name: str) -> Any:
        """A host setting (JSON) by name, or None when never set (see :mod:`.settings`)."""
        value = self.meta(f"setting:{name}")
        return json.loads(value) if value is not None else None

    def put_setting(self, name: str, value: Any) -> None:
        """Store the host setting ``name`` (JSON-ready ``value``)."""
        self.set_meta(f"setting:{name}", json.dumps(value, sort_keys=True))

    def token(self, pan: str) -> str:
        """The card's account key: HMAC-SHA256(PAN) under the host secret (hex)."""
        return card_token(self._secret, pan)

    # -- accounts ------------------------------------------------------------------------------

    def _account(self, where: str, args: tuple[Any, ...]) -> Account | None:
        row = self._one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE {where}", args)
        return _account_from_row(row) if row is not None else None

    def _insert_account(self, sql: str, args: tuple[Any, ...]) -> Account:
        """Run an ``INSERT INTO accounts`` (inside an open transaction) and return the new account."""
        if _HAS_RETURNING:
            row = self._db.execute(f"{sql} RETURNING {_ACCOUNT_COLUMNS}", args).fetchall()[0]
            return _account_from_row(row)
        rowid = self._db.execute(sql, args).lastrowid
        account = self._account("id = ?", (rowid,))
        assert account is not None
        return account

    def account_by_id(self, account_id: int) -> Account:
        """The account with ``account_id``.

        :raises InvalidInput: no such account.
        """
        account = self._account("id = ?", (account_id,))
        if account is None:
            raise InvalidInput(f"no account with id {account_id}")
        return account

    def system_account(self, kind: str, key: str, currency: str) -> Account:
        """The non-card account (kind, key, currency), created on first use."""
        with self.atomic():
            account = self._account("kind = ? AND key = ? AND currency = ?", (kind, key, currency))
            if account is None:
                account = self._insert_account(
                    "INSERT INTO accounts (kind, key, currency, created_at) VALUES (?, ?, ?, ?)",
                    (kind, key, currency, _now()),
                )
            self._system_ids[(kind, key, currency)] = account.id
            return account

    def system_account_id(self, kind: str, key: str, currency: str) -> int:
        """The id of :meth:`system_account` (kind, key, currency), remembered after the first call.

        For the per-request path, which needs only the id (its balance would be a read for nothing).
        """
        with self._lock:
            known = self._system_ids.get((kind, key, currency))
            return known if known is not None else self.system_account(kind, key, currency).id

    def card_account(self, token: str, masked_pan: str | None, currency: str) -> Account:
        """The cardholder account for ``token`` in ``currency``; a new card gets the default limit."""
        with self.atomic():
            account = self._account("kind = 'cardholder' AND key = ? AND currency = ?", (token, currency))
            if account is None:
                account = self._insert_account(
                    "INSERT INTO accounts (kind, key, currency, masked_pan, credit_limit, created_at)"
                    " VALUES ('cardholder', ?, ?, ?, ?, ?)",
                    (token, currency, masked_pan, self.default_credit_limit, _now()),
                )
            return account

    def set_card(
        self,
        pan: str,
        *,
        currency: str = "156",
        credit_limit: int | None = None,
        balance: int | None = None,
        blocked: bool | None = None,
        card_type: str | None = None,
    ) -> Account:
        """Create or change the account of card ``pan`` (hashed on the way in; never stored).

        ``credit_limit`` (minor units, ≥ 0) replaces the limit; ``balance`` (minor units, signed:
        funds held) is reached by an ``adjustment`` transfer against the deposit account;
        ``blocked`` blocks (declined "62") or unblocks the card; ``card_type`` (``debit``,
        ``credit``, ``unknown``; ``""`` clears it back to the card-type rule) picks the fee rule
        at settlement.

        :raises InvalidInput: the PAN is not 12-19 digits, the credit limit is negative or the
            card type is not one of those.
        """
        if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
            raise InvalidInput("PAN must be 12 to 19 digits")
        if credit_limit is not None and credit_limit < 0:
            raise InvalidInput("credit limit must not be negative")
        if card_type is not None and card_type not in ("", *CARD_TYPES):
            raise InvalidInput(f"card type must be one of {', '.join(CARD_TYPES)}, got {card_type!r}")
        with self.atomic():
            account = self.card_account(self.token(pan), mask_pan(pan), currency)
            if credit_limit is not None:
                self._db.execute("UPDATE accounts SET credit_limit = ? WHERE id = ?", (credit_limit, account.id))
            if blocked is not None:
                self._db.execute("UPDATE accounts SET blocked = ? WHERE id = ?", (int(blocked), account.id))
            if card_type is not None:
                self._db.execute("UPDATE accounts SET card_type = ? WHERE id = ?", (card_type or None, account.id))
            if balance is not None and balance != account.balance:
                deposit = self.system_account("deposit", "cash", currency)
                diff = balance - account.balance
                if diff > 0:
                    self.post(deposit.id, account.id, diff, currency, "adjustment", "admin set balance")
                else:
                    self.post(account.id, deposit.id, -diff, currency, "adjustment", "admin set balance")
            return self.account_by_id(account.id)

    def accounts(self, kind: str | None = None) -> list[Account]:
        """Every account (or those of ``kind``), oldest first."""
        where, args = ("kind = ?", (kind,)) if kind else ("1 = 1", ())
        rows = self._all(f"SELECT id FROM accounts WHERE {where} ORDER BY id", args)
        return [self.account_by_id(r["id"]) for r in rows]

    # -- transfers -----------------------------------------------------------------------------

    def post(
        self,
        debit_account: int,
        credit_account: int,
        amount: int,
        currency: str,
        kind: str,
        reference: str,
        *,
        cancels: int | None = None,
    ) -> int:
        """Record a transfer of ``amount`` minor units and update both accounts; its id.

        :raises InvalidInput: ``amount`` is not positive, the accounts are the same, or the
            transfer named by ``cancels`` is already cancelled.
        """
        if amount <= 0:
            raise InvalidInput(f"a transfer amount must be positive, got {amount}")
        if debit_account == credit_account:
            raise InvalidInput("a transfer needs two different accounts")
        with self.atomic():
            try:
                cur = self._db.execute(
                    "INSERT INTO transfers (debit_account, credit_account, amount, currency, kind,"
                    " reference, cancels, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (debit_account, credit_account, amount, currency, kind, reference, cancels, _now()),
                )
            except sqlite3.IntegrityError as exc:
                raise InvalidInput(f"transfer refused: {exc}") from None
            self._db.execute(
                "UPDATE accounts SET debits_posted = debits_posted + ? WHERE id = ?", (amount, debit_account)
            )
            self._db.execute(
                "UPDATE accounts SET credits_posted = credits_posted + ? WHERE id = ?",
                (amount, credit_account),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def cancel(self, transfer_id: int, kind: str, reference: str) -> int:
        """Post the opposite of transfer ``transfer_id`` (same amount, accounts swapped); its id.

        :raises InvalidInput: no such transfer, or it was already cancelled.
        """
        with self.atomic():
            row = self._db.execute(
                "SELECT debit_account, credit_account, amount, currency FROM transfers WHERE id = ?",
                (transfer_id,),
            ).fetchone()
            if row is None:
                raise InvalidInput(f"no transfer {transfer_id} to cancel")
            return self.post(
                row["credit_account"],
                row["debit_account"],
                row["amount"],
                row["currency"],
                kind,
                reference,
                cancels=transfer_id,
            )

    def transfers(self) -> list[dict[str, Any]]:
        """Every transfer as a dict, oldest first."""
        return [dict(r) for r in self._all("SELECT * FROM transfers ORDER BY id")]

    def check_balanced(self) -> dict[str, Any]:
        """Prove the double entry: per account, posted totals equal the sums of its transfers,
        and total debits equal total credits. Returns ``{"ok", "debits", "credits", "problems"}``.
        """
        with self.atomic():
            problems: list[str] = []
            debits = self._db.execute("SELECT COALESCE(SUM(debits_posted), 0) FROM accounts").fetchone()[0]
            credits = self._db.execute("SELECT COALESCE(SUM(credits_posted), 0) FROM accounts").fetchone()[0]
            moved = self._db.execute("SELECT COALESCE(SUM(amount), 0) FROM transfers").fetchone()[0]
            if not debits == credits == moved:
                problems.append(f"debits {debits}, credits {credits}, transfers {moved} differ")
            rows = self._db.execute(
                "SELECT a.id, a.debits_posted, a.credits_posted,"
                " (SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE debit_account = a.id) AS d,"
                " (SELECT COALESCE(SUM(amount), 0) FROM transfers WHERE credit_account = a.id) AS c"
                " FROM accounts a"
            ).fetchall()
            for r in rows:
                if (r["debits_posted"], r["credits_posted"]) != (r["d"], r["c"]):
                    problems.append(f"account {r['id']} posted totals disagree with its transfers")
            return {"ok": not problems, "debits": debits, "credits": credits, "problems": problems}

    # -- authorization log ---------------------------------------------------------------------

    def _record(self, where: str, args: tuple[Any, ...]) -> AuthRecord | None:
        row = self._one(f"SELECT * FROM authorizations WHERE {where}", args)
        return AuthRecord(**dict(row)) if row is not None else None

    def find(self, terminal_id: str, local_date: str, stan: str, year: int) -> AuthRecord | None:
        """The log row for (terminal id, local date MMDD, STAN) in ``year`` (see
        :func:`~.ledger_schema.request_year`: a STAN comes back on the same date next year), or None."""
        return self._record(
            "terminal_id = ? AND local_date = ? AND stan = ? AND local_year = ?", (terminal_id, local_date, stan, year)
        )

    def find_by_rrn(self, terminal_id: str, rrn: str) -> AuthRecord | None:
        """The log row of ``terminal_id`` with retrieval reference number ``rrn``, or None."""
        return self._record("terminal_id = ? AND rrn = ?", (terminal_id, rrn))

    def rrn_in_use(self, rrn: str) -> bool:
        """True when any log row already carries ``rrn``."""
        return self._one("SELECT 1 FROM authorizations WHERE rrn = ?", (rrn,)) is not None

    def get(self, record_id: int) -> AuthRecord:
        """The log row with ``record_id``.

        :raises InvalidInput: no such row.
        """
        record = self._record("id = ?", (record_id,))
        if record is None:
            raise InvalidInput(f"no authorization record {record_id}")
        return record

    def insert_auth(self, **columns: Any) -> AuthRecord:
        """Insert a log row (column names as in :class:`AuthRecord`) and return it."""
        with self.atomic():
            return self.get(self.add_auth(**columns))

    def add_auth(self, **columns: Any) -> int:
        """Insert a log row (column names as in :class:`AuthRecord`); its id (no read-back).

        :raises InvalidInput: a column name that is not one of the log's.
        """
        unknown = columns.keys() - _AUTH_COLUMN_SET
        if unknown:
            raise InvalidInput(f"unknown authorization columns {sorted(unknown)}")
        now = _now()
        names = [*columns, "created_at", "updated_at"]
        with self.atomic():
            cur = self._db.execute(
                f"INSERT INTO authorizations ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                (*columns.values(), now, now),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def update_auth(self, record_id: int, **columns: Any) -> AuthRecord:
        """Change columns of log row ``record_id`` and return it."""
        unknown = columns.keys() - _AUTH_COLUMN_SET
        if unknown:
            raise InvalidInput(f"unknown authorization columns {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in [*columns, "updated_at"])
        with self.atomic():
            self._db.execute(
                f"UPDATE authorizations SET {assignments} WHERE id = ?",
                (*columns.values(), _now(), record_id),
            )
            return self.get(record_id)

    def authorizations(self, terminal_id: str | None = None, batch: int | None = None) -> list[AuthRecord]:
        """Log rows, oldest first, optionally of one terminal (field 41 form) and batch."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if terminal_id is not None:
            where.append("terminal_id = ?")
            args.append(terminal_id)
        if batch is not None:
            where.append("batch = ?")
            args.append(batch)
        rows = self._all(f"SELECT * FROM authorizations WHERE {' AND '.join(where)} ORDER BY id", args)
        return [AuthRecord(**dict(r)) for r in rows]

    def next_rrn(self) -> str:
        """A new retrieval reference number: 12 digits, unique in this ledger."""
        bump = "INSERT INTO counters VALUES ('rrn', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1"
        with self.atomic():
            if _HAS_RETURNING:
                # One statement: the new value, and whether a log row already carries it.
                value, taken = self._db.execute(f"{bump} {_RRN_RETURNING}").fetchall()[0]
                rrn = f"{value:012d}"
            else:
                self._db.execute(bump)
                value = self._db.execute("SELECT value FROM counters WHERE name = 'rrn'").fetchone()[0]
                rrn = f"{value:012d}"
                taken = self.rrn_in_use(rrn)
            while taken:
                # an uploaded transaction brought this RRN from elsewhere: skip it
                value += 1
                rrn = f"{value:012d}"
                self._db.execute("UPDATE counters SET value = ? WHERE name = 'rrn'", (value,))
                taken = self.rrn_in_use(rrn)
            return rrn

    @staticmethod
    def new_auth_code() -> str:
        """A 6-digit authorization code."""
        return f"{secrets.randbelow(1_000_000):06d}"

    # -- settlement ----------------------------------------------------------------------------

    def batch_totals(self, terminal_id: str, batch: int, currency: str | None = None) -> BatchTotals:
        """The host's totals of ``batch`` for ``terminal_id`` (field 41 form, space padded).

        Sales and refunds count while live (approved, advised, uploaded); the reversal figures
        count those reversed or voided (reversals of originals the host never saw included).
        Declines and the void messages themselves are not counted. Minor units.
        """
        sql = (
            "SELECT proc_code, status, COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total"
            " FROM authorizations WHERE terminal_id = ? AND batch = ? AND proc_code IN (?, ?)"
        )
        args: list[Any] = [terminal_id, batch, PROC_SALE, PROC_REFUND]
        since = self._batch_since(terminal_id, batch)
        if since is not None:
            sql += " AND created_at > ?"
            args.append(since)
        if currency is not None:
            sql += " AND currency = ?"
            args.append(currency)
        figures = {f.name: 0 for f in fields(BatchTotals)}
        for row in self._all(sql + " GROUP BY proc_code, status", args):
            side = "sales" if row["proc_code"] == PROC_SALE else "refunds"
            if row["status"] in LIVE_STATUSES:
                prefix = side
            elif row["status"] in ("reversed", "voided"):
                prefix = f"{side}_reversal"
            else:
                continue
            figures[f"{prefix}_count"] += row["n"]
            figures[f"{prefix}_amount"] += row["total"]
        return BatchTotals(**figures)

    def _batch_since(self, terminal_id: str, batch: int) -> str | None:
        """Where a batch number used again begins (a device that replaced another under the same
        terminal id, a restored one): the last settlement of that number before its newest
        transaction, so the batch is what came after it, never the earlier batch's rows too."""
        since = self._one(
            "SELECT max(s.created_at) AS t FROM settlements s WHERE s.terminal_id = ? AND s.batch = ?"
            " AND (s.response = '00' OR s.business_date IS NOT NULL) AND s.created_at < ("
            "SELECT max(a.created_at) FROM authorizations a WHERE a.terminal_id = ? AND a.batch = ?)",
            (terminal_id, batch, terminal_id, batch),
        )
        return None if since is None or since["t"] is None else str(since["t"])

    def record_settlement(
        self,
        *,
        terminal_id: str,
        batch: int,
        proc_code: str,
        stan: str,
        response: str,
        terminal_totals: BatchTotals,
        host_totals: BatchTotals,
        business_date: str | None = None,
    ) -> None:
        """Log a settlement request and the host's answer (``business_date``: ISO date the batch
        settled on, when it balanced)."""
        with self.atomic():
            self._db.execute(
                "INSERT INTO settlements (terminal_id, batch, proc_code, stan, response, terminal_totals,"
                " host_totals, created_at, business_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    terminal_id,
                    batch,
                    proc_code,
                    stan,
                    response,
                    json.dumps(asdict(terminal_totals)),
                    json.dumps(asdict(host_totals)),
                    _now(),
                    business_date,
                ),
            )

    def batch_settled(self, terminal_id: str, batch: int, *, since: str | None = None) -> bool:
        """True once the batch was settled: a 0500 answered "00", or a 960000 settled on the host's
        figures; with ``since`` (a ``created_at``), settled after that moment (a batch number used
        again after its settlement holds transactions the earlier settlement did not)."""
        row = self._one(
            "SELECT 1 FROM settlements WHERE terminal_id = ? AND batch = ?"
            " AND (response = '00' OR business_date IS NOT NULL) AND created_at > ?",
            (terminal_id, batch, since or ""),
        )
        return row is not None

    def batch_view(self, terminal_id: str, batch: int | None = None) -> list[dict[str, Any]]:
        """The host's rows of one terminal's batch (every batch when ``batch`` is None), oldest first.

        ``terminal_id`` as typed or space padded (field 41; :raises MessageError: not a valid
        terminal id). Each row: ``terminal_id``,
        ``merchant_id`` (stripped), ``batch``, ``invoice``, ``stan``, ``date`` (local MMDD),
        ``kind`` (``sale``, ``offline_sale``, ``refund``, ``offline_refund``, ``void``),
        ``amount`` (minor units), ``currency``, ``status`` (``approved``, ``advised``,
        ``uploaded``: money effect stands; ``declined``, ``reversed``, ``voided``: it does not),
        ``live``, ``rrn``, ``auth_code``, ``masked_pan``, ``settled_date`` (ISO business date or
        None), ``fee`` and ``fee_name`` (set at settlement). The input to
        :func:`tillvault.host.reconcile.compare_views`. A batch number used again holds only what
        came after its earlier settlement (as :meth:`batch_totals` counts it).
        """
        tid = terminal_id_field(terminal_id)
        rows = self.authorizations(tid, batch)
        since = self._batch_since(tid, batch) if batch is not None else None
        return [
            _view_row(r)
            for r in rows
            if r.proc_code in (PROC_SALE, PROC_REFUND, PROC_VOID) and (since is None or r.created_at > since)
        ]


class _Transaction:
    """What :meth:`HostLedger.atomic` returns: stateless (the depth lives in the ledger), so reusable."""

    __slots__ = ("_ledger",)

    def __init__(self, ledger: HostLedger) -> None:
        self._ledger = ledger

    def __enter__(self) -> None:
        self._ledger._begin()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._ledger._end(commit=exc_type is None)


def _account_from_row(row: sqlite3.Row) -> Account:
    return Account(**{**dict(row), "blocked": bool(row["blocked"])})


def _view_row(record: AuthRecord) -> dict[str, Any]:
    """One :meth:`HostLedger.batch_view` row."""
    if record.proc_code == PROC_VOID:
        kind = "void"
    else:
        kind = "sale" if record.proc_code == PROC_SALE else "refund"
        if record.mti == "0220":
            kind = f"offline_{kind}"
    return {
        "terminal_id": record.terminal_id.strip(),
        "merchant_id": (record.merchant_id or "").strip() or None,
        "batch": record.batch,
        "invoice": record.invoice,
        "stan": record.stan,
        "date": record.local_date,
        "kind": kind,
        "amount": record.amount,
        "currency": record.currency,
        "status": record.status,
        "live": record.live and record.proc_code != PROC_VOID,
        "rrn": record.rrn,
        "auth_code": record.auth_code,
        "masked_pan": record.masked_pan,
        "settled_date": record.settled_date,
        "fee": record.fee,
        "fee_name": record.fee_name,
    }
