"""Merchant fee rules (MDR): pure arithmetic in integer minor units, every fee named.

A :class:`FeeSchedule` is an ordered list of :class:`FeeRule`; the first rule whose
``card_type`` and ``brand`` match the transaction's card (``None`` matches anything) prices it.
A uniform merchant rate is one rule without filters; "debit 0.50% capped at 20.00, credit
0.60%" is two rules. No rule matches: no fee.

Rounding rule (documented in ``docs/settlement.md``): the fee is computed **per transaction**,
``amount × rate`` rounded **half up** to the minor unit, then raised to the rule's ``minimum``,
then lowered to its ``cap``, and never more than the amount itself. A day's fee line is the sum
of its transactions' fees, so totals are sums of their parts exactly.

Refunds: by default a refund neither pays nor returns a fee (the sale's fee stands; common
acquirer practice). With ``refunds_return_fee`` the refund returns ``fee(refund amount)`` under
the same rule, as a negative line named ``"<rule name> returned"``; settlement caps what the
refunds of one sale return at that sale's fee (:func:`tillvault.host.settlement.settle_batch`).

Rates are parts per million (``rate_ppm``: 0.60% = 6000 ppm), exact for any rate with at most
four decimals of a percent.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tillvault.domain.cards import BRAND_NAMES, detect_brand
from tillvault.domain.money import currency_info, format_amount
from tillvault.errors import InvalidInput

__all__ = [
    "CARD_TYPES",
    "PPM",
    "FeeCharge",
    "FeeRule",
    "FeeSchedule",
    "brand_of",
    "fee_lines",
    "format_rate",
    "parse_rate",
    "percentage_fee",
]

#: Card types the host knows; fee rules are chosen by them.
CARD_TYPES = ("debit", "credit", "unknown")
#: Parts per million in one whole (a rate of 100%).
PPM = 1_000_000
_NAME = re.compile(r"[\x20-\x7e\u00a0-\uffff]{1,80}")


def percentage_fee(amount: int, rate_ppm: int) -> int:
    """``amount × rate_ppm / 10⁶`` rounded half up, minor units (``amount`` ≥ 0)."""
    return (amount * rate_ppm + PPM // 2) // PPM


def parse_rate(text: str) -> int:
    """A percentage (``"0.6%"``, ``"0.60"``, ``"0.385%"``) as parts per million.

    :raises InvalidInput: not a number, negative, over 100% or finer than 0.0001%.
    """
    raw = text.strip().removesuffix("%").strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InvalidInput(f"a rate must be a percentage like 0.60%, got {text!r}") from None
    if not value.is_finite() or value < 0 or value > 100:
        raise InvalidInput(f"a rate must be between 0% and 100%, got {text!r}")
    ppm = value * 10_000
    if ppm != ppm.to_integral_value():
        raise InvalidInput(f"a rate may have at most 4 decimals of a percent, got {text!r}")
    return int(ppm)


def format_rate(rate_ppm: int) -> str:
    """Parts per million as a percentage with at least 2 decimals: 6000 → ``"0.60%"``."""
    whole, frac = divmod(rate_ppm, 10_000)
    digits = f"{frac:04d}".rstrip("0").ljust(2, "0")
    return f"{whole}.{digits}%"


def _money(minor: int, currency: str | None = None) -> str:
    if currency is None:
        return f"{minor // 100}.{minor % 100:02d}"
    return f"{format_amount(minor, currency)} {currency_info(currency).alpha}"


def brand_of(masked_pan: str | None) -> str | None:
    """The card brand id (``unionpay``, ``visa``...) from a masked PAN's first 6 digits, or None."""
    if not masked_pan:
        return None
    return _brand_of_head(masked_pan[:6])


@functools.lru_cache(maxsize=4096)
def _brand_of_head(head: str) -> str | None:
    # detect_brand scans every IIN range; a settlement prices many cards of few IINs.
    brand = detect_brand(head) if head.isdigit() else None
    return brand.id if brand is not None else None


@dataclass(frozen=True, slots=True)
class FeeRule:
    """One priced rule: a percentage of the amount with optional per-transaction minimum and cap.

    ``rate_ppm`` parts per million (0-1,000,000); ``cap`` and ``minimum`` minor units per
    transaction (None: none) of ``currency`` (ISO 4217, kept as the numeric code); a rule with a
    currency prices only transactions in it (a cap of 20.00 yuan is not 20 yen), one without any
    (a bare rate, or a schedule from before currencies were kept) prices every currency.
    ``card_type`` / ``brand`` filter the cards it applies to (None: any). ``name`` is what
    statements show (default: a description of the rule).

    :raises InvalidInput: a value out of range, ``minimum`` above ``cap``, an unknown card type
        or brand, or a name that is empty, longer than 80 characters or has control characters.
    """

    rate_ppm: int
    name: str = ""
    cap: int | None = None
    minimum: int | None = None
    card_type: str | None = None
    brand: str | None = None
    currency: str | None = None

    def __post_init__(self) -> None:
        if self.currency is not None:
            object.__setattr__(self, "currency", currency_info(self.currency).numeric)
        if not isinstance(self.rate_ppm, int) or not 0 <= self.rate_ppm <= PPM:
            raise InvalidInput(f"a fee rate must be 0 to {PPM} ppm, got {self.rate_ppm!r}")
        for label, value in (("cap", self.cap), ("minimum", self.minimum)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidInput(f"a fee {label} must be a non-negative amount in minor units, got {value!r}")
        if self.cap is not None and self.minimum is not None and self.minimum > self.cap:
            raise InvalidInput(f"a fee minimum ({self.minimum}) cannot exceed its cap ({self.cap})")
        if self.card_type is not None and self.card_type not in CARD_TYPES:
            raise InvalidInput(f"card type must be one of {', '.join(CARD_TYPES)}, got {self.card_type!r}")
        if self.brand is not None and self.brand not in BRAND_NAMES:
            raise InvalidInput(f"unknown card brand {self.brand!r} (known: {', '.join(sorted(BRAND_NAMES))})")
        if not self.name:
            object.__setattr__(self, "name", self.describe())
        if not _NAME.fullmatch(self.name):
            raise InvalidInput(f"a fee name must be 1 to 80 printable characters, got {self.name!r}")

    def describe(self) -> str:
        """A human description: ``"MDR debit unionpay 0.50% cap 20.00"``."""
        parts = ["MDR"]
        parts += [p for p in (self.card_type, self.brand) if p]
        parts.append(format_rate(self.rate_ppm))
        if self.minimum is not None:
            parts.append(f"min {_money(self.minimum, self.currency)}")
        if self.cap is not None:
            parts.append(f"cap {_money(self.cap, self.currency)}")
        return " ".join(parts)

    def matches(self, card_type: str | None, brand: str | None, currency: str | None = None) -> bool:
        """True when this rule applies to a card of ``card_type`` and ``brand`` (and, when both
        the rule and the transaction name one, the transaction's ``currency``)."""
        return (
            (self.card_type is None or self.card_type == (card_type or "unknown"))
            and (self.brand is None or self.brand == brand)
            and (self.currency is None or currency is None or currency_info(currency).numeric == self.currency)
        )

    def fee(self, amount: int) -> int:
        """The fee on one transaction of ``amount`` minor units (the rounding rule above).

        :raises InvalidInput: ``amount`` is negative.
        """
        if amount < 0:
            raise InvalidInput(f"a fee is computed on a non-negative amount, got {amount}")
        fee = percentage_fee(amount, self.rate_ppm)
        if self.minimum is not None:
            fee = max(fee, self.minimum)
        if self.cap is not None:
            fee = min(fee, self.cap)
        return min(fee, amount)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``from_dict`` reads it back); ``rate`` is for people."""
        out: dict[str, Any] = {"name": self.name, "rate_ppm": self.rate_ppm, "rate": format_rate(self.rate_ppm)}
        for key in ("cap", "minimum", "card_type", "brand", "currency"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeeRule:
        """A rule from ``{"rate": "0.60%"}`` or ``{"rate_ppm": 6000}`` plus optional ``name``,
        ``cap``, ``minimum`` (minor units), ``card_type``, ``brand``.

        :raises InvalidInput: unknown keys, no rate, two rates that disagree, or bad values.
        """
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a fee rule must be an object, got {data!r}")
        unknown = set(data) - {"name", "rate", "rate_ppm", "cap", "minimum", "card_type", "brand", "currency"}
        if unknown:
            raise InvalidInput(f"unknown fee rule keys: {', '.join(sorted(unknown))}")
        rate_ppm = data.get("rate_ppm")
        if "rate" in data:
            from_text = parse_rate(str(data["rate"]))
            if rate_ppm is not None and rate_ppm != from_text:
                raise InvalidInput(f"fee rule rate {data['rate']!r} and rate_ppm {rate_ppm!r} disagree")
            rate_ppm = from_text
        if rate_ppm is None:
            raise InvalidInput('a fee rule needs a rate ("rate": "0.60%" or "rate_ppm": 6000)')
        return cls(
            rate_ppm=rate_ppm,
            name=data.get("name") or "",
            cap=data.get("cap"),
            minimum=data.get("minimum"),
            card_type=data.get("card_type"),
            brand=data.get("brand"),
            currency=data.get("currency"),
        )


@dataclass(frozen=True, slots=True)
class FeeCharge:
    """The fee of one transaction: ``amount`` minor units (positive: charged to the merchant,
    negative: returned), under the line ``name`` (None: no rule applied, amount 0)."""

    name: str | None
    amount: int


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Ordered fee rules (first match wins) and whether refunds return fees.

    :raises InvalidInput: two rules share a name (statement lines would merge).
    """

    rules: tuple[FeeRule, ...] = ()
    refunds_return_fee: bool = False

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise InvalidInput("fee rule names must be unique (each is a statement line)")

    @classmethod
    def uniform(
        cls, rate_ppm: int, *, cap: int | None = None, minimum: int | None = None, name: str = ""
    ) -> FeeSchedule:
        """One rate for every card."""
        return cls((FeeRule(rate_ppm, name=name, cap=cap, minimum=minimum),))

    def rule_for(self, card_type: str | None, brand: str | None, currency: str | None = None) -> FeeRule | None:
        """The first rule matching the card (and currency), or None."""
        return next((r for r in self.rules if r.matches(card_type, brand, currency)), None)

    def charge(
        self, kind: str, amount: int, card_type: str | None, brand: str | None, currency: str | None = None
    ) -> FeeCharge:
        """The fee of a ``sale`` or ``refund`` of ``amount`` minor units (of ``currency``) on such a card.

        :raises InvalidInput: ``kind`` is neither, or ``amount`` is negative.
        """
        if kind not in ("sale", "refund"):
            raise InvalidInput(f"fees apply to sales and refunds, not {kind!r}")
        rule = self.rule_for(card_type, brand, currency)
        if rule is None:
            return FeeCharge(None, 0)
        if kind == "sale":
            return FeeCharge(rule.name, rule.fee(amount))
        if not self.refunds_return_fee:
            return FeeCharge(None, 0)
        return FeeCharge(f"{rule.name} returned", -rule.fee(amount))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``from_dict`` reads it back)."""
        return {"rules": [r.to_dict() for r in self.rules], "refunds_return_fee": self.refunds_return_fee}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FeeSchedule:
        """A schedule from ``{"rules": [...], "refunds_return_fee": false}`` (None: no fees).

        :raises InvalidInput: unknown keys or a bad rule.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a fee schedule must be an object, got {data!r}")
        unknown = set(data) - {"rules", "refunds_return_fee"}
        if unknown:
            raise InvalidInput(f"unknown fee schedule keys: {', '.join(sorted(unknown))}")
        rules = data.get("rules", [])
        if not isinstance(rules, list):
            raise InvalidInput('fee schedule "rules" must be a list')
        refunds = data.get("refunds_return_fee", False)
        if not isinstance(refunds, bool):
            raise InvalidInput('fee schedule "refunds_return_fee" must be true or false')
        return cls(tuple(FeeRule.from_dict(r) for r in rules), refunds)


def fee_lines(charges: Iterable[FeeCharge]) -> list[dict[str, Any]]:
    """Statement fee lines: ``[{"name", "count", "amount"}]`` by name (sorted), unnamed charges
    (no rule) left out. The amounts sum to the charges' total exactly."""
    lines: dict[str, list[int]] = {}
    for charge in charges:
        if charge.name is None:
            continue
        line = lines.setdefault(charge.name, [0, 0])
        line[0] += 1
        line[1] += charge.amount
    return [{"name": name, "count": n, "amount": amount} for name, (n, amount) in sorted(lines.items())]
