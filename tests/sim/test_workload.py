"""The reference workload: deterministic, shaped like WORKLOAD.md, records shaped like the table."""

from __future__ import annotations

import collections
import math
import re
import sqlite3
import statistics
import time
from datetime import date, timedelta
from typing import Any

import pytest

from tillvault.domain.cards import check_card, luhn_ok, mask_pan
from tillvault.sim import REFERENCE_START, SaleIntent, ShopProfile, generate_day, reference_records
from tillvault.sim.workload import _pool, bench_token
from tillvault.store import schema
from tillvault.store.encoding import row_checksum

PROFILE = ShopProfile()


@pytest.fixture(scope="module")
def days() -> list[list[SaleIntent]]:
    """Fourteen days of the reference shop (two full weeks from a Monday)."""
    return [generate_day(PROFILE, d, REFERENCE_START) for d in range(14)]


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return reference_records(20_000)


def table_columns() -> list[str]:
    conn = sqlite3.connect(":memory:")
    schema.migrate(conn)
    return [row[1] for row in conn.execute("PRAGMA table_info(transactions)")]


# -- determinism -----------------------------------------------------------------------------
def test_same_seed_same_output_different_seed_different_output() -> None:
    assert generate_day(PROFILE, 3) == generate_day(PROFILE, 3)
    assert reference_records(300, 1) == reference_records(300, 1)
    assert reference_records(300, 1) != reference_records(300, 2)


def test_a_day_does_not_depend_on_the_days_generated_before() -> None:
    fresh = ShopProfile(seed=99)
    later = generate_day(fresh, 5)
    for d in range(5):
        generate_day(fresh, d)
    assert generate_day(fresh, 5) == later


def test_records_are_fast_to_generate() -> None:
    started = time.perf_counter()
    assert len(reference_records(30_000, 5)) == 30_000
    assert time.perf_counter() - started < 5.0  # 100k take about 2 s on a laptop


# -- the shop --------------------------------------------------------------------------------
def test_volume_weekends_and_surges(days: list[list[SaleIntent]]) -> None:
    weekday = [len(d) for i, d in enumerate(days) if (REFERENCE_START + timedelta(i)).weekday() < 5]
    weekend = [len(d) for i, d in enumerate(days) if (REFERENCE_START + timedelta(i)).weekday() >= 5]
    assert statistics.mean(weekday) == pytest.approx(2000, rel=0.05)
    assert statistics.mean(weekend) / statistics.mean(weekday) == pytest.approx(1.3, rel=0.08)
    surge = ShopProfile(surge_days=(2,), daily_noise=0.0)
    assert len(generate_day(surge, 2)) == 20_000 and len(generate_day(surge, 1)) == 2000


def test_arrivals_are_in_opening_hours_with_peaks(days: list[list[SaleIntent]]) -> None:
    hours = collections.Counter()
    for day in days:
        assert [i.time for i in day] == sorted(i.time for i in day)
        for intent in day:
            assert 7 <= intent.time.hour < 23
            assert intent.time.utcoffset() == timedelta(hours=8)
            hours[intent.time.hour] += 1
    assert hours[12] > 1.8 * hours[15] and hours[18] > 1.8 * hours[15]


def test_card_mix_and_valid_pans(days: list[list[SaleIntent]]) -> None:
    intents = [i for day in days for i in day if i.duplicate_of is None]
    brands = collections.Counter(i.brand for i in intents)
    n = len(intents)
    assert brands["unionpay"] / n == pytest.approx(0.80, abs=0.02)
    assert brands["visa"] / n == pytest.approx(0.12, abs=0.015)
    assert brands["mastercard"] / n == pytest.approx(0.06, abs=0.01)
    assert (brands["jcb"] + brands["amex"] + brands["discover"]) / n == pytest.approx(0.02, abs=0.006)
    unionpay = [i for i in intents if i.brand == "unionpay"]
    assert sum(i.card_type == "debit" for i in unionpay) / len(unionpay) == pytest.approx(0.70, abs=0.03)
    today = REFERENCE_START + timedelta(days=13)
    for intent in intents[::7]:
        check = check_card(intent.pan, intent.expiry, today=today)
        assert check.valid, (check.errors, intent.brand)
        assert check.brand == intent.brand
        assert 16 <= len(intent.pan) <= 19 or (intent.brand == "amex" and len(intent.pan) == 15)
        if intent.brand != "unionpay":
            assert luhn_ok(intent.pan)


def test_repeat_customers_and_members(days: list[list[SaleIntent]]) -> None:
    pool = {c.pan for c in _pool(PROFILE, REFERENCE_START).cards}
    sales = [i for day in days for i in day if i.kind == "sale" and i.duplicate_of is None]
    assert sum(i.pan in pool for i in sales) / len(sales) == pytest.approx(0.45, abs=0.02)
    assert sum(i.member_phone is not None for i in sales) / len(sales) == pytest.approx(0.25, abs=0.03)
    visits = collections.Counter(i.pan for i in sales if i.pan in pool)
    top, *_ = visits.most_common(1)
    assert 10 < top[1] < 100, "Zipf-like: the most loyal customer pays a few times a day at most"
    for i in sales:
        if i.member_phone is not None:
            assert re.fullmatch(r"1[3-9]\d{9}", i.member_phone)


def test_amounts_are_lognormal_around_35_yuan(days: list[list[SaleIntent]]) -> None:
    amounts = [i.amount_minor for day in days for i in day if i.kind == "sale"]
    assert statistics.median(amounts) == pytest.approx(3500, rel=0.06)
    logs = [math.log(a) for a in amounts]
    assert statistics.pstdev(logs) == pytest.approx(0.9, abs=0.05)
    assert max(amounts) <= 2_000_000 and min(amounts) >= 1
    whole = sum(a % 100 == 0 for a in amounts) / len(amounts)
    assert whole == pytest.approx(0.10 + 0.9 * 0.01, abs=0.015)  # plus the fen amounts that happen to be round


def test_declines_refunds_voids_duplicates(days: list[list[SaleIntent]]) -> None:
    intents = [i for day in days for i in day]
    n = len(intents)
    originals = [i for i in intents if i.duplicate_of is None]
    assert sum(i.duplicate_of is not None for i in intents) / n == pytest.approx(0.005, abs=0.0015)
    assert sum(i.will_decline for i in originals) / len(originals) == pytest.approx(0.03, abs=0.005)
    assert sum(i.kind == "refund" for i in originals) / len(originals) == pytest.approx(0.01, abs=0.003)
    assert sum(i.kind == "void" for i in originals) / len(originals) == pytest.approx(0.005, abs=0.002)
    codes = collections.Counter(i.decline_code for i in originals if i.will_decline)
    assert codes.most_common(1)[0][0] == "51"
    assert {i.entry_mode for i in intents} == {"chip", "contactless", "swipe", "qr"}
    for day in days:
        for i in day:
            if i.duplicate_of is not None:
                orig = day[i.duplicate_of]
                assert i.duplicate_of < i.index and (orig.pan, orig.amount_minor) == (i.pan, i.amount_minor)
            if i.original_of is not None:
                orig = day[i.original_of]
                assert orig.kind == "sale" and orig.pan == i.pan and i.amount_minor <= orig.amount_minor


# -- the records -----------------------------------------------------------------------------
def test_records_have_exactly_the_table_columns_and_fit_its_constraints(records: list[dict[str, Any]]) -> None:
    columns = [c for c in table_columns() if c != "checksum"]
    assert all(list(r) == columns for r in records)
    conn = sqlite3.connect(":memory:")
    schema.migrate(conn)
    marks = ", ".join("?" for _ in range(len(columns) + 1))
    conn.executemany(
        f"INSERT INTO transactions ({', '.join(columns)}, checksum) VALUES ({marks})",
        [(*r.values(), row_checksum(r)) for r in records],
    )
    assert conn.execute("SELECT count(*) FROM transactions").fetchone()[0] == len(records)


def test_record_values_look_like_a_settled_shop(records: list[dict[str, Any]]) -> None:
    by_invoice = {r["invoice"]: r for r in records}
    assert [r["invoice"] for r in records] == list(range(1, len(records) + 1))
    for r in records:
        assert r["terminal_id"] == "TV000001" and len(r["merchant_id"]) == 15 and r["currency"] == "CNY"
        assert re.fullmatch(r"[0-9a-f]{32}", r["card_token"])
        assert re.fullmatch(r"\d{6}\*+\d{4}", r["masked_pan"])
        assert date.fromisoformat(r["business_date"]) == REFERENCE_START + timedelta(days=r["batch"] - 1)
        assert r["updated_ms"] >= r["created_ms"]
        assert r["extra"] is None
        if r["status"] == "approved":
            assert re.fullmatch(r"\d{12}", r["rrn"]) and r["response_code"] == "00"
            assert r["auth_code"] is not None and re.fullmatch(r"\d{6}", r["auth_code"])
            if r["kind"] == "void":
                assert r["fee"] is None  # a void is not charged; its original is marked voided
            else:
                assert isinstance(r["fee"], int) and r["fee"] >= 0
        if r["kind"] in ("refund", "void"):
            orig = by_invoice[r["original_invoice"]]
            assert orig["kind"] == "sale" and orig["batch"] == r["batch"] and orig["card_token"] == r["card_token"]
        if r["kind"] == "void":
            assert by_invoice[r["original_invoice"]]["status"] == "voided"
        if r["status"] == "declined":
            assert r["response_code"] != "00" and r["auth_code"] is None and r["fee"] is None
    statuses = collections.Counter(r["status"] for r in records)
    assert statuses["declined"] / len(records) == pytest.approx(0.03, abs=0.006)
    assert sum(r["customer_ref"] is not None for r in records) / len(records) == pytest.approx(0.25, abs=0.03)
    assert sum(r["idem_key"] is not None for r in records) / len(records) == pytest.approx(0.20, abs=0.02)


def test_card_token_is_the_bench_hmac_of_the_pan(days: list[list[SaleIntent]]) -> None:
    recs = reference_records(len(days[0]) // 2)
    intents = [i for i in days[0] if i.duplicate_of is None][: len(recs)]
    for rec, intent in zip(recs, intents, strict=True):
        assert rec["card_token"] == bench_token(intent.pan)
        assert rec["masked_pan"] == mask_pan(intent.pan)


def test_reference_json_is_the_naive_size(records: list[dict[str, Any]]) -> None:
    import json

    sizes = [len(json.dumps(r)) for r in records[:2000]]
    # WORKLOAD.md quotes 450-550 B for its 21 fields; the table row adds six more columns.
    assert 550 < statistics.mean(sizes) < 700
