"""Runway forecast: how many days until the device fills at the rate it has been filling.

Pure arithmetic on usage samples; no I/O, no numpy. The method, and why:

1. **Daily growth, not usage.** Samples ``(time, used bytes)`` are grouped by the local day in
   which each interval between two consecutive samples ends; each day gives one growth rate
   (bytes per day = increments / elapsed time), so irregular sampling and gaps are fine.
   A straight line through raw usage is wrong for a vault: purges and offloads cut usage in a
   saw-tooth, and a fit through the teeth says "never fills" while the device fills every week.
2. **Resets are ignored, not fitted.** A day whose usage fell overall (a purge, an offload) is
   left out. A day where a drop outweighs the day's net growth is measured on its growing
   intervals only (if they cover at least a quarter of the day's time), else left out. Drops
   smaller than the day's growth are ordinary churn (temp files) and stay in.
3. **Surges are set apart.** Days growing more than ``max(2.5 × median, median + 6 × MAD)``
   are surge days (a promotion): they do not move the central estimate; they raise the high
   end by their average excess per day, and the pessimistic runway also reserves room for
   one more surge of the largest size seen.
4. **Weekly seasonality.** With at least two weeks of data and every weekday seen twice,
   each weekday gets a factor (median of its days over the overall median, normalised to a
   mean of 1); rates are deseasonalised by it and the runway walks the calendar day by day.
5. **Nightly closes.** A vault that settles and seals every night rises all day and falls back at
   the close: from two days of such data, what counts is the day-over-day growth of the level
   each close leaves (a day's second-lowest sample, so one brief dip is not read as growth), and
   until there are enough such days there is no forecast rather than the day's rise taken
   for growth.
6. **Robust level and range.** The rate is the median of the deseasonalised daily rates; the
   range is their interquartile range (min and max below four days).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

DAY_S = 86_400
#: Fewest daily growth rates a forecast is made from.
MIN_DAYS = 3
#: Only the most recent days count (old behaviour of the shop says little about next week).
WINDOW_DAYS = 56


@dataclass(frozen=True)
class Forecast:
    """A runway forecast. Rates are bytes per day; runways are days from ``now``.

    ``runway_days_low`` is the pessimistic runway (at the high rate), ``runway_days_high`` the
    optimistic one. A runway of ``None`` means no finite runway at that rate (usage not
    growing), or, when ``bytes_per_day`` is ``None`` too, not enough data (see ``reason``).
    """

    bytes_per_day: float | None
    bytes_per_day_low: float | None
    bytes_per_day_high: float | None
    runway_days: float | None
    runway_days_low: float | None
    runway_days_high: float | None
    method: str
    reason: str | None = None
    days_used: int = 0
    resets_ignored: int = 0
    surge_days: int = 0
    #: Monday-first weekday factors (mean 1) when seasonality was used, else ``None``.
    weekday_factors: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["weekday_factors"] = list(self.weekday_factors) if self.weekday_factors is not None else None
        return out


def forecast_runway(
    samples: list[tuple[float, int]],
    free_bytes: int,
    *,
    now: float,
    utc_offset_s: int = 0,
    window_days: int = WINDOW_DAYS,
) -> Forecast:
    """Forecast the runway from usage samples.

    :param samples: ``(time, used_bytes)`` pairs; time in seconds since the epoch (UTC), any
        order, any spacing. Samples after ``now`` are ignored.
    :param free_bytes: bytes still free for the data (after any reserve), now.
    :param now: the current time, seconds since the epoch.
    :param utc_offset_s: the shop's offset from UTC in seconds (day boundaries are local midnight).
    :param window_days: only samples from the last ``window_days`` days are used.
    :returns: a :class:`Forecast`; with too little data its rates and runways are ``None`` and
        ``reason`` says what is missing.
    """
    start = now - window_days * DAY_S
    points = sorted((float(t), int(u)) for t, u in samples if start <= t <= now)
    if samples and not points:
        return _no_forecast(
            f"no usage sample in the {window_days} days before now (sample times must be epoch seconds)", 0, 0
        )
    rates, resets = _daily_rates(points, utc_offset_s)
    cyclic = _daily_cycle(points, utc_offset_s)
    if cyclic is not None:
        # A vault that settles and seals every night: usage rises all day and falls back at the
        # close. What fills the device is the growth of the level each close leaves, and today's
        # remaining rise must fit too; the day's own rise is not growth.
        rates, resets, still_to_rise = cyclic
        free_bytes = max(0, int(free_bytes - still_to_rise))
    if len(rates) < MIN_DAYS:
        return _no_forecast(
            f"need growth measured on at least {MIN_DAYS} days; have {len(rates)}"
            + (f" ({resets} reset days ignored)" if resets else ""),
            len(rates),
            resets,
        )
    values = [r for _, r in rates]
    mid = _median(values)
    spread = 1.4826 * _median([abs(v - mid) for v in values])
    limit = max(2.5 * mid, mid + 6 * spread) if mid > 0 else math.inf
    normal = [(d, r) for d, r in rates if r <= limit]
    surges = [r - mid for _, r in rates if r > limit]
    factors = _weekday_factors(normal)
    deseasoned = sorted(r / factors[_weekday(d)] if factors[_weekday(d)] > 0 else r for d, r in normal)
    base = _median(deseasoned)
    if len(deseasoned) >= 4:
        low, high = _quantile(deseasoned, 0.25), _quantile(deseasoned, 0.75)
    else:
        low, high = deseasoned[0], deseasoned[-1]
    surge_allowance = sum(surges) / len(rates)
    high += surge_allowance
    biggest_surge = max(surges, default=0.0)
    today = _weekday(math.floor((now + utc_offset_s) / DAY_S))
    seasonal = len(set(factors)) > 1
    method = (
        ("nightly-close growth, " if cyclic is not None else "")
        + f"median of {len(normal)} daily growth rates"
        + (f", {resets} reset days ignored" if resets else "")
        + (f", {len(surges)} surge days set apart" if surges else "")
        + (", weekday factors" if seasonal else "")
    )
    reason = None if base > 0 else "usage is not growing: no runway limit at the current rate"
    return Forecast(
        bytes_per_day=base,
        bytes_per_day_low=low,
        bytes_per_day_high=high,
        runway_days=_runway(free_bytes, base, factors, today),
        runway_days_low=_runway(free_bytes - biggest_surge, high, factors, today),
        runway_days_high=_runway(free_bytes, low, factors, today),
        method=method,
        reason=reason,
        days_used=len(rates),
        resets_ignored=resets,
        surge_days=len(surges),
        weekday_factors=tuple(factors) if seasonal else None,
    )


def _no_forecast(reason: str, days: int, resets: int) -> Forecast:
    return Forecast(
        None, None, None, None, None, None, method="none", reason=reason, days_used=days, resets_ignored=resets
    )


def _daily_rates(points: list[tuple[float, int]], utc_offset_s: int) -> tuple[list[tuple[int, float]], int]:
    """(local day number, growth in bytes/day) per day with data, and the number of reset days left out."""
    by_day: dict[int, list[tuple[float, int]]] = {}
    for (t0, u0), (t1, u1) in itertools.pairwise(points):
        dt = t1 - t0
        if dt <= 0:
            continue
        by_day.setdefault(math.floor((t1 + utc_offset_s) / DAY_S), []).append((dt, u1 - u0))
    rates: list[tuple[int, float]] = []
    resets = 0
    for day in sorted(by_day):
        pairs = by_day[day]
        span = sum(dt for dt, _ in pairs)
        net = sum(inc for _, inc in pairs)
        biggest_drop = max((-inc for _, inc in pairs if inc < 0), default=0)
        if biggest_drop == 0 or (net >= 0 and biggest_drop <= net):
            rates.append((day, net / span * DAY_S))
            continue
        growing = [(dt, inc) for dt, inc in pairs if inc >= 0]
        covered = sum(dt for dt, _ in growing)
        if covered >= 0.25 * span and covered > 0:
            rates.append((day, sum(inc for _, inc in growing) / covered * DAY_S))
        else:
            resets += 1
    return rates, resets


def _daily_cycle(
    points: list[tuple[float, int]], utc_offset_s: int
) -> tuple[list[tuple[int, float]], int, float] | None:
    """Day-over-day growth of the level left by each nightly close, when most days end with a large
    drop, else None. Returns (rates, reset days left out, today's expected remaining rise)."""
    days: dict[int, list[int]] = {}
    for t, u in points:
        days.setdefault(math.floor((t + utc_offset_s) / DAY_S), []).append(u)
    if len(days) < 2:
        return None  # (from two days on: a young cyclic vault gets "not enough data", not its rises as growth)
    ordered = sorted(days)
    dropping = sum(1 for day in ordered if _closed(days[day]))
    if dropping < 0.6 * len(ordered):
        return None
    rates: list[tuple[int, float]] = []
    resets = 0
    # The level each close leaves behind (the day's low) is what accumulates; peaks swing with
    # promotions and downloads that the close or the cache cleaning takes away again.
    for prev, day in itertools.pairwise(ordered):
        if day - prev != 1:
            continue
        growth = _level(days[day]) - _level(days[prev])
        if growth < 0:
            resets += 1  # an eviction or offload lowered the whole level
        else:
            rates.append((day, float(growth)))
    amplitudes = [max(days[d]) - min(days[d]) for d in ordered[-8:-1]]
    today = days[ordered[-1]]
    if _closed(today):
        still_to_rise = 0.0  # today's close is behind it: its rise is over, not still to come
    else:
        still_to_rise = max(0.0, _median([float(a) for a in amplitudes]) - (today[-1] - min(today)))
    return rates, resets, still_to_rise


def _closed(values: list[int]) -> bool:
    """Whether a day's samples rose and then fell back by at least half the rise (its close ran)."""
    rise = max(values) - values[0]
    return rise > 0 and max(values) - values[-1] >= 0.5 * rise


def _level(values: list[int]) -> int:
    """The level a close left on a day: its low, or with four samples or more its second lowest
    (one brief dip, a file deleted and written back, must not read as a day of growth next day)."""
    ordered = sorted(values)
    return ordered[1] if len(ordered) >= 4 else ordered[0]


def _weekday(day: int) -> int:
    """Monday = 0 for a day number counted from 1970-01-01 (a Thursday)."""
    return (day + 3) % 7


def _weekday_factors(rates: list[tuple[int, float]]) -> list[float]:
    """Per-weekday factors with mean 1, or all ones without two weeks covering every weekday twice."""
    if not rates or rates[-1][0] - rates[0][0] < 13:
        return [1.0] * 7
    by_weekday: list[list[float]] = [[] for _ in range(7)]
    for day, rate in rates:
        by_weekday[_weekday(day)].append(rate)
    overall = _median([r for _, r in rates])
    if overall <= 0 or any(len(v) < 2 for v in by_weekday):
        return [1.0] * 7
    raw = [max(0.0, _median(v)) / overall for v in by_weekday]
    mean = sum(raw) / 7
    return [f / mean for f in raw] if mean > 0 else [1.0] * 7


def _runway(free: float, rate: float, factors: list[float], weekday: int) -> float | None:
    """Days until ``free`` bytes are used at ``rate`` bytes/day shaped by weekday ``factors``."""
    if free <= 0:
        return 0.0
    if rate <= 0:
        return None
    week = rate * sum(factors)
    if week <= 0:
        return None
    weeks = math.floor(free / week)
    left = free - weeks * week
    days = weeks * 7.0
    for step in range(8):
        need = rate * factors[(weekday + step) % 7]
        if left <= need:
            return days + (left / need if need > 0 else 0.0)
        left -= need
        days += 1
    return days


def _median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    if n == 0:
        return 0.0
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of already sorted values."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
