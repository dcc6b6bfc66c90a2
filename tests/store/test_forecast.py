"""Runway forecast on synthetic usage series: steady, weekly, surge, purge saw-tooth, too little data."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from tillvault.store.forecast import DAY_S, Forecast, forecast_runway

MB = 1_000_000
# A Monday, 23:00 UTC: daily samples are taken at this time of day.
START = datetime(2025, 6, 2, 23, 0, tzinfo=UTC).timestamp()


def daily(growth: list[float], *, start_used: float = 500 * MB) -> list[tuple[float, int]]:
    """One sample a day; ``growth[i]`` bytes are added between sample i and i + 1."""
    used = start_used
    out = [(START, int(used))]
    for i, g in enumerate(growth, start=1):
        used += g
        out.append((START + i * DAY_S, int(used)))
    return out


def naive_slope(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of raw usage over time, in bytes/day (what we must not do)."""
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mu = sum(u for _, u in samples) / n
    cov = sum((t - mt) * (u - mu) for t, u in samples)
    var = sum((t - mt) ** 2 for t, _ in samples)
    return cov / var * DAY_S


def test_steady_growth_gives_rate_and_runway() -> None:
    samples = daily([100 * MB] * 30)
    f = forecast_runway(samples, 1_000 * MB, now=samples[-1][0] + 60)
    assert f.bytes_per_day == pytest.approx(100 * MB)
    assert f.runway_days == pytest.approx(10.0)
    assert f.runway_days_low == pytest.approx(10.0) and f.runway_days_high == pytest.approx(10.0)
    assert f.reason is None and f.surge_days == 0 and f.resets_ignored == 0


def test_noisy_growth_range_brackets_the_rate() -> None:
    rng = random.Random(7)
    samples = daily([rng.gauss(100 * MB, 15 * MB) for _ in range(42)])
    f = forecast_runway(samples, 2_000 * MB, now=samples[-1][0])
    assert f.bytes_per_day_low < f.bytes_per_day < f.bytes_per_day_high
    assert 85 * MB < f.bytes_per_day < 115 * MB
    assert f.runway_days_low < f.runway_days < f.runway_days_high


def test_weekly_cycle_is_learned_and_shapes_the_runway() -> None:
    # Weekends carry 1.3x a weekday (the reference shop); interval i ends on weekday i % 7 (Monday = 0).
    growth = [130 * MB if i % 7 >= 5 else 100 * MB for i in range(1, 29)]
    samples = daily(growth)
    f = forecast_runway(samples, 1_000 * MB, now=samples[-1][0])
    assert f.weekday_factors is not None
    weekday, weekend = f.weekday_factors[0], f.weekday_factors[5]
    assert weekend / weekday == pytest.approx(1.3, rel=0.01)
    assert f.bytes_per_day == pytest.approx((5 * 100 + 2 * 130) / 7 * MB, rel=0.01)
    # "now" is a Monday: free space for exactly Monday..Friday plus the Saturday lasts 6 days.
    f2 = forecast_runway(samples, 630 * MB, now=samples[-1][0])
    assert f2.runway_days == pytest.approx(6.0)
    # Without the weekday factors the same space would be taken for 630 / 108.6 = 5.8 days.
    assert f2.runway_days != pytest.approx(630 / f.bytes_per_day * MB, rel=0.01)


def test_surge_day_raises_the_high_end_only() -> None:
    growth = [100 * MB] * 30
    growth[12] = 1_000 * MB  # a promotion day (10x)
    samples = daily(growth)
    f = forecast_runway(samples, 1_000 * MB, now=samples[-1][0])
    assert f.surge_days == 1
    assert f.bytes_per_day == pytest.approx(100 * MB)
    assert f.bytes_per_day_high == pytest.approx(100 * MB + 900 * MB / 30)
    assert f.runway_days == pytest.approx(10.0)
    # Pessimistic: one more surge could come at once, and the high rate after it.
    assert f.runway_days_low == pytest.approx((1_000 - 900) / 130, rel=0.01)


def test_purge_saw_tooth_is_not_fitted_through() -> None:
    # 100 MB/day, and every 7th day a purge frees 700 MB: usage goes nowhere in the long run.
    growth = [100 * MB - (700 * MB if i % 7 == 0 else 0) for i in range(1, 36)]
    samples = daily(growth)
    assert abs(naive_slope(samples)) < 15 * MB  # a line through raw usage says "barely grows / never fills"
    f = forecast_runway(samples, 1_000 * MB, now=samples[-1][0])
    assert f.bytes_per_day == pytest.approx(100 * MB)
    assert f.resets_ignored == 5
    assert f.runway_days == pytest.approx(10.0)


def test_intraday_purge_with_hourly_samples_keeps_the_growth() -> None:
    # Hourly samples; 4 MB/h of growth; every night at 03:00 an offload frees 60 MB.
    samples = []
    used = 800 * MB
    for h in range(24 * 20):
        t = START + h * 3600
        used += 4 * MB
        if h % 24 == 4:  # 03:00 UTC (START is 23:00)
            used -= 60 * MB
        samples.append((t, used))
    f = forecast_runway(samples, 960 * MB, now=samples[-1][0])
    assert f.bytes_per_day == pytest.approx(96 * MB, rel=0.01)
    assert f.runway_days == pytest.approx(10.0, rel=0.02)


def test_irregular_sampling_with_gaps() -> None:
    # Samples every 3 days at 50 MB/day.
    samples = [(START + i * 3 * DAY_S, 100 * MB + i * 150 * MB) for i in range(12)]
    f = forecast_runway(samples, 500 * MB, now=samples[-1][0])
    assert f.bytes_per_day == pytest.approx(50 * MB)
    assert f.runway_days == pytest.approx(10.0)


def test_too_little_data_gives_no_runway_and_says_why() -> None:
    samples = daily([100 * MB] * 2)
    f = forecast_runway(samples, 1_000 * MB, now=samples[-1][0])
    assert f.runway_days is None and f.bytes_per_day is None
    assert f.reason is not None and "at least 3 days" in f.reason
    assert forecast_runway([], 1_000, now=START).reason is not None
    in_ms = [(t * 1000, u) for t, u in daily([100 * MB] * 30)]
    f_ms = forecast_runway(in_ms, 1_000 * MB, now=START + 30 * DAY_S)
    assert f_ms.runway_days is None and "epoch seconds" in (f_ms.reason or "")


def test_flat_usage_has_no_finite_runway() -> None:
    samples = daily([0.0] * 20)
    f = forecast_runway(samples, 1_000 * MB, now=samples[-1][0])
    assert f.bytes_per_day == 0 and f.runway_days is None
    assert f.reason is not None and "not growing" in f.reason


def test_full_device_has_zero_runway() -> None:
    samples = daily([100 * MB] * 10)
    assert forecast_runway(samples, 0, now=samples[-1][0]).runway_days == 0.0


def test_samples_after_now_and_outside_window_are_ignored() -> None:
    old = daily([10 * MB] * 100)
    recent = [(t + 100 * DAY_S, u + 1_000 * MB) for t, u in daily([100 * MB] * 20)]
    now = recent[-1][0]
    future = [(now + DAY_S, 10**15)]
    f = forecast_runway(old + recent + future, 1_000 * MB, now=now, window_days=19)
    assert f.bytes_per_day == pytest.approx(100 * MB)


def test_to_dict_is_json_ready() -> None:
    f = forecast_runway(daily([100 * MB] * 20), 10**9, now=START + 20 * DAY_S)
    d = f.to_dict()
    assert set(d) >= {"bytes_per_day", "runway_days", "runway_days_low", "runway_days_high", "method"}
    assert isinstance(f, Forecast)


def test_nightly_close_saw_tooth_measures_the_growth_left_by_each_close() -> None:
    # Usage rises 3 MB over each shop day and falls back at the close, keeping 100 KB more each day.
    samples = []
    day_s = 86_400
    for day in range(20):
        base = 10_000_000 + day * 100_000
        for hour in range(24):
            rise = 3_000_000 * min(1.0, max(0.0, (hour - 7) / 16)) if hour < 23 else 0
            samples.append((day * day_s + hour * 3600, int(base + rise)))
    now = 19 * day_s + 12 * 3600
    fc = forecast_runway([s for s in samples if s[0] <= now], 20_000_000, now=now)
    assert fc.bytes_per_day == pytest.approx(100_000, rel=0.05)
    assert "nightly-close" in fc.method
    # Today's remaining rise (~1.3 MB) comes off the free space first.
    assert fc.runway_days == pytest.approx((20_000_000 - 3_000_000 * 11 / 16) / 100_000, rel=0.08)


def _nightly(days: int, *, dip_day: int | None = None) -> list[tuple[float, int]]:
    """A vault that rises 3 MB over each shop day and keeps 100 KB more after each close; on
    ``dip_day`` one sample is 2 MB lower (a file deleted and written back within the hour)."""
    out = []
    for day in range(days):
        base = 10_000_000 + day * 100_000
        for hour in range(24):
            rise = 3_000_000 * min(1.0, max(0.0, (hour - 7) / 16)) if hour < 23 else 0
            dip = 2_000_000 if day == dip_day and hour == 3 else 0
            out.append((day * DAY_S + hour * 3600, int(base + rise - dip)))
    return out


def test_a_brief_dip_in_a_nightly_cycle_is_not_a_day_of_growth() -> None:
    samples = _nightly(12, dip_day=6)
    now = 11 * DAY_S + 12 * 3600
    fc = forecast_runway([s for s in samples if s[0] <= now], 20_000_000, now=now)
    assert fc.bytes_per_day == pytest.approx(100_000, rel=0.05)
    assert fc.bytes_per_day_high is not None and fc.bytes_per_day_high < 300_000  # no 2 MB "surge"


def test_a_young_nightly_cycle_waits_for_data_instead_of_counting_the_days_rise() -> None:
    samples = _nightly(3)
    fc = forecast_runway(samples, 20_000_000, now=2 * DAY_S + 23 * 3600)
    assert fc.runway_days is None and fc.reason is not None and "at least" in fc.reason


def test_after_todays_close_its_rise_is_not_still_to_come() -> None:
    # The same saw-tooth, forecast just after the close: the day's 3 MB rise has come and gone,
    # so the whole free space is runway (before, the rise was taken off again: 0 days on a
    # store with less free space than a day's rise, although the next day fitted).
    samples = _nightly(20)
    now = 19 * DAY_S + 23 * 3600 + 60
    fc = forecast_runway([s for s in samples if s[0] <= now], 2_500_000, now=now)
    assert fc.runway_days == pytest.approx(2_500_000 / 100_000, rel=0.08)
    midday = 19 * DAY_S + 12 * 3600
    before_close = forecast_runway([s for s in samples if s[0] <= midday], 2_500_000, now=midday)
    assert before_close.runway_days is not None and before_close.runway_days < 10  # the rise still ahead counts
