"""The host ledger's SQLite schema and its migrations (``meta.schema_version``).

Version 1: accounts, transfers, the authorization log, settlements, counters.
Version 2 (settlement and payout, S15): ``accounts.card_type``; ``authorizations.settled_date``,
``fee``, ``fee_name``; ``settlements.business_date``; the ``merchants``, ``payout_runs`` and
``payouts`` tables. Migration adds the missing columns and tables in place; nothing is rewritten.
Version 3: the index on ``authorizations.settled_date`` holds settled rows only
(``authorizations_settled_day``, partial), so logging a request writes one index page less; the
full version 2 index ``authorizations_settled`` is dropped.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 3

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
    updated_at TEXT NOT NULL,
    UNIQUE (terminal_id, local_date, stan)
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
)

_INDEXES = (
    # Partial: a request's new row is unsettled; only settlement (a batch at once) adds entries.
    "CREATE INDEX IF NOT EXISTS authorizations_settled_day ON authorizations (settled_date)"
    " WHERE settled_date IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS transfers_debit ON transfers (debit_account)",
    "CREATE INDEX IF NOT EXISTS transfers_credit ON transfers (credit_account)",
)


#: Indexes of earlier versions that a later one replaced.
_DROPPED_INDEXES = ("authorizations_settled",)


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
