"""The hot-tier schema and its migrations, versioned with ``PRAGMA user_version``.

Each migration is a list of statements applied in one transaction; the version only moves
forward. A database newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3

from tillvault.errors import ConfigError

MIGRATIONS: list[list[str]] = [
    # 1: the event log, current state, counters, idempotency, outbox.
    [
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            body BLOB NOT NULL,
            checksum BLOB NOT NULL,
            chain BLOB NOT NULL
        )""",
        # The link before the oldest event still in the hot tier (moves when events are sealed away).
        """CREATE TABLE chain_anchor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            chain BLOB NOT NULL
        )""",
        "INSERT INTO chain_anchor (id, seq, chain) VALUES (1, 0, zeroblob(32))",
        """CREATE TABLE transactions (
            invoice INTEGER PRIMARY KEY,
            terminal_id TEXT NOT NULL,
            batch INTEGER NOT NULL,
            stan INTEGER NOT NULL,
            business_date TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount >= 0),
            currency TEXT NOT NULL,
            card_token TEXT,
            masked_pan TEXT,
            brand TEXT,
            card_type TEXT,
            entry_mode TEXT,
            merchant_id TEXT,
            operator_id TEXT,
            customer_ref TEXT,
            original_invoice INTEGER,
            rrn TEXT,
            auth_code TEXT,
            response_code TEXT,
            reason TEXT,
            fee INTEGER,
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL,
            idem_key TEXT UNIQUE,
            extra TEXT,
            checksum BLOB NOT NULL,
            UNIQUE (terminal_id, business_date, stan)
        )""",
        # Only unresolved intents are looked up by status: a partial index stays tiny.
        "CREATE INDEX transactions_pending ON transactions (invoice) WHERE status = 'pending'",
        "CREATE INDEX transactions_batch ON transactions (batch)",
        "CREATE INDEX transactions_card_day ON transactions (card_token, business_date)",
        """CREATE TABLE batches (
            batch INTEGER PRIMARY KEY,
            status TEXT NOT NULL,
            opened_ms INTEGER NOT NULL,
            closed_ms INTEGER,
            report TEXT
        )""",
        """CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        )""",
        """CREATE TABLE idempotency (
            key TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            result TEXT NOT NULL
        )""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            invoice INTEGER,
            payload BLOB NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_ms INTEGER NOT NULL,
            idem_key TEXT UNIQUE
        )""",
        "CREATE INDEX outbox_pending ON outbox (status, id)",
        """CREATE TABLE merchants (
            merchant_id TEXT PRIMARY KEY,
            record TEXT NOT NULL
        )""",
        """CREATE TABLE customers (
            customer_ref TEXT PRIMARY KEY,
            phone_token TEXT UNIQUE,
            name_enc BLOB,
            visits INTEGER NOT NULL DEFAULT 0,
            total_amount INTEGER NOT NULL DEFAULT 0,
            first_ms INTEGER NOT NULL,
            last_ms INTEGER NOT NULL
        )""",
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        # Filler rows written and deleted to pre-grow free pages (the physical reserve).
        "CREATE TABLE headroom (id INTEGER PRIMARY KEY, pad BLOB NOT NULL)",
    ],
]

MIGRATIONS.append(
    # 2: the warm and cold tiers' catalogue, and usage samples for the runway forecast.
    [
        """CREATE TABLE segments (
            name TEXT PRIMARY KEY,
            batch INTEGER NOT NULL UNIQUE,
            records INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            digest TEXT NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            min_created_ms INTEGER,
            max_created_ms INTEGER,
            sealed_ms INTEGER NOT NULL,
            local INTEGER NOT NULL DEFAULT 1,
            device TEXT NOT NULL DEFAULT 'A',
            acked_ms INTEGER,
            sink TEXT,
            evicted_ms INTEGER
        )""",
        """CREATE TABLE usage_samples (
            ts_ms INTEGER PRIMARY KEY,
            used_bytes INTEGER NOT NULL,
            kind TEXT NOT NULL
        )""",
    ]
)

_TRANSACTIONS_V3 = """CREATE TABLE transactions_v3 (
    invoice INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    batch INTEGER NOT NULL,
    stan INTEGER NOT NULL,
    business_date TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    currency TEXT NOT NULL,
    card_token TEXT,
    masked_pan TEXT,
    brand TEXT,
    card_type TEXT,
    entry_mode TEXT,
    merchant_id TEXT,
    operator_id TEXT,
    customer_ref TEXT,
    original_invoice INTEGER,
    rrn TEXT,
    auth_code TEXT,
    response_code TEXT,
    reason TEXT,
    fee INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    idem_key TEXT,
    extra TEXT,
    checksum BLOB NOT NULL,
    UNIQUE (terminal_id, business_date, stan)
)"""

MIGRATIONS.append(
    # 3: fewer pages per intent commit. The idempotency key's uniqueness moves to a partial
    # index (most sales carry none, so they no longer touch it) and the batch index goes (the
    # hot tier holds about one batch; its count is cached).
    [
        _TRANSACTIONS_V3,
        "INSERT INTO transactions_v3 SELECT * FROM transactions",
        "DROP TABLE transactions",
        "ALTER TABLE transactions_v3 RENAME TO transactions",
        "CREATE UNIQUE INDEX transactions_idem ON transactions (idem_key) WHERE idem_key IS NOT NULL",
        "CREATE INDEX transactions_pending ON transactions (invoice) WHERE status = 'pending'",
        "CREATE INDEX transactions_card_day ON transactions (card_token, business_date)",
    ]
)

MIGRATIONS.append(
    # 4: members cost less: the reference is already the keyed phone token (its first 60 bits), so
    # the full token column and its unique index go (S1 minimized; S2.2 merges stay by phone).
    [
        """CREATE TABLE customers_v4 (
            customer_ref TEXT PRIMARY KEY,
            name_enc BLOB,
            visits INTEGER NOT NULL DEFAULT 0,
            total_amount INTEGER NOT NULL DEFAULT 0,
            first_ms INTEGER NOT NULL,
            last_ms INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "INSERT INTO customers_v4 SELECT customer_ref, name_enc, visits, total_amount, first_ms, last_ms "
        "FROM customers",
        "DROP TABLE customers",
        "ALTER TABLE customers_v4 RENAME TO customers",
    ]
)

#: Sales that count towards a day's limits (the terminal total is kept by triggers, see migration 5).
LIVE_SALE = "kind IN ('sale', 'offline_sale') AND status IN ('pending', 'approved', 'offline_approved')"


def _live(row: str) -> str:
    return LIVE_SALE.replace("kind", f"{row}.kind").replace("status", f"{row}.status")


MIGRATIONS.append(
    # 5: the terminal's day total in O(1). Summing the day's rows at every sale made a surge day
    # quadratic; triggers keep (amount, count) of live sales per business day in the same
    # transaction as the rows themselves (so a rollback, a replay on device B or a purge after
    # sealing keeps it exact: it always equals the sum over the hot rows).
    [
        """CREATE TABLE day_sales (
            business_date TEXT PRIMARY KEY,
            amount INTEGER NOT NULL,
            count INTEGER NOT NULL
        ) WITHOUT ROWID""",
        f"""CREATE TRIGGER day_sales_insert AFTER INSERT ON transactions WHEN {_live("NEW")}
        BEGIN
            INSERT INTO day_sales (business_date, amount, count) VALUES (NEW.business_date, NEW.amount, 1)
            ON CONFLICT (business_date) DO UPDATE SET amount = amount + excluded.amount, count = count + 1;
        END""",
        f"""CREATE TRIGGER day_sales_delete AFTER DELETE ON transactions WHEN {_live("OLD")}
        BEGIN
            UPDATE day_sales SET amount = amount - OLD.amount, count = count - 1
            WHERE business_date = OLD.business_date;
        END""",
        f"""CREATE TRIGGER day_sales_update AFTER UPDATE OF kind, status, amount, business_date ON transactions
        WHEN ({_live("OLD")}) OR ({_live("NEW")})
        BEGIN
            UPDATE day_sales SET amount = amount - OLD.amount, count = count - 1
            WHERE business_date = OLD.business_date AND {_live("OLD")};
            INSERT INTO day_sales (business_date, amount, count)
            SELECT NEW.business_date, NEW.amount, 1 WHERE {_live("NEW")}
            ON CONFLICT (business_date) DO UPDATE SET amount = amount + excluded.amount, count = count + 1;
        END""",
        f"INSERT INTO day_sales (business_date, amount, count) SELECT business_date, sum(amount), count(*) "
        f"FROM transactions WHERE {LIVE_SALE} GROUP BY business_date",
    ]
)

MIGRATIONS.append(
    # 6: operators and their roles (S10: access permissions). The PIN is kept as a keyed hash
    # (the key lives in the key ring, outside the data folder) with its own salt; wrong PINs
    # are counted, and an operator is locked for a while after too many.
    [
        """CREATE TABLE operators (
            operator_id TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            pin_salt BLOB NOT NULL,
            pin_hash BLOB NOT NULL,
            failed INTEGER NOT NULL DEFAULT 0,
            locked_until_ms INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL
        ) WITHOUT ROWID""",
    ]
)


def _unsealed(row: str) -> str:
    """The row's batch has no segment on this device (its sales count in the hot total)."""
    return f"NOT EXISTS (SELECT 1 FROM segments s WHERE s.batch = {row}.batch AND s.local = 1)"


def _move_batch(sign: str) -> str:
    """Add a segment's batch's live hot rows to ``day_sales`` times ``sign`` (``-1``: they leave it)."""
    return f"""INSERT INTO day_sales (business_date, amount, count)
            SELECT business_date, {sign} * sum(amount), {sign} * count(*) FROM transactions
            WHERE batch = NEW.batch AND {LIVE_SALE} GROUP BY business_date
            ON CONFLICT (business_date)
            DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count;"""


MIGRATIONS.append(
    # 7: the terminal's day total counts a sealed batch once. Sealing and the purge of the
    # sealed rows are two writes; when the purge cannot run (the disk filled in between), the
    # rows linger in the hot tier while the local segment's aggregates count them too, and the
    # terminal's daily limit saw those sales twice. ``day_sales`` now sums the hot rows whose
    # batch has no local segment (as the per-card total already did): a batch leaves it when
    # its segment is catalogued, and comes back if the segment leaves the device first.
    [
        "DROP TRIGGER day_sales_insert",
        "DROP TRIGGER day_sales_delete",
        "DROP TRIGGER day_sales_update",
        f"""CREATE TRIGGER day_sales_insert AFTER INSERT ON transactions
        WHEN {_live("NEW")} AND {_unsealed("NEW")}
        BEGIN
            INSERT INTO day_sales (business_date, amount, count) VALUES (NEW.business_date, NEW.amount, 1)
            ON CONFLICT (business_date) DO UPDATE SET amount = amount + excluded.amount, count = count + 1;
        END""",
        f"""CREATE TRIGGER day_sales_delete AFTER DELETE ON transactions
        WHEN {_live("OLD")} AND {_unsealed("OLD")}
        BEGIN
            UPDATE day_sales SET amount = amount - OLD.amount, count = count - 1
            WHERE business_date = OLD.business_date;
        END""",
        f"""CREATE TRIGGER day_sales_update AFTER UPDATE OF kind, status, amount, business_date, batch
        ON transactions
        WHEN ({_live("OLD")} AND {_unsealed("OLD")}) OR ({_live("NEW")} AND {_unsealed("NEW")})
        BEGIN
            UPDATE day_sales SET amount = amount - OLD.amount, count = count - 1
            WHERE business_date = OLD.business_date AND {_live("OLD")} AND {_unsealed("OLD")};
            INSERT INTO day_sales (business_date, amount, count)
            SELECT NEW.business_date, NEW.amount, 1 WHERE {_live("NEW")} AND {_unsealed("NEW")}
            ON CONFLICT (business_date) DO UPDATE SET amount = amount + excluded.amount, count = count + 1;
        END""",
        f"""CREATE TRIGGER day_sales_sealed AFTER INSERT ON segments WHEN NEW.local = 1
        BEGIN
            {_move_batch("-1")}
        END""",
        f"""CREATE TRIGGER day_sales_segment_moved AFTER UPDATE OF local ON segments
        WHEN (OLD.local = 1) != (NEW.local = 1)
        BEGIN
            {_move_batch("(CASE WHEN NEW.local = 1 THEN -1 ELSE 1 END)")}
        END""",
        "DELETE FROM day_sales",
        f"INSERT INTO day_sales (business_date, amount, count) SELECT business_date, sum(amount), count(*) "
        f"FROM transactions WHERE {LIVE_SALE} AND {_unsealed('transactions')} GROUP BY business_date",
    ]
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; return the version found before.

    :raises ConfigError: if the database was written by a newer TillVault.
    """
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise ConfigError(
            f"journal schema version {found} is newer than this TillVault understands ({SCHEMA_VERSION}); "
            "upgrade TillVault"
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
