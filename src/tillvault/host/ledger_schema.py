"""The host ledger's SQLite schema and its migrations (``meta.schema_version``).

Version 1: accounts, transfers, the authorization log, settlements, counters.
Version 2 (settlement and payout, S15): ``accounts.card_type``; ``authorizations.settled_date``,
``fee``, ``fee_name``; ``settlements.business_date``; the ``merchants``, ``payout_runs`` and
``payouts`` tables. Migration adds the missing columns and tables in place; nothing is rewritten.
Version 3: the index on ``authorizations.settled_date`` holds settled rows only
(``authorizations_settled_day``, partial), so logging a request writes one index page less; the
full version 2 index ``authorizations_settled`` is dropped.
Version 4: a request is keyed by terminal, date, STAN *and year* (``authorizations.local_year``,
unique index ``authorizations_request``): the year-less table constraint of version 3 is removed by
rebuilding the table once (:func:`drop_yearless_key`), every row kept.
"""

from __future__ import annotations

import calendar
import re
import sqlite3
from datetime import date, timedelta

__all__ = ["SCHEMA_VERSION", "drop_yearless_key", "migrate", "request_year"]

SCHEMA_VERSION = 4

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    currency TEXT NOT NULL,
    masked_pan TEXT,
    credit_limit INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    debits_posted INTEGER NOT NULL DEFAULT 0,
    credits_posted INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    UNIQUE (kind, key, currency)
);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY,
    debit_account INTEGER NOT NULL REFERENCES accounts(id),
    credit_account INTEGER NOT NULL REFERENCES accounts(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    cancels INTEGER UNIQUE REFERENCES transfers(id),
    created_at TEXT NOT NULL,
    CHECK (debit_account <> credit_account)
);
CREATE TABLE IF NOT EXISTS authorizations (
    id INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    local_date TEXT NOT NULL,
    stan TEXT NOT NULL,
    mti TEXT NOT NULL,
    proc_code TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    rrn TEXT UNIQUE,
    auth_code TEXT,
    response TEXT NOT NULL,
    batch INTEGER,
    invoice INTEGER,
    status TEXT NOT NULL,
    fingerprint TEXT,
    card_token TEXT,
    masked_pan TEXT,
    merchant_id TEXT,
    local_time TEXT,
    transfer_id INTEGER REFERENCES transfers(id),
    original_id INTEGER REFERENCES authorizations(id),
    tombstone INTEGER NOT NULL DEFAULT 0,
    response_json TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS authorizations_batch ON authorizations (terminal_id, batch);
CREATE TABLE IF NOT EXISTS settlements (
    id INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    batch INTEGER NOT NULL,
    proc_code TEXT NOT NULL,
    stan TEXT NOT NULL,
    response TEXT NOT NULL,
    terminal_totals TEXT NOT NULL,
    host_totals TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS merchants (
    merchant_id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    deposit INTEGER NOT NULL DEFAULT 0 CHECK (deposit >= 0),
    activation_min INTEGER CHECK (activation_min > 0),
    refund_threshold INTEGER CHECK (refund_threshold >= 0),
    fees TEXT,
    deposit_collected_date TEXT,
    deposit_collected_transfer INTEGER REFERENCES transfers(id),
    deposit_refunded_date TEXT,
    deposit_refund_transfer INTEGER REFERENCES transfers(id),
    activated_date TEXT,
    activation_reference TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payout_runs (
    business_date TEXT PRIMARY KEY,
    payout_date TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payouts (
    id INTEGER PRIMARY KEY,
    business_date TEXT NOT NULL REFERENCES payout_runs(business_date),
    merchant_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    payout_date TEXT NOT NULL,
    net INTEGER NOT NULL,
    statement TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (business_date, merchant_id, currency)
)
"""

#: Columns added after version 1: (table, column, declaration).
_ADDED_COLUMNS = (
    ("accounts", "card_type", "TEXT"),
    ("authorizations", "settled_date", "TEXT"),
    ("authorizations", "fee", "INTEGER"),
    ("authorizations", "fee_name", "TEXT"),
    ("settlements", "business_date", "TEXT"),
    # Field 13 has no year: a request is (terminal, MMDD, STAN) within the year the host dates it in.
    ("authorizations", "local_year", "INTEGER"),
)

_INDEXES = (
    # Partial: a request's new row is unsettled; only settlement (a batch at once) adds entries.
    "CREATE INDEX IF NOT EXISTS authorizations_settled_day ON authorizations (settled_date)"
    " WHERE settled_date IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS transfers_debit ON transfers (debit_account)",
    "CREATE INDEX IF NOT EXISTS transfers_credit ON transfers (credit_account)",
    # One request per terminal, date and STAN in a year (a STAN comes back on the same date next year).
    "CREATE UNIQUE INDEX IF NOT EXISTS authorizations_request"
    " ON authorizations (terminal_id, local_date, stan, local_year)",
    # What was refunded against a sale (a refund never returns more than the sale): refunds only.
    "CREATE INDEX IF NOT EXISTS authorizations_original ON authorizations (original_id) WHERE original_id IS NOT NULL",
)


#: Indexes of earlier versions that a later one replaced.
_DROPPED_INDEXES = ("authorizations_settled",)


#: The key of version 3 and before: (terminal, MMDD, STAN) for ever, so next year's request on the
#: same date with the same STAN was taken for a duplicate (declined 94, an advice lost).
_YEARLESS_KEY = "UNIQUE (terminal_id, local_date, stan)"


#: Days a request may be dated ahead of the host's own date and still be dated in the coming days
#: (a terminal clock running ahead around New Year), rather than a year back. Wide, so that a
#: request and its repeat or reversal a day later are dated alike; an advice older than the rest
#: of the year (335 days) is dated wrongly, which no acquirer takes anyway.
REQUEST_CLOCK_AHEAD_DAYS = 30


def request_year(local_date: str, today: date) -> int:
    """The year of a request dated ``local_date`` (field 13, MMDD) that arrives on ``today``: the
    latest year that does not put the date in the future (beyond a terminal clock running up to
    :data:`REQUEST_CLOCK_AHEAD_DAYS` ahead). A request from 31 December answered on 1 January is
    last year's; an advice stored since July and sent in January is last July's; a 29 February
    is dated in a leap year."""
    month, day = int(local_date[:2]), int(local_date[2:])
    latest = today + timedelta(days=REQUEST_CLOCK_AHEAD_DAYS)
    for year in (today.year + 1, today.year, today.year - 1):
        try:
            if date(year, month, day) <= latest:
                return year
        except ValueError:
            continue  # 29 February of a year that has none (or a date that is no date)
    year = today.year - 1  # 29 February: the last leap year
    while not calendar.isleap(year):
        year -= 1
    return year


def drop_yearless_key(db: sqlite3.Connection) -> bool:
    """Rebuild a version-3 authorization log without its year-less unique key (foreign keys must be
    off, outside any transaction: run before :func:`migrate`). Returns True if it rebuilt.

    Every row is kept as it is; each gets its ``local_year`` from its settlement date, or the day
    it was logged when it has none.
    """
    query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'authorizations'"
    row = db.execute(query).fetchone()
    if row is None or _YEARLESS_KEY not in " ".join(row[0].split()):
        return False
    db.execute("BEGIN IMMEDIATE")
    try:
        sql = " ".join(db.execute(query).fetchone()[0].split())  # again under the lock: another process
        if _YEARLESS_KEY not in sql:  # may have rebuilt it meanwhile
            db.execute("ROLLBACK")
            return False
        sql = sql.replace(", " + _YEARLESS_KEY, "").replace(_YEARLESS_KEY, "")
        sql = re.sub(r'^CREATE TABLE\s+(["`\[]?)authorizations(["`\]]?)', "CREATE TABLE authorizations_rebuilt", sql)
        db.execute(sql)
        db.execute("INSERT INTO authorizations_rebuilt SELECT * FROM authorizations")
        db.execute("DROP TABLE authorizations")
        db.execute("ALTER TABLE authorizations_rebuilt RENAME TO authorizations")
        db.execute("CREATE INDEX IF NOT EXISTS authorizations_batch ON authorizations (terminal_id, batch)")
        present = {r[1] for r in db.execute("PRAGMA table_info(authorizations)")}
        if "local_year" not in present:
            db.execute("ALTER TABLE authorizations ADD COLUMN local_year INTEGER")
        # Dated by the host's own business date where the row has one (its settlement: what the
        # host's clock said, also under a simulated clock), else by the day it was logged.
        rows = db.execute("SELECT id, local_date, created_at, settled_date FROM authorizations").fetchall()
        db.executemany(
            "UPDATE authorizations SET local_year = ? WHERE id = ?",
            [(request_year(r[1], date.fromisoformat((r[3] or r[2])[:10])), r[0]) for r in rows],
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return True


def migrate(db: sqlite3.Connection) -> None:
    """Create or upgrade the schema on ``db`` inside the caller's open transaction.

    Statement by statement: ``executescript()`` would commit the open transaction.
    """
    for statement in _TABLES.split(";"):
        if statement.strip():
            db.execute(statement)
    for table, column, declaration in _ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    for name in _DROPPED_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {name}")
    for statement in _INDEXES:
        db.execute(statement)
    db.execute(
        "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )
