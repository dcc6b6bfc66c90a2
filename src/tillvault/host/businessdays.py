"""The business-day calendar of payouts: weekends and holidays off, make-up working days on.

Pure. A day is a business day when it is not a listed holiday and either falls Monday to
Friday or is a listed make-up working day (China moves working days onto weekends around
its public holidays, 调休: e.g. Sunday 2025-09-28 is worked before the National Day week).
A payout is due on the first business day strictly after the business date (T+1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from tillvault.errors import InvalidInput

__all__ = ["BusinessCalendar", "parse_date"]

#: A calendar with no business day in this many days is refused (a typo, not a holiday).
_MAX_GAP_DAYS = 60


def parse_date(text: str, what: str = "date") -> date:
    """``"2025-10-01"`` → ``date(2025, 10, 1)``.

    :raises InvalidInput: not an ISO date (YYYY-MM-DD).
    """
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be YYYY-MM-DD, got {text!r}") from None


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Holidays (no payouts) and make-up working days (payouts although a weekend).

    :raises InvalidInput: a date is both a holiday and a working day.
    """

    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        both = self.holidays & self.workdays
        if both:
            raise InvalidInput(f"{min(both)} is listed both as a holiday and as a working day")

    def is_business_day(self, day: date) -> bool:
        """True when payouts happen on ``day``."""
        if day in self.holidays:
            return False
        return day in self.workdays or day.weekday() < 5

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after ``day``: the payout date of business date ``day``.

        :raises InvalidInput: no business day within 60 days (the calendar is wrong).
        """
        candidate = day
        for _ in range(_MAX_GAP_DAYS):
            candidate += timedelta(days=1)
            if self.is_business_day(candidate):
                return candidate
        raise InvalidInput(f"no business day within {_MAX_GAP_DAYS} days after {day}: check the holiday list")

    def to_dict(self) -> dict[str, Any]:
        """``{"holidays": [...], "workdays": [...]}`` as sorted ISO dates."""
        return {
            "holidays": [d.isoformat() for d in sorted(self.holidays)],
            "workdays": [d.isoformat() for d in sorted(self.workdays)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BusinessCalendar:
        """A calendar from ``{"holidays": ["2025-10-01", ...], "workdays": ["2025-09-28", ...]}``
        (None: weekends only).

        :raises InvalidInput: unknown keys or a date that is not YYYY-MM-DD.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a calendar must be an object, got {data!r}")
        unknown = set(data) - {"holidays", "workdays"}
        if unknown:
            raise InvalidInput(f"unknown calendar keys: {', '.join(sorted(unknown))}")
        return cls(
            frozenset(_dates(data.get("holidays", []), "holiday")),
            frozenset(_dates(data.get("workdays", []), "working day")),
        )


def _dates(values: Iterable[Any], what: str) -> list[date]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidInput(f"the {what} list must be a list of YYYY-MM-DD dates")
    return [parse_date(str(v), what) for v in values]
