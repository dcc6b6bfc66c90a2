"""Settlement at the host and merchant payout: fees by name, T+1, transfers, idempotence, day cut,
deposit and activation, the CSV file, and the books balancing after random histories."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.host.conftest import MERCHANT, TERMINAL, VISA, card
from tests.host.settle_driver import MASTERCARD, UNIONPAY_DEBIT, Driver

from tillvault.domain import iso8583 as iso
from tillvault.errors import InvalidInput
from tillvault.host.businessdays import BusinessCalendar
from tillvault.host.fees import FeeRule, FeeSchedule
from tillvault.host.ledger_schema import SCHEMA_VERSION
from tillvault.host.merchants import get_merchant, set_merchant
from tillvault.host.payout import (
    CSV_COLUMNS,
    check_payables,
    compute_statements,
    deposit_refund_date,
    payout_csv,
    write_payout_csv,
)
from tillvault.host.settings import CardTypeRule, set_calendar, set_card_type_rule, set_fee_schedule

FRIDAY = date(2025, 6, 13)
MONDAY = date(2025, 6, 16)
SCHEDULE = FeeSchedule((FeeRule(5000, cap=2000, card_type="debit"), FeeRule(6000)))


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Driver]:
    """A host on Friday 2025-06-13 with debit 0.50% capped at 20.00 and 0.60% for other cards."""
    driver = Driver(tmp_path / "host", FRIDAY)
    set_fee_schedule(driver.ledger, SCHEDULE)
    driver.ledger.set_card(UNIONPAY_DEBIT, card_type="debit")
    yield driver
    driver.close()


def transfers_of(host: Driver, kind: str) -> list[dict[str, object]]:
    return [t for t in host.ledger.transfers() if t["kind"] == kind]


def test_a_balanced_settlement_settles_the_batch_with_named_fees(host: Driver) -> None:
    assert host.sale(10_000)["39"] == "00"
    assert host.sale(1_000_000, pan=UNIONPAY_DEBIT)["39"] == "00"
    assert host.refund(2_000)["39"] == "00"
    response = host.settle()
    assert response["39"] == "00"
    assert response["15"] == "0613"
    rows = host.ledger.batch_view(TERMINAL, 1)
    assert {r["settled_date"] for r in rows} == {"2025-06-13"}
    fees = {(r["kind"], r["amount"]): (r["fee"], r["fee_name"]) for r in rows}
    assert fees[("sale", 10_000)] == (60, "MDR 0.60%")
    assert fees[("sale", 1_000_000)] == (2000, "MDR debit 0.50% cap 20.00")  # 50.00 capped at 20.00
    assert fees[("refund", 2_000)] == (0, None)  # a refund keeps the sale's fee
    host.assert_books_balance()


def test_an_unbalanced_settlement_settles_nothing(host: Driver) -> None:
    host.sale(10_000)
    wrong = iso.BatchTotals(sales_count=1, sales_amount=9_999)
    response = host.settle(totals=wrong)
    assert response["39"] == "95"
    assert "15" not in response
    assert all(r["settled_date"] is None for r in host.ledger.batch_view(TERMINAL, 1))
    assert host.settle()["39"] == "00"
    assert all(r["settled_date"] == "2025-06-13" for r in host.ledger.batch_view(TERMINAL, 1))


def test_payout_posts_fees_and_net_as_transfers_and_pays_monday(host: Driver) -> None:
    host.sale(10_000)
    host.sale(1_000_000, pan=UNIONPAY_DEBIT)
    host.refund(2_000)
    host.settle()
    result = host.payout(FRIDAY)
    assert result["created"] is True
    assert result["payout_date"] == "2025-06-16"  # Friday → Monday
    [statement] = result["merchants"]
    assert statement["merchant_id"] == MERCHANT
    assert (statement["sales_count"], statement["sales_amount"]) == (2, 1_010_000)
    assert (statement["refunds_count"], statement["refunds_amount"]) == (1, 2_000)
    assert statement["fees"] == [
        {"name": "MDR 0.60%", "count": 1, "amount": 60},
        {"name": "MDR debit 0.50% cap 20.00", "count": 1, "amount": 2000},
    ]
    assert statement["fees_total"] == 2060
    assert statement["net"] == 1_010_000 - 2_000 - 2060
    assert statement["action"] == "pay"
    assert statement["batches"] == [
        {
            "terminal_id": TERMINAL,
            "batch": 1,
            "sales_count": 2,
            "sales_amount": 1_010_000,
            "refunds_count": 1,
            "refunds_amount": 2_000,
            "fees_total": 2060,
        }
    ]
    assert [t["amount"] for t in transfers_of(host, "fee")] == [60, 2000]
    [payout] = transfers_of(host, "payout")
    assert payout["amount"] == statement["net"]
    fee_income = host.ledger.system_account("fee_income", "fees", "156")
    assert fee_income.balance == 2060
    assert host.ledger.system_account("merchant_payable", MERCHANT, "156").balance == 0
    host.assert_books_balance()


def test_running_a_payout_twice_writes_nothing_twice(host: Driver, tmp_path: Path) -> None:
    host.sale(12_345)
    host.settle()
    first = host.payout(FRIDAY)
    count = len(host.ledger.transfers())
    path = write_payout_csv(first, tmp_path / "csv")
    content = path.read_bytes()
    again = host.payout(FRIDAY)
    assert again["created"] is False
    assert again["merchants"] == first["merchants"]
    assert len(host.ledger.transfers()) == count
    assert write_payout_csv(again, tmp_path / "csv").read_bytes() == content
    host.assert_books_balance()


def test_paying_out_a_day_closes_it_so_later_settlements_go_to_the_next_day(host: Driver) -> None:
    host.sale(10_000, batch=1)
    host.settle(1)
    host.payout(FRIDAY)  # day cut on Friday itself
    host.sale(20_000, batch=2)
    assert host.settle(2)["15"] == "0614"
    assert host.payout(FRIDAY)["merchants"][0]["sales_amount"] == 10_000  # unchanged
    saturday = host.payout(FRIDAY + timedelta(days=1))
    assert saturday["merchants"][0]["sales_amount"] == 20_000
    assert saturday["payout_date"] == "2025-06-16"
    host.assert_books_balance()


def test_a_repeated_0500_changes_nothing_and_gives_the_same_business_date(host: Driver) -> None:
    host.sale(10_000)
    assert host.settle()["15"] == "0613"
    host.payout(FRIDAY)  # closes Friday
    host.today = FRIDAY + timedelta(days=1)
    again = host.settle()
    assert (again["39"], again["15"]) == ("00", "0613")
    assert {r["settled_date"] for r in host.ledger.batch_view(TERMINAL, 1)} == {"2025-06-13"}
    host.assert_books_balance()


def test_a_version_1_ledger_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    directory = tmp_path / "old"
    driver = Driver(directory, FRIDAY)
    driver.sale(10_000)
    driver.close()
    db = sqlite3.connect(directory / "host-ledger.sqlite3")
    for table, column in (("authorizations", "settled_date"), ("authorizations", "fee"),
                          ("authorizations", "fee_name"), ("accounts", "card_type"),
                          ("settlements", "business_date")):  # fmt: skip
        db.execute("DROP INDEX IF EXISTS authorizations_settled_day")
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("DROP TABLE payouts")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    driver = Driver(directory, FRIDAY)
    try:
        assert driver.ledger.meta("schema_version") == str(SCHEMA_VERSION)
        assert driver.settle()["39"] == "00"
        assert driver.payout(FRIDAY)["merchants"][0]["sales_amount"] == 10_000
        driver.assert_books_balance()
    finally:
        driver.close()


def test_a_version_2_ledger_gets_the_settled_rows_only_index(tmp_path: Path) -> None:
    import sqlite3

    directory = tmp_path / "v2"
    driver = Driver(directory, FRIDAY)
    driver.sale(10_000)
    driver.close()
    db = sqlite3.connect(directory / "host-ledger.sqlite3")
    db.execute("DROP INDEX authorizations_settled_day")
    db.execute("CREATE INDEX authorizations_settled ON authorizations (settled_date)")  # version 2's index
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    driver = Driver(directory, FRIDAY)
    try:
        assert driver.ledger.meta("schema_version") == str(SCHEMA_VERSION) == "4"
        indexes = {
            r["name"]: r["sql"] for r in driver.ledger.rows("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        }
        assert "authorizations_settled" not in indexes
        assert "WHERE settled_date IS NOT NULL" in indexes["authorizations_settled_day"]
        driver.sale(5_000)
        assert driver.settle()["39"] == "00"
        plan = driver.ledger.rows(
            "EXPLAIN QUERY PLAN SELECT id FROM authorizations WHERE settled_date = ?", (FRIDAY.isoformat(),)
        )
        assert "authorizations_settled_day" in plan[0]["detail"]
        assert driver.payout(FRIDAY)["merchants"][0]["sales_amount"] == 15_000
        driver.assert_books_balance()
    finally:
        driver.close()


def test_a_future_business_date_is_refused(host: Driver) -> None:
    from tillvault.host.payout import run_payout

    with pytest.raises(InvalidInput, match="has not begun"):
        run_payout(host.ledger, FRIDAY + timedelta(days=1), today=FRIDAY)


def test_a_day_without_settlements_pays_nothing(host: Driver) -> None:
    result = host.payout(FRIDAY)
    assert result["merchants"] == [] and result["totals"] == []
    assert host.ledger.transfers() == []


def test_refunds_beyond_sales_are_collected_from_the_merchant(host: Driver) -> None:
    host.refund(5_000)
    host.sale(1_000)
    host.settle()
    [statement] = host.payout(FRIDAY)["merchants"]
    assert statement["net"] == 1_000 - 5_000 - 6
    assert statement["action"] == "collect"
    [collection] = transfers_of(host, "collection")
    assert collection["amount"] == 4_006
    host.assert_books_balance()


def test_refunds_return_their_fee_when_the_schedule_says_so(host: Driver) -> None:
    set_fee_schedule(host.ledger, FeeSchedule(SCHEDULE.rules, refunds_return_fee=True))
    sale = host.sale(10_000)
    host.refund(10_000, original_rrn=sale["37"])
    host.settle()
    [statement] = host.payout(FRIDAY)["merchants"]
    assert statement["fees"] == [
        {"name": "MDR 0.60%", "count": 1, "amount": 60},
        {"name": "MDR 0.60% returned", "count": 1, "amount": -60},
    ]
    assert statement["net"] == 0 and statement["action"] == "nothing"
    assert [t["amount"] for t in transfers_of(host, "fee_returned")] == [60]
    host.assert_books_balance()


def test_refunds_never_return_more_fee_than_their_sale_paid(host: Driver) -> None:
    set_fee_schedule(host.ledger, FeeSchedule(SCHEDULE.rules, refunds_return_fee=True))
    sale = host.sale(1_000)  # fee 6
    for _ in range(11):  # 924 in all, each "returning" 0.504 -> 1 if priced alone
        host.refund(84, original_rrn=sale["37"])
    host.refund(1_000)  # names no sale: no fee was paid for it, none comes back
    host.settle()
    [statement] = host.payout(FRIDAY)["merchants"]
    fees = {f["name"]: f["amount"] for f in statement["fees"]}
    assert fees == {"MDR 0.60%": 6, "MDR 0.60% returned": -6}
    assert statement["net"] == 1_000 - 11 * 84 - 1_000
    # A later batch's refund of the same sale finds nothing left to return.
    host.refund(50, original_rrn=sale["37"], batch=2)
    host.settle(2)
    assert sum(r.fee or 0 for r in host.ledger.authorizations() if r.batch == 2) == 0
    host.assert_books_balance()


def test_card_type_comes_from_the_account_else_the_rule(host: Driver) -> None:
    set_card_type_rule(host.ledger, CardTypeRule("credit", {"555555": "debit"}))
    host.sale(1_000_000, pan=MASTERCARD)  # debit by prefix → capped
    host.sale(1_000_000)  # VISA: credit by default
    host.settle()
    fees = sorted(r["fee"] for r in host.ledger.batch_view(TERMINAL, 1))
    assert fees == [2000, 6000]


def test_a_merchant_schedule_overrides_the_default(host: Driver) -> None:
    set_fee_schedule(host.ledger, FeeSchedule.uniform(3800, name="优惠费率 0.38%"), MERCHANT)
    host.sale(10_000)
    host.settle()
    assert host.payout(FRIDAY)["merchants"][0]["fees"] == [{"name": "优惠费率 0.38%", "count": 1, "amount": 38}]


def test_settled_transactions_are_final(host: Driver) -> None:
    sale = iso.sale_request(**card(amount=10_000))
    response = host.send(sale)
    assert response["39"] == "00"
    host.settle()
    reversal = host.reverse(sale)
    assert reversal["39"] == "12"
    assert "settled" in reversal["63"]
    upload = iso.batch_upload_request(
        stan=99_001,
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        batch=1,
        invoice=1,
        original_mti="0200",
        original_stan=int(sale["11"]),
        processing_code=iso.PROC_SALE,
        amount=9_000,
        currency="156",
        original_date=sale["13"],
        original_time=sale["12"],
        rrn=response["37"],
        pan=VISA,
    )
    assert host.send(upload)["39"] == "12"
    [row] = host.ledger.batch_view(TERMINAL, 1)
    assert (row["status"], row["amount"]) == ("approved", 10_000)
    host.assert_books_balance()


def test_after_an_upload_the_host_settles_its_own_figures_even_out_of_balance(host: Driver) -> None:
    host.sale(10_000)
    host.sale(5_000)  # the terminal lost this one
    terminal_totals = iso.BatchTotals(sales_count=1, sales_amount=10_000)
    first = host.settle(totals=terminal_totals)
    assert first["39"] == "95" and "15" not in first
    assert not host.ledger.batch_settled(iso.terminal_id_field(TERMINAL), 1)
    request = iso.settlement_request(
        totals=terminal_totals, stan=98_765, terminal_id=TERMINAL, merchant_id=MERCHANT, batch=1, currency="156",
        after_upload=True,
    )  # fmt: skip
    after = host.send(request)
    assert after["39"] == "95" and after["15"] == "0613"  # still different, but settled: the terminal closes
    assert host.ledger.batch_settled(iso.terminal_id_field(TERMINAL), 1)
    assert host.payout(FRIDAY)["merchants"][0]["sales_amount"] == 15_000
    host.assert_books_balance()


def test_a_late_advice_in_a_settled_batch_settles_on_the_next_balanced_0500(host: Driver) -> None:
    host.sale(10_000)
    host.settle()
    host.payout(FRIDAY)
    assert host.advice(3_000)["39"] == "00"
    late = [r for r in host.ledger.batch_view(TERMINAL, 1) if r["amount"] == 3_000]
    assert late[0]["settled_date"] is None
    host.assert_books_balance()  # unsettled: still in the payable
    assert host.settle()["15"] == "0614"
    assert host.payout(FRIDAY + timedelta(days=1))["merchants"][0]["sales_amount"] == 3_000
    host.assert_books_balance()


def test_a_holiday_calendar_moves_the_payout_date(host: Driver) -> None:
    set_calendar(host.ledger, BusinessCalendar.from_dict({"holidays": ["2025-06-16", "2025-06-17"]}))
    host.sale(10_000)
    host.settle()
    assert host.payout(FRIDAY)["payout_date"] == "2025-06-18"


# -- deposit and activation --------------------------------------------------------------------


def test_the_deposit_is_collected_held_and_refunded_on_the_day_volume_reaches_the_threshold(host: Driver) -> None:
    merchant = set_merchant(host.ledger, MERCHANT, today=FRIDAY, deposit=29_900, refund_threshold=50_000)
    assert merchant.deposit_status == "held" and merchant.deposit_collected_date == "2025-06-13"
    [collected] = transfers_of(host, "deposit_collected")
    assert collected["amount"] == 29_900
    assert host.ledger.system_account("device_deposit", MERCHANT, "156").balance == 29_900
    host.assert_books_balance()

    host.sale(30_000, batch=1)
    host.settle(1)
    friday = host.payout(FRIDAY)["merchants"][0]
    assert friday["deposit_refund"] == 0
    assert friday["deposit"]["status"] == "held" and friday["deposit"]["volume_to_date"] == 30_000

    host.today = FRIDAY + timedelta(days=3)  # Monday
    host.sale(25_000, batch=2)
    host.refund(4_000, batch=2)  # net volume 51,000 ≥ 50,000
    host.settle(2)
    monday = host.payout(host.today)["merchants"][0]
    assert monday["deposit_refund"] == 29_900
    assert monday["deposit_refund_name"] == "device deposit refund"
    assert monday["net"] == 25_000 - 4_000 - 150 + 29_900
    assert monday["deposit"]["status"] == "refunded" and monday["deposit"]["refunded_date"] == "2025-06-16"
    assert host.ledger.system_account("device_deposit", MERCHANT, "156").balance == 0
    assert get_merchant(host.ledger, MERCHANT).deposit_status == "refunded"  # type: ignore[union-attr]

    host.today += timedelta(days=1)
    host.sale(100_000, batch=3)
    host.settle(3)
    assert host.payout(host.today)["merchants"][0]["deposit_refund"] == 0  # refunded once
    host.assert_books_balance()
    with pytest.raises(InvalidInput, match="cannot change"):
        set_merchant(host.ledger, MERCHANT, today=host.today, deposit=19_900)


def test_the_deposit_refund_day_does_not_depend_on_the_order_payouts_run(host: Driver) -> None:
    set_merchant(host.ledger, MERCHANT, today=FRIDAY, deposit=29_900, refund_threshold=10_000)
    host.sale(10_000, batch=1)
    host.settle(1)
    host.today = FRIDAY + timedelta(days=1)
    host.sale(5_000, batch=2)
    host.settle(2)
    saturday = host.payout(host.today)["merchants"][0]
    assert saturday["deposit_refund"] == 0  # Friday reached the threshold
    merchant = get_merchant(host.ledger, MERCHANT)
    assert merchant is not None and deposit_refund_date(host.ledger, merchant) == FRIDAY
    assert host.payout(FRIDAY)["merchants"][0]["deposit_refund"] == 29_900
    host.assert_books_balance()


def test_a_deposit_set_after_the_volume_is_reached_is_refunded_in_the_next_payout(host: Driver) -> None:
    host.sale(60_000)
    host.settle()
    host.payout(FRIDAY)
    host.today = FRIDAY + timedelta(days=1)
    set_merchant(host.ledger, MERCHANT, today=host.today, deposit=29_900, refund_threshold=50_000)
    [statement] = host.payout(host.today)["merchants"]
    assert statement["sales_count"] == 0 and statement["deposit_refund"] == 29_900
    assert statement["net"] == 29_900
    host.assert_books_balance()


def test_activation_needs_a_first_sale_of_the_minimum(host: Driver) -> None:
    set_merchant(host.ledger, MERCHANT, today=FRIDAY, activation_min=10_000)
    small = host.sale(5_000)
    assert small["39"] == "13"
    assert "not activated" in small["63"] and "100.00" in small["63"]
    assert host.advice(5_000)["39"] == "00"  # offline: cannot be declined, does not activate
    merchant = get_merchant(host.ledger, MERCHANT)
    assert merchant is not None and not merchant.activated
    assert host.sale(10_000)["39"] == "00"
    merchant = get_merchant(host.ledger, MERCHANT)
    assert merchant is not None and merchant.activated and merchant.activated_date == "2025-06-13"
    assert host.sale(5_000)["39"] == "00"
    host.settle()
    assert host.payout(FRIDAY)["merchants"][0]["activation"]["activated"] is True


def test_activation_is_written_once_and_later_sales_do_not_touch_the_merchant(host: Driver) -> None:
    set_merchant(host.ledger, MERCHANT, today=FRIDAY, activation_min=10_000)
    written: list[str] = []
    host.ledger._db.set_trace_callback(lambda sql: written.append(sql) if sql.startswith("UPDATE merchants") else None)
    assert host.sale(5_000)["39"] == "13"
    assert written == []  # a declined sale writes no activation
    first = host.sale(10_000, invoice=7)
    assert first["39"] == "00" and len(written) == 1
    activated = get_merchant(host.ledger, MERCHANT)
    assert activated is not None and activated.activated_date == "2025-06-13"
    for amount in (10_000, 20_000, 5_000):
        assert host.sale(amount)["39"] == "00"
    assert host.advice(30_000)["39"] == "00"
    assert len(written) == 1  # activation was written by the first qualifying sale only
    assert get_merchant(host.ledger, MERCHANT) == activated  # same reference, same date
    set_merchant(host.ledger, "M2", today=FRIDAY, deposit=0)  # terms, but no activation rule
    written.clear()
    assert host.sale(50_000, merchant_id="M2")["39"] == "00"
    assert host.sale(50_000, merchant_id="M3")["39"] == "00"  # no terms at all
    assert [s for s in written if "activated_date" in s] == []
    host.ledger._db.set_trace_callback(None)


def test_merchant_terms_are_validated() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        driver = Driver(Path(tmp))
        try:
            for kwargs in ({"deposit": -1}, {"activation_min": 0}, {"currency": "CNY"}, {"refund_threshold": 1.5}):
                with pytest.raises(InvalidInput):
                    set_merchant(driver.ledger, MERCHANT, today=FRIDAY, **kwargs)  # type: ignore[arg-type]
            with pytest.raises(InvalidInput):
                set_merchant(driver.ledger, "", today=FRIDAY)
            assert driver.ledger.transfers() == []
        finally:
            driver.close()


# -- the payout file -------------------------------------------------------------------------


def test_the_csv_has_one_line_per_item_and_each_merchant_sums_to_its_net(host: Driver, tmp_path: Path) -> None:
    set_merchant(host.ledger, MERCHANT, today=FRIDAY, deposit=29_900, refund_threshold=1)
    host.sale(10_000)
    host.sale(1_000_000, pan=UNIONPAY_DEBIT)
    host.refund(2_000)
    host.sale(7_000, merchant_id="M2", terminal_id="T2")
    host.settle()
    host.settle(terminal="T2", merchant="M2")
    result = host.payout(FRIDAY)
    path = write_payout_csv(result, tmp_path)
    assert path.name == "payout-2025-06-13.csv"
    text = path.read_bytes().decode("utf-8")
    assert text == payout_csv(result)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    items = [(r["merchant_id"], r["item"], r["name"], r["amount_minor"]) for r in rows]
    assert items == [
        (MERCHANT, "sales", "card sales", "1010000"),
        (MERCHANT, "refunds", "refunds", "-2000"),
        (MERCHANT, "fee", "MDR 0.60%", "-60"),
        (MERCHANT, "fee", "MDR debit 0.50% cap 20.00", "-2000"),
        (MERCHANT, "deposit_refund", "device deposit refund", "29900"),
        (MERCHANT, "net", "payout to merchant", str(1_010_000 - 2_000 - 2_060 + 29_900)),
        ("M2", "sales", "card sales", "7000"),
        ("M2", "refunds", "refunds", "0"),
        ("M2", "fee", "MDR 0.60%", "-42"),
        ("M2", "net", "payout to merchant", "6958"),
    ]
    for merchant in ("M2", MERCHANT):
        mine = [int(r["amount_minor"]) for r in rows if r["merchant_id"] == merchant and r["item"] != "net"]
        net = next(int(r["amount_minor"]) for r in rows if r["merchant_id"] == merchant and r["item"] == "net")
        assert sum(mine) == net
    assert {r["payout_date"] for r in rows} == {"2025-06-16"}
    assert result["totals"] == [
        {
            "currency": "156",
            "merchants": 2,
            "sales_count": 3,
            "sales_amount": 1_017_000,
            "refunds_count": 1,
            "refunds_amount": 2_000,
            "fees_total": 2_102,
            "deposit_refund": 29_900,
            "net": 1_017_000 - 2_000 - 2_102 + 29_900,
        }
    ]


def test_a_preview_writes_nothing_and_matches_the_payout(host: Driver) -> None:
    host.sale(10_000)
    host.settle()
    preview = host.payout(FRIDAY, preview=True)
    assert preview["preview"] is True and preview["created"] is False
    assert host.ledger.meta("closed_through") is None
    assert transfers_of(host, "payout") == []
    paid = host.payout(FRIDAY)
    assert [s["net"] for s in paid["merchants"]] == [s["net"] for s in preview["merchants"]]


def test_check_payables_notices_money_that_the_log_does_not_explain(host: Driver) -> None:
    host.sale(10_000)
    payable = host.ledger.system_account("merchant_payable", MERCHANT, "156")
    bank = host.ledger.system_account("settlement", "bank", "156")
    host.ledger.post(payable.id, bank.id, 1, "156", "payout", "stray")
    assert host.ledger.check_balanced()["ok"]  # double entry still holds...
    assert any("payable balance" in p for p in check_payables(host.ledger))  # ...but the payable is short


# -- random histories ------------------------------------------------------------------------

_sale = st.tuples(st.just("sale"), st.integers(1, 2_000_000), st.sampled_from([VISA, UNIONPAY_DEBIT, MASTERCARD]))
operations = st.lists(
    st.one_of(
        _sale,
        _sale,
        _sale,
        st.tuples(st.just("refund"), st.integers(1, 500_000), st.sampled_from([VISA, UNIONPAY_DEBIT])),
        st.tuples(st.just("advice"), st.integers(1, 300_000), st.just(VISA)),
        st.tuples(st.just("reverse_last"), st.just(0), st.just("")),
        st.tuples(st.just("settle"), st.just(0), st.just("")),
        st.tuples(st.just("next_day"), st.just(0), st.just("")),
        st.tuples(st.just("payout_yesterday"), st.just(0), st.just("")),
        st.tuples(st.just("payout_today"), st.just(0), st.just("")),
    ),
    min_size=4,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, st.booleans(), st.sampled_from(["M1", "M2"]), st.integers(0, 2_000_000))
def test_books_balance_and_payouts_add_up_after_any_history(
    ops: list[tuple[str, int, str]], refunds_return_fee: bool, second_merchant: str, threshold: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        host = Driver(Path(tmp), FRIDAY)
        try:
            set_fee_schedule(host.ledger, FeeSchedule(SCHEDULE.rules, refunds_return_fee=refunds_return_fee))
            host.ledger.set_card(UNIONPAY_DEBIT, card_type="debit")
            set_merchant(host.ledger, MERCHANT, today=FRIDAY, deposit=29_900, refund_threshold=threshold)
            batch, last = 1, None
            for i, (op, amount, pan) in enumerate(ops):
                merchant = MERCHANT if i % 3 else second_merchant
                if op in ("sale", "refund", "advice"):
                    args = card(amount=amount, pan=pan, batch=batch, merchant_id=merchant)
                    if op == "advice":
                        last = iso.advice_request(offline_auth_code="OFF001", **args)
                    else:
                        builder = iso.sale_request if op == "sale" else iso.refund_request
                        last = builder(**args)
                    host.send(last)
                elif op == "reverse_last" and last is not None:
                    host.reverse(last)
                elif op == "settle":
                    for m in {MERCHANT, second_merchant}:
                        host.settle(batch, merchant=m)
                    batch += 1
                elif op == "next_day":
                    host.today += timedelta(days=1)
                elif op == "payout_yesterday":
                    host.payout(host.today - timedelta(days=1))
                elif op == "payout_today":
                    host.payout(host.today)
                host.assert_books_balance()
            settled = [r for r in host.ledger.batch_view(TERMINAL) if r["settled_date"]]
            days = {FRIDAY + timedelta(days=n) for n in range((host.today - FRIDAY).days + 1)}
            days |= {date.fromisoformat(r["settled_date"]) for r in settled}
            statements = [st for day in sorted(days) for st in host.payout(day)["merchants"]]
            host.assert_books_balance()
            settled_net = sum(r["amount"] if r["kind"].endswith("sale") else -r["amount"] for r in settled)
            assert sum(s["sales_amount"] - s["refunds_amount"] for s in statements) == settled_net
            assert sum(s["fees_total"] for s in statements) == sum(r["fee"] for r in settled)
            for s in statements:
                assert s["sales_amount"] - s["refunds_amount"] - s["fees_total"] + s["deposit_refund"] == s["net"]
            assert len([t for t in host.ledger.transfers() if t["kind"] == "deposit_refund"]) <= 1
            fee_income = host.ledger.system_account("fee_income", "fees", "156").balance
            assert fee_income == sum(s["fees_total"] for s in statements)
            assert compute_statements(host.ledger, host.today + timedelta(days=5)) == []
        finally:
            host.close()


def test_a_threshold_set_after_its_day_was_paid_out_refunds_the_deposit_in_the_next_payout(host: Driver) -> None:
    set_merchant(host.ledger, MERCHANT, today=FRIDAY, deposit=29_900)  # held, no threshold yet
    host.sale(60_000, batch=1)
    host.settle(1)
    assert host.payout(FRIDAY)["merchants"][0]["deposit_refund"] == 0
    host.today = FRIDAY + timedelta(days=3)  # Monday: the threshold is set, Friday already reached it
    set_merchant(host.ledger, MERCHANT, today=host.today, refund_threshold=50_000)
    host.sale(1_000, batch=2)
    host.settle(2)
    monday = host.payout(host.today)["merchants"][0]
    assert monday["deposit_refund"] == 29_900 and monday["deposit"]["status"] == "refunded"
    host.today += timedelta(days=1)
    host.sale(1_000, batch=3)
    host.settle(3)
    assert host.payout(host.today)["merchants"][0]["deposit_refund"] == 0  # once
    host.assert_books_balance()
