"""Per-merchant terms on the host: device deposit, activation, refund threshold (S15).

- **Deposit**: the device deposit (e.g. 299.00) is collected when it is first set: a transfer
  ``settlement:bank → device_deposit:<merchant>`` on the open business date. It is held until
  the merchant's cumulative net settled card volume (settled sales − settled refunds, all days,
  all terminals) reaches ``refund_threshold``; the payout of the first business date on or after
  collection at which it does refunds it (``device_deposit → merchant_payable``), a line named
  ``device deposit refund`` in that day's statement. Once collected, the deposit amount cannot
  change; a merchant has one deposit.
- **Activation**: with ``activation_min`` set, the merchant's terminals are not activated until
  a sale of at least that amount is approved; before that the host declines smaller sales with
  "13" (the reason names the minimum). Offline sales (0220) cannot be declined: they are
  recorded, and activate when large enough. A later reversal does not deactivate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from tillvault.domain.money import format_amount
from tillvault.errors import InvalidInput
from tillvault.host.fees import FeeSchedule
from tillvault.host.ledger import HostLedger
from tillvault.host.settings import check_merchant_id
from tillvault.host.settlement import open_business_date

__all__ = [
    "DEPOSIT_REFUND_NAME",
    "UNCHANGED",
    "Merchant",
    "Unchanged",
    "activation_minimum",
    "activation_refusal",
    "get_merchant",
    "list_merchants",
    "note_sale",
    "set_merchant",
]

#: The statement line of a deposit refund.
DEPOSIT_REFUND_NAME: Final = "device deposit refund"


class Unchanged:
    """The type of :data:`UNCHANGED`."""

    def __repr__(self) -> str:
        return "UNCHANGED"


#: Default of :func:`set_merchant` arguments: keep the current value (None clears).
UNCHANGED: Final = Unchanged()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Merchant:
    """A merchant's terms and their state; amounts in minor units, dates ISO business dates."""

    merchant_id: str
    currency: str
    deposit: int
    activation_min: int | None
    refund_threshold: int | None
    fees: FeeSchedule | None
    deposit_collected_date: str | None
    deposit_refunded_date: str | None
    activated_date: str | None
    activation_reference: str | None

    @property
    def deposit_status(self) -> str:
        """``none`` (no deposit), ``held`` or ``refunded``."""
        if self.deposit_refunded_date:
            return "refunded"
        return "held" if self.deposit_collected_date else "none"

    @property
    def activated(self) -> bool:
        """True when no activation is required or a qualifying sale was approved."""
        return self.activation_min is None or self.activated_date is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (minor units)."""
        return {
            "merchant_id": self.merchant_id,
            "currency": self.currency,
            "fees": self.fees.to_dict() if self.fees is not None else None,
            "deposit": {
                "amount": self.deposit,
                "status": self.deposit_status,
                "collected_date": self.deposit_collected_date,
                "refunded_date": self.deposit_refunded_date,
                "refund_threshold": self.refund_threshold,
            },
            "activation": {
                "min_amount": self.activation_min,
                "activated": self.activated,
                "activated_date": self.activated_date,
                "reference": self.activation_reference,
            },
        }


def _from_row(row: Any) -> Merchant:
    return Merchant(
        merchant_id=row["merchant_id"],
        currency=row["currency"],
        deposit=row["deposit"],
        activation_min=row["activation_min"],
        refund_threshold=row["refund_threshold"],
        fees=FeeSchedule.from_dict(json.loads(row["fees"])) if row["fees"] is not None else None,
        deposit_collected_date=row["deposit_collected_date"],
        deposit_refunded_date=row["deposit_refunded_date"],
        activated_date=row["activated_date"],
        activation_reference=row["activation_reference"],
    )


def get_merchant(ledger: HostLedger, merchant_id: str) -> Merchant | None:
    """The merchant's terms, or None when it has none (no deposit, no activation rule)."""
    rows = ledger.rows("SELECT * FROM merchants WHERE merchant_id = ?", (merchant_id.strip(),))
    return _from_row(rows[0]) if rows else None


def list_merchants(ledger: HostLedger) -> list[Merchant]:
    """Every merchant with terms, by id."""
    return [_from_row(r) for r in ledger.rows("SELECT * FROM merchants ORDER BY merchant_id")]


def _amount(value: Any, what: str, *, positive: bool = False) -> None:
    if value is None or value is UNCHANGED:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < (1 if positive else 0):
        raise InvalidInput(f"{what} must be {'a positive' if positive else 'a non-negative'} amount in minor units")


def set_merchant(
    ledger: HostLedger,
    merchant_id: str,
    *,
    today: date,
    currency: str | None = None,
    deposit: int | Unchanged = UNCHANGED,
    activation_min: int | Unchanged | None = UNCHANGED,
    refund_threshold: int | Unchanged | None = UNCHANGED,
) -> Merchant:
    """Create or change a merchant's terms; arguments left :data:`UNCHANGED` keep their value,
    ``None`` clears a rule. Setting a deposit collects it at once (see the module doc).

    ``currency``: ISO 4217 numeric of the deposit and thresholds (only before a deposit is
    collected; default 156 for a new merchant).

    :raises InvalidInput: a bad id or amount, or changing a deposit or currency after the deposit
        was collected.
    """
    key = check_merchant_id(merchant_id)
    _amount(deposit, "the deposit")
    _amount(activation_min, "the activation minimum", positive=True)
    _amount(refund_threshold, "the refund threshold")
    if currency is not None and not (len(currency) == 3 and currency.isdigit()):
        raise InvalidInput(f"currency must be an ISO 4217 numeric code like 156, got {currency!r}")
    with ledger.atomic():
        current = get_merchant(ledger, key)
        if current is None:
            now = _now()
            ledger.execute(
                "INSERT INTO merchants (merchant_id, currency, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (key, currency or "156", now, now),
            )
            current = get_merchant(ledger, key)
            assert current is not None
        collected = current.deposit_collected_date is not None
        if collected and currency is not None and currency != current.currency:
            raise InvalidInput(f"merchant {key}: the deposit is collected in {current.currency}; currency is fixed")
        if collected and deposit is not UNCHANGED and deposit != current.deposit:
            raise InvalidInput(
                f"merchant {key}: a deposit of {current.deposit} was collected on "
                f"{current.deposit_collected_date}; it cannot change"
            )
        changes: dict[str, Any] = {}
        if currency is not None:
            changes["currency"] = currency
        for name, value in (
            ("deposit", deposit),
            ("activation_min", activation_min),
            ("refund_threshold", refund_threshold),
        ):
            if value is not UNCHANGED:
                changes[name] = value
        if changes:
            sets = ", ".join(f"{name} = ?" for name in changes)
            ledger.execute(
                f"UPDATE merchants SET {sets}, updated_at = ? WHERE merchant_id = ?", (*changes.values(), _now(), key)
            )
        merchant = get_merchant(ledger, key)
        assert merchant is not None
        if merchant.deposit > 0 and not collected:
            _collect_deposit(ledger, merchant, open_business_date(ledger, today))
            merchant = get_merchant(ledger, key)
            assert merchant is not None
        return merchant


def _collect_deposit(ledger: HostLedger, merchant: Merchant, business: date) -> None:
    bank = ledger.system_account("settlement", "bank", merchant.currency)
    held = ledger.system_account("device_deposit", merchant.merchant_id, merchant.currency)
    transfer = ledger.post(
        bank.id,
        held.id,
        merchant.deposit,
        merchant.currency,
        "deposit_collected",
        f"device deposit of {merchant.merchant_id} collected {business.isoformat()}",
    )
    ledger.execute(
        "UPDATE merchants SET deposit_collected_date = ?, deposit_collected_transfer = ? WHERE merchant_id = ?",
        (business.isoformat(), transfer, merchant.merchant_id),
    )


def activation_minimum(ledger: HostLedger, merchant_id: str | None) -> int | None:
    """The amount (minor units) a sale must reach to activate ``merchant_id``'s terminals, or None
    when no activation is pending (already activated, no activation rule, or no terms at all)."""
    key = merchant_id.strip() if merchant_id else ""
    if not key:
        return None
    rows = ledger.rows(
        "SELECT activation_min FROM merchants"
        " WHERE merchant_id = ? AND activation_min IS NOT NULL AND activated_date IS NULL",
        (key,),
    )
    return rows[0]["activation_min"] if rows else None


def activation_refusal(
    ledger: HostLedger, merchant_id: str | None, amount: int, *, minimum: int | Unchanged | None = UNCHANGED
) -> str | None:
    """Why a sale of ``amount`` must be declined because the merchant is not activated, or None.

    ``minimum``: :func:`activation_minimum` when the caller has just read it in the same ledger
    transaction (left :data:`UNCHANGED`, it is read here).
    """
    if isinstance(minimum, Unchanged):
        minimum = activation_minimum(ledger, merchant_id)
    if minimum is None or amount >= minimum:
        return None
    key = (merchant_id or "").strip()
    rows = ledger.rows("SELECT currency FROM merchants WHERE merchant_id = ?", (key,))
    try:
        shown = format_amount(minimum, rows[0]["currency"]) if rows else f"{minimum // 100}.{minimum % 100:02d}"
    except InvalidInput:
        shown = f"{minimum // 100}.{minimum % 100:02d}"
    return f"terminal not activated: the first sale must be at least {shown} (merchant {key})"


def note_sale(
    ledger: HostLedger,
    merchant_id: str | None,
    amount: int,
    reference: str,
    today: date,
    *,
    minimum: int | Unchanged | None = UNCHANGED,
) -> bool:
    """Record activation when this approved sale of ``amount`` is the first large enough one;
    True when it activated the merchant.

    The activation is dated on the open business date of ``today`` (:func:`open_business_date`)
    and written once: a merchant already activated, or without an activation rule, is not
    touched. ``minimum`` as in :func:`activation_refusal`.
    """
    if isinstance(minimum, Unchanged):
        minimum = activation_minimum(ledger, merchant_id)
    if minimum is None or amount < minimum or not merchant_id:
        return False
    business = open_business_date(ledger, today)
    ledger.execute(
        "UPDATE merchants SET activated_date = ?, activation_reference = ?, updated_at = ?"
        " WHERE merchant_id = ? AND activation_min IS NOT NULL AND activated_date IS NULL AND activation_min <= ?",
        (business.isoformat(), reference, _now(), merchant_id.strip(), amount),
    )
    return True
