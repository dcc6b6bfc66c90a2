"""A request is (terminal, date, STAN) within a year: field 13 has no year, and STANs come back.

A terminal's first STAN of the day follows the time of day, so on the same date a year later the
same STANs return. They are new requests, not duplicates (which were declined 94, and an offline
sale's advice answered 94 was never charged).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tillvault.domain import iso8583 as iso
from tillvault.host.ledger import HostLedger
from tillvault.host.ledger_schema import request_year
from tillvault.host.processing import MessageProcessor
from tillvault.host.server import AcquirerHost

from .conftest import MASTERCARD, SECRET, VISA, card


@pytest.mark.parametrize(
    ("mmdd", "today", "year"),
    [
        ("0613", date(2026, 6, 13), 2026),
        ("1231", date(2026, 1, 1), 2025),  # sent on New Year's Eve, answered after midnight
        ("0101", date(2025, 12, 31), 2026),  # a terminal clock a little ahead
        ("0101", date(2025, 12, 29), 2026),  # ... or three days ahead: the same year whichever day it lands
        ("0101", date(2025, 12, 30), 2026),
        ("0229", date(2025, 3, 1), 2024),  # a leap day is dated in a leap year
        ("0229", date(2028, 2, 28), 2028),
        ("0710", date(2026, 1, 10), 2025),  # an advice stored for six months: last July
    ],
)
def test_the_year_of_a_request_is_the_one_that_puts_its_date_nearest_today(mmdd: str, today: date, year: int) -> None:
    assert request_year(mmdd, today) == year


def test_a_repeat_a_day_later_of_a_request_dated_ahead_is_still_the_same_request(tmp_path: Path) -> None:
    # A terminal clock three days ahead on 29 December: the request and its repeat the next day
    # must be dated alike, or the repeat is charged again.
    today = [date(2025, 12, 29)]
    ledger = HostLedger(tmp_path / "host", secret=SECRET)
    processor = MessageProcessor(ledger, today=lambda: today[0])
    sale = iso.sale_request(**card(stan=123, when=datetime(2026, 1, 1, 9, 0, tzinfo=UTC), amount=1_500))
    first = processor.handle(sale)
    assert first["39"] == "00"
    today[0] = date(2025, 12, 30)
    assert processor.handle(dict(sale))["37"] == first["37"]  # the first answer, not a second charge
    assert len([r for r in ledger.authorizations() if r.mti == "0200"]) == 1
    ledger.close()


def test_the_same_stan_on_the_same_date_next_year_is_a_new_sale_and_a_repeat_is_still_a_duplicate(
    tmp_path: Path,
) -> None:
    today = [date(2025, 6, 13)]
    ledger = HostLedger(tmp_path / "host", secret=SECRET)
    processor = MessageProcessor(ledger, today=lambda: today[0])
    when = datetime(2025, 6, 13, 10, 0, tzinfo=UTC)
    first = iso.sale_request(**card(stan=360001, when=when, pan=VISA, amount=1_000))
    assert processor.handle(first)["39"] == "00"
    assert processor.handle(dict(first))["39"] == "00"  # the repeat: the first answer, not a second sale
    today[0] = date(2026, 6, 13)
    again = iso.sale_request(**card(stan=360001, when=when.replace(year=2026), pan=MASTERCARD, amount=2_500))
    reply = processor.handle(again)
    assert reply["39"] == "00", reply
    rows = ledger.authorizations()
    assert [(r.local_year, r.amount) for r in rows if r.mti == "0200"] == [(2025, 1_000), (2026, 2_500)]
    # A reversal next year names next year's sale, never last year's.
    reversal = iso.reversal_request(again, when=when.replace(year=2026))
    assert processor.handle(reversal)["39"] == "00"
    statuses = {r.local_year: r.status for r in ledger.authorizations() if r.mti == "0200"}
    assert statuses[2025] == "approved" and statuses[2026] != "approved"
    ledger.close()


def _as_version_3(data: Path) -> None:
    """Put a ledger back as version 3 wrote it: the year-less unique key, no local_year."""
    db = sqlite3.connect(data / "host-ledger.sqlite3")
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'authorizations'").fetchone()[0]
    db.execute("PRAGMA foreign_keys = OFF")
    db.execute("DROP INDEX authorizations_request")
    cols = [r[1] for r in db.execute("PRAGMA table_info(authorizations)") if r[1] != "local_year"]
    old_sql = sql.replace(", local_year INTEGER", "").replace(
        "CREATE TABLE authorizations (", "CREATE TABLE authorizations_v3 ("
    )
    old_sql = old_sql.rstrip().rstrip(")") + ", UNIQUE (terminal_id, local_date, stan))"
    db.execute(old_sql)
    db.execute(f"INSERT INTO authorizations_v3 SELECT {', '.join(cols)} FROM authorizations")
    db.execute("DROP TABLE authorizations")
    db.execute("ALTER TABLE authorizations_v3 RENAME TO authorizations")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.commit()
    assert (
        "UNIQUE (terminal_id, local_date, stan)"
        in db.execute("SELECT sql FROM sqlite_master WHERE name = 'authorizations'").fetchone()[0]
    )
    db.close()


def test_a_version_3_ledger_loses_its_yearless_key_and_keeps_every_row(tmp_path: Path) -> None:
    data = tmp_path / "host"
    with AcquirerHost(data, secret=SECRET, today=lambda: date(2025, 6, 13)) as host:
        host.processor.handle(iso.sale_request(**card(stan=360002, when=datetime(2025, 6, 13, 10, tzinfo=UTC))))
    _as_version_3(data)
    ledger = HostLedger(data, secret=SECRET)
    try:
        [row] = [r for r in ledger.authorizations() if r.mti == "0200"]
        assert row.stan == "360002" and row.local_year == int(row.created_at[:4])  # unsettled: the day it was logged
        processor = MessageProcessor(ledger, today=lambda: date(row.local_year + 1, 6, 13))
        nxt = iso.sale_request(**card(stan=360002, when=datetime(row.local_year + 1, 6, 13, 10, tzinfo=UTC)))
        assert processor.handle(nxt)["39"] == "00"
        assert ledger.rows("SELECT value FROM meta WHERE key = 'schema_version'")[0][0] == "4"
    finally:
        ledger.close()


def test_a_settled_row_of_a_version_3_ledger_is_dated_by_its_settlement(tmp_path: Path) -> None:
    # The host's own business date (also under a simulated clock), not the wall clock it was logged at.
    data = tmp_path / "host"
    friday = date(2025, 6, 13)
    ledger = HostLedger(data, secret=SECRET)
    processor = MessageProcessor(ledger, today=lambda: friday)
    sale = iso.sale_request(**card(stan=360003, amount=1_000, when=datetime(2025, 6, 13, 10, tzinfo=UTC)))
    assert processor.handle(sale)["39"] == "00"
    totals = iso.BatchTotals(sales_count=1, sales_amount=1_000)
    close = iso.settlement_request(
        totals=totals, stan=900001, after_upload=False, terminal_id="T0000001", merchant_id="M00000000000001",
        batch=1, currency="156",
    )  # fmt: skip
    assert processor.handle(close)["39"] == "00"
    ledger.close()
    _as_version_3(data)
    ledger = HostLedger(data, secret=SECRET)
    try:
        [row] = [r for r in ledger.authorizations() if r.mti == "0200"]
        assert row.settled_date == "2025-06-13" and row.local_year == 2025
        processor = MessageProcessor(ledger, today=lambda: friday)
        assert processor.handle(dict(sale))["37"] == row.rrn  # still the same request: its first answer
        assert len(ledger.authorizations()) == 1
    finally:
        ledger.close()
