"""Transaction limits: per transaction, per card per day, per terminal per day.

Limits are integers of minor units in one currency. :func:`check_limits` is the single place
that decides whether a sale of a given amount fits, given what the card and the terminal
have already done today; it raises :class:`~tillvault.errors.LimitExceeded` naming the limit
and by how much it would be exceeded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tillvault.domain.money import currency_info, format_amount
from tillvault.errors import InvalidInput, LimitExceeded

__all__ = ["Limits", "check_limits", "scaled_from_cny"]

#: Rough units of a currency per Chinese yuan (late 2026), used only to give a new terminal
#: default limits of the same order of magnitude as the CNY defaults wherever it is: an
#: Indonesian shop's 50,000.00 IDR is about 3 US dollars, not 7,000. Results are rounded to a
#: 1-2-5 step, and a merchant sets real limits at ``tillvault init``. Unlisted currencies keep
#: the CNY figures.
UNITS_PER_CNY: dict[str, float] = {
    "CNY": 1, "HKD": 1.1, "MOP": 1.1, "TWD": 4.5, "JPY": 21, "KRW": 190, "MNT": 480,
    "SGD": 0.18, "MYR": 0.6, "THB": 4.6, "IDR": 2300, "VND": 3600, "PHP": 8, "KHR": 560,
    "LAK": 3000, "MMK": 290, "BND": 0.18, "INR": 12, "PKR": 39, "BDT": 17, "LKR": 42,
    "NPR": 19, "USD": 0.14, "CAD": 0.19, "MXN": 2.6, "BRL": 0.75, "ARS": 140, "CLP": 130,
    "COP": 560, "PEN": 0.52, "EUR": 0.13, "GBP": 0.11, "CHF": 0.12, "SEK": 1.4, "NOK": 1.5,
    "DKK": 0.97, "PLN": 0.55, "CZK": 3.2, "HUF": 50, "RUB": 11, "TRY": 5.5, "UAH": 5.8,
    "KZT": 70, "UZS": 1750, "AED": 0.51, "SAR": 0.52, "QAR": 0.51, "KWD": 0.043, "BHD": 0.052,
    "OMR": 0.054, "ILS": 0.5, "EGP": 6.8, "NGN": 210, "KES": 18, "ZAR": 2.5, "GHS": 2.1,
    "AUD": 0.21, "NZD": 0.24, "XOF": 80, "XAF": 80,
}  # fmt: skip


def scaled_from_cny(cny_major: int, currency: str) -> int:
    """``cny_major`` yuan expressed in minor units of ``currency``, rounded to a 1-2-5 step (>= 1 unit)."""
    info = currency_info(currency)
    major = cny_major * UNITS_PER_CNY.get(info.alpha, 1)
    step = 1.0
    while step * 10 <= major:
        step *= 10
    nice = max((m * step for m in (1, 2, 5) if m * step <= major), default=1.0)
    return max(1, round(nice)) * 10**info.exponent


@dataclass(frozen=True)
class Limits:
    """Sale limits in minor units of ``currency``. Defaults suit CNY (fen).

    ``min_per_transaction`` 0.01, ``max_per_transaction`` 50,000.00, ``max_per_card_per_day``
    100,000.00, ``max_per_terminal_per_day`` 5,000,000.00; ``max_count_per_card_per_day``
    is off (``None``) unless set.

    :raises InvalidInput: a limit is not a non-negative int, or minimum exceeds maximum.
    """

    min_per_transaction: int = 1
    max_per_transaction: int = 5_000_000
    max_per_card_per_day: int = 10_000_000
    max_per_terminal_per_day: int = 500_000_000
    max_count_per_card_per_day: int | None = None
    currency: str = "CNY"

    def __post_init__(self) -> None:
        for name in (
            "min_per_transaction",
            "max_per_transaction",
            "max_per_card_per_day",
            "max_per_terminal_per_day",
        ):
            _require_count(getattr(self, name), name)
        if self.max_count_per_card_per_day is not None:
            _require_count(self.max_count_per_card_per_day, "max_count_per_card_per_day")
        cur = currency_info(self.currency)
        if self.max_per_transaction > MAX_WIRE_AMOUNT:
            raise InvalidInput(
                f"the per-transaction limit ({format_amount(self.max_per_transaction, cur)} {cur.alpha}) is above "
                f"the largest amount an authorization can carry ({format_amount(MAX_WIRE_AMOUNT, cur)} {cur.alpha}, "
                "twelve digits of minor units in ISO 8583 field 4)"
            )
        if self.min_per_transaction > self.max_per_transaction:
            raise InvalidInput(
                f"the per-transaction limit ({format_amount(self.max_per_transaction, cur)} {cur.alpha}) is below "
                f"the smallest amount a sale may have ({format_amount(self.min_per_transaction, cur)} {cur.alpha}): "
                "no sale could be taken"
            )
        object.__setattr__(self, "currency", cur.alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (amounts in minor units)."""
        return asdict(self)

    @classmethod
    def for_currency(cls, currency: str) -> Limits:
        """The default limits sized for ``currency`` (see :data:`UNITS_PER_CNY`): the CNY defaults'
        50,000 / 100,000 / 5,000,000 yuan, in a similar worth of that currency."""
        return cls(
            max_per_transaction=scaled_from_cny(50_000, currency),
            max_per_card_per_day=scaled_from_cny(100_000, currency),
            max_per_terminal_per_day=scaled_from_cny(5_000_000, currency),
            currency=currency,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        """Rebuild from :meth:`to_dict` output; unknown keys are refused.

        :raises InvalidInput: unknown keys or invalid values.
        """
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown limit setting(s): {', '.join(sorted(unknown))}")
        return cls(**data)


#: The largest amount ISO 8583 field 4 carries: twelve digits of minor units.
MAX_WIRE_AMOUNT = 10**12 - 1


def _require_count(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{name} must be a non-negative int (minor units), not {value!r}")


def check_limits(
    limits: Limits,
    amount: int,
    card_day_total: int,
    terminal_day_total: int,
    card_day_count: int = 0,
    *,
    currency: str | None = None,
) -> None:
    """Check that a sale of ``amount`` fits every limit; return ``None`` if it does.

    ``amount`` and the day totals (already approved today, before this sale) are minor units
    of ``currency`` (default: the limits' currency). ``card_day_count`` is the number of sales
    the card already made today.

    :raises LimitExceeded: with ``limit`` set to the field name that refuses the sale and
        ``excess_minor`` to the amount over it (or under the minimum), e.g.
        "per-card daily limit 100000.00 CNY would be exceeded by 12.34 CNY".
    :raises InvalidInput: an amount is not a non-negative int, or the currency differs from the
        limits' currency.
    """
    cur = currency_info(currency or limits.currency).alpha
    if cur != limits.currency:
        raise InvalidInput(f"limits are set in {limits.currency}; a sale in {cur} cannot be checked against them")
    for value, name in (
        (amount, "amount"),
        (card_day_total, "card_day_total"),
        (terminal_day_total, "terminal_day_total"),
        (card_day_count, "card_day_count"),
    ):
        _require_count(value, name)

    def money(minor: int) -> str:
        return f"{format_amount(minor, cur)} {cur}"

    if amount < limits.min_per_transaction:
        raise LimitExceeded(
            f"amount {money(amount)} is below the per-transaction minimum {money(limits.min_per_transaction)}",
            limit="min_per_transaction",
            excess_minor=limits.min_per_transaction - amount,
        )
    checks = (
        ("max_per_transaction", "per-transaction limit", amount, limits.max_per_transaction),
        (
            "max_per_card_per_day",
            "per-card daily limit",
            card_day_total + amount,
            limits.max_per_card_per_day,
        ),
        (
            "max_per_terminal_per_day",
            "per-terminal daily limit",
            terminal_day_total + amount,
            limits.max_per_terminal_per_day,
        ),
    )
    for name, label, total, cap in checks:
        if total > cap:
            raise LimitExceeded(
                f"{label} {money(cap)} would be exceeded by {money(total - cap)}",
                limit=name,
                excess_minor=total - cap,
            )
    cap_count = limits.max_count_per_card_per_day
    if cap_count is not None and card_day_count + 1 > cap_count:
        raise LimitExceeded(
            f"per-card daily count limit of {cap_count} sales would be exceeded "
            f"(this would be sale {card_day_count + 1} today)",
            limit="max_count_per_card_per_day",
            excess_minor=0,
        )
