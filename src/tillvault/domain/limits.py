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

__all__ = ["Limits", "check_limits"]


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
        if self.min_per_transaction > self.max_per_transaction:
            raise InvalidInput("min_per_transaction is larger than max_per_transaction")
        object.__setattr__(self, "currency", currency_info(self.currency).alpha)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (amounts in minor units)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limits:
        """Rebuild from :meth:`to_dict` output; unknown keys are refused.

        :raises InvalidInput: unknown keys or invalid values.
        """
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidInput(f"unknown limit setting(s): {', '.join(sorted(unknown))}")
        return cls(**data)


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
