"""Host settings kept in the ledger itself, so the serving host and ``tillvault payout`` agree.

- ``fees``: the default :class:`~tillvault.host.fees.FeeSchedule` (never set: no fees); a
  merchant may override it (``merchants.fees``).
- ``card_types``: the :class:`CardTypeRule` giving a card its type when its account has none
  (``tillvault host account set --card-type`` sets one per card).
- ``calendar``: the :class:`~tillvault.host.businessdays.BusinessCalendar` of payout dates.

Settings are read when used: a fee schedule applies to transactions settled after it is set;
what was settled keeps the fee it got.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tillvault.errors import InvalidInput
from tillvault.host.businessdays import BusinessCalendar
from tillvault.host.fees import CARD_TYPES, FeeSchedule
from tillvault.host.ledger import HostLedger

__all__ = [
    "CardTypeRule",
    "calendar",
    "card_type_rule",
    "check_merchant_id",
    "fee_schedule",
    "set_calendar",
    "set_card_type_rule",
    "set_fee_schedule",
]

_MERCHANT_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,13}[\x21-\x7e])?")


def check_merchant_id(merchant_id: str) -> str:
    """A merchant id as the ledger keys it: field 42 without its padding (1-15 printable ASCII).

    :raises InvalidInput: empty, longer than 15, not printable ASCII.
    """
    value = merchant_id.strip()
    if not _MERCHANT_ID.fullmatch(value):
        raise InvalidInput(f"merchant id must be 1 to 15 printable ASCII characters, got {merchant_id!r}")
    return value


@dataclass(frozen=True, slots=True)
class CardTypeRule:
    """A card's type from its first digits: the longest matching prefix (1-6 digits) in
    ``prefixes`` wins, else ``default``.

    :raises InvalidInput: a prefix that is not 1-6 digits, or a type not in ``CARD_TYPES``.
    """

    default: str = "unknown"
    prefixes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for card_type in (self.default, *self.prefixes.values()):
            if card_type not in CARD_TYPES:
                raise InvalidInput(f"card type must be one of {', '.join(CARD_TYPES)}, got {card_type!r}")
        for prefix in self.prefixes:
            if not (prefix.isascii() and prefix.isdigit() and 1 <= len(prefix) <= 6):
                raise InvalidInput(f"a card-type prefix must be 1 to 6 digits, got {prefix!r}")

    def card_type(self, masked_pan: str | None) -> str:
        """The type of a card by its masked PAN (first 6 digits in clear)."""
        head = (masked_pan or "")[:6]
        for length in range(min(6, len(head)), 0, -1):
            found = self.prefixes.get(head[:length])
            if found is not None:
                return found
        return self.default

    def to_dict(self) -> dict[str, Any]:
        """``{"default": ..., "prefixes": {...}}``."""
        return {"default": self.default, "prefixes": dict(sorted(self.prefixes.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> CardTypeRule:
        """A rule from :meth:`to_dict`'s form (None: every card ``unknown``).

        :raises InvalidInput: unknown keys or bad values.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidInput(f"a card-type rule must be an object, got {data!r}")
        unknown = set(data) - {"default", "prefixes"}
        if unknown:
            raise InvalidInput(f"unknown card-type rule keys: {', '.join(sorted(unknown))}")
        prefixes = data.get("prefixes", {})
        if not isinstance(prefixes, Mapping):
            raise InvalidInput('card-type "prefixes" must map digit prefixes to card types')
        return cls(str(data.get("default", "unknown")), {str(k): str(v) for k, v in prefixes.items()})


def fee_schedule(ledger: HostLedger, merchant_id: str | None = None) -> FeeSchedule:
    """The schedule that prices ``merchant_id``'s transactions (its own, else the default)."""
    if merchant_id is not None:
        row = ledger.rows("SELECT fees FROM merchants WHERE merchant_id = ?", (merchant_id.strip(),))
        if row and row[0]["fees"] is not None:
            return FeeSchedule.from_dict(json.loads(row[0]["fees"]))
    return FeeSchedule.from_dict(ledger.setting("fees"))


def set_fee_schedule(
    ledger: HostLedger, schedule: FeeSchedule | None, merchant_id: str | None = None, *, currency: str = "156"
) -> None:
    """Replace the default schedule, or ``merchant_id``'s own (``None``: back to the default).

    A merchant not yet known is created with ``currency``.

    :raises InvalidInput: a bad merchant id, or ``None`` for the default schedule.
    """
    if merchant_id is None:
        if schedule is None:
            raise InvalidInput("the default fee schedule cannot be removed; set one with no rules instead")
        ledger.put_setting("fees", schedule.to_dict())
        return
    key = check_merchant_id(merchant_id)
    value = json.dumps(schedule.to_dict(), sort_keys=True) if schedule is not None else None
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    ledger.execute(
        "INSERT INTO merchants (merchant_id, currency, fees, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (merchant_id) DO UPDATE SET fees = excluded.fees, updated_at = excluded.updated_at",
        (key, currency, value, now, now),
    )


def card_type_rule(ledger: HostLedger) -> CardTypeRule:
    """The card-type rule in force."""
    return CardTypeRule.from_dict(ledger.setting("card_types"))


def set_card_type_rule(ledger: HostLedger, rule: CardTypeRule) -> None:
    """Replace the card-type rule."""
    ledger.put_setting("card_types", rule.to_dict())


def calendar(ledger: HostLedger) -> BusinessCalendar:
    """The payout calendar in force (never set: weekends only)."""
    return BusinessCalendar.from_dict(ledger.setting("calendar"))


def set_calendar(ledger: HostLedger, value: BusinessCalendar) -> None:
    """Replace the payout calendar (statements already made keep their payout dates)."""
    ledger.put_setting("calendar", value.to_dict())
