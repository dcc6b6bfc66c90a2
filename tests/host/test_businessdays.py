"""Payout dates: T+1 business day over weekends, holidays and make-up working days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillvault.errors import InvalidInput
from tillvault.host.businessdays import BusinessCalendar, parse_date

#: China 2025 (State Council schedule): National Day + Mid-Autumn Oct 1-8, worked Sun Sep 28 and Sat Oct 11.
CHINA_AUTUMN_2025 = {
    "holidays": [f"2025-10-0{d}" for d in range(1, 9)],
    "workdays": ["2025-09-28", "2025-10-11"],
}


def test_weekday_pays_the_next_day_and_friday_pays_monday() -> None:
    cal = BusinessCalendar()
    assert cal.next_business_day(date(2025, 6, 12)) == date(2025, 6, 13)  # Thu → Fri
    assert cal.next_business_day(date(2025, 6, 13)) == date(2025, 6, 16)  # Fri → Mon
    assert cal.next_business_day(date(2025, 6, 14)) == date(2025, 6, 16)  # Sat → Mon
    assert cal.next_business_day(date(2025, 6, 15)) == date(2025, 6, 16)  # Sun → Mon


def test_national_day_week_pushes_payouts_past_the_holidays() -> None:
    cal = BusinessCalendar.from_dict(CHINA_AUTUMN_2025)
    assert cal.next_business_day(date(2025, 9, 30)) == date(2025, 10, 9)
    assert cal.next_business_day(date(2025, 10, 3)) == date(2025, 10, 9)
    assert cal.next_business_day(date(2025, 9, 27)) == date(2025, 9, 28)  # a worked Sunday
    assert cal.next_business_day(date(2025, 10, 10)) == date(2025, 10, 11)  # a worked Saturday
    assert not cal.is_business_day(date(2025, 10, 6))  # a Monday holiday
    assert cal.is_business_day(date(2025, 9, 28))


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 1)), st.sets(st.integers(1, 20), max_size=10))
def test_the_payout_date_is_the_first_business_day_after(day: date, offsets: set[int]) -> None:
    cal = BusinessCalendar(frozenset(day + timedelta(days=o) for o in offsets))
    due = cal.next_business_day(day)
    assert due > day
    assert cal.is_business_day(due)
    assert due.weekday() < 5
    assert not any(cal.is_business_day(day + timedelta(days=n)) for n in range(1, (due - day).days))


def test_calendar_round_trips_and_rejects_bad_dates() -> None:
    cal = BusinessCalendar.from_dict(CHINA_AUTUMN_2025)
    assert BusinessCalendar.from_dict(cal.to_dict()) == cal
    assert BusinessCalendar.from_dict(None) == BusinessCalendar()
    for bad in ({"holidays": ["2025-13-01"]}, {"holidays": "2025-10-01"}, {"holiday": []}, {"holidays": ["1/10/2025"]}):
        with pytest.raises(InvalidInput):
            BusinessCalendar.from_dict(bad)
    with pytest.raises(InvalidInput, match="both"):
        BusinessCalendar.from_dict({"holidays": ["2025-09-28"], "workdays": ["2025-09-28"]})


def test_a_calendar_without_business_days_is_refused() -> None:
    start = date(2025, 1, 1)
    cal = BusinessCalendar(frozenset(start + timedelta(days=n) for n in range(1, 100)))
    with pytest.raises(InvalidInput, match="no business day"):
        cal.next_business_day(start)


def test_parse_date() -> None:
    assert parse_date("2025-10-01") == date(2025, 10, 1)
    for bad in ("2025-1-1", "20251001", "", "2025-02-30"):
        with pytest.raises(InvalidInput):
            parse_date(bad)
