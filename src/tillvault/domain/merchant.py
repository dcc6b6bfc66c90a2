"""The merchant a terminal works for: identifiers, name and place, category, currency, licence.

A :class:`Merchant` is validated when it is made, so a terminal never runs with a merchant id
the acquirer would refuse (ISO 8583 field 42) or a terminal id of the wrong size (field 41).
:meth:`Merchant.from_qr` takes the merchant's own EMV QR code as the source of truth for name,
city, country, category, currency and payment accounts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from stdnum import exceptions as stdnum_errors
from stdnum.cn import uscc

from tillvault.domain.emvqr import MerchantAccount, QRParseResult, control_character
from tillvault.domain.money import currency_info
from tillvault.errors import InvalidInput, QRCodeInvalid

__all__ = ["Merchant", "derive_merchant_id", "validate_licence_number"]

_MERCHANT_ID = re.compile(r"[A-Za-z0-9 ]{1,15}")
_TERMINAL_ID = re.compile(r"[A-Za-z0-9]{8}")
#: MCC used when the QR code carries none (PromptPay and VietQR omit tag 52); Pix uses it too.
UNKNOWN_MCC = "0000"


def validate_licence_number(number: str) -> str:
    """Validate a China unified social credit code (统一社会信用代码) and return its compact form.

    An empty string means "not given" and is returned as is.

    :raises InvalidInput: wrong length, characters, region/organisation component, or check digit.
    """
    if not isinstance(number, str):
        raise InvalidInput("licence number must be text")
    if not number.strip():
        return ""
    try:
        return str(uscc.validate(number))
    except stdnum_errors.InvalidLength as exc:
        raise InvalidInput(
            f"licence number {number!r} has {len(uscc.compact(number))} characters; a unified social credit code has 18"
        ) from exc
    except stdnum_errors.InvalidChecksum as exc:
        raise InvalidInput(f"licence number {number!r} has a wrong check digit (last character)") from exc
    except stdnum_errors.InvalidComponent as exc:
        raise InvalidInput(f"licence number {number!r} has an invalid registration or region code") from exc
    except stdnum_errors.ValidationError as exc:
        raise InvalidInput(
            f"licence number {number!r} is malformed: use 18 digits or capital letters (no I, O, S, V, Z)"
        ) from exc


def derive_merchant_id(*parts: str) -> str:
    """A deterministic 15-character merchant id (``M`` + 14 hex capitals) from identifying text.

    Used when the QR code's merchant id does not fit ISO 8583 field 42 (e.g. a phone number
    with ``+``, an e-mail-like Bakong id, or more than 15 characters).
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest().upper()
    return "M" + digest[:14]


@dataclass
class Merchant:
    """A merchant as the terminal and acquirer know it. All fields are validated on creation.

    ``merchant_id``: ISO 8583 field 42, 1-15 letters, digits or spaces. ``terminal_id``: field
    41, exactly 8 letters or digits. ``mcc``: 4 digits. ``currency``: ISO 4217 alpha (numeric
    is accepted and converted). ``country``: ISO 3166-1 alpha-2. ``licence_number``: China
    unified social credit code, or ``""`` when not given.
    """

    merchant_id: str
    terminal_id: str
    name: str
    city: str
    country: str
    mcc: str
    currency: str
    address: str = ""
    licence_number: str = ""
    accounts: list[MerchantAccount] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.merchant_id, str) or not _MERCHANT_ID.fullmatch(self.merchant_id):
            raise InvalidInput(
                f"merchant id {self.merchant_id!r} must be 1 to 15 letters, digits or spaces (ISO 8583 field 42)"
            )
        if not self.merchant_id.strip():
            raise InvalidInput("merchant id is blank")
        if not isinstance(self.terminal_id, str) or not _TERMINAL_ID.fullmatch(self.terminal_id):
            raise InvalidInput(
                f"terminal id {self.terminal_id!r} must be exactly 8 letters or digits (ISO 8583 field 41)"
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInput("merchant name is required")
        # EMVCo allows 25 and 15 characters, but codes in the field carry longer ones (the parser
        # warns): a terminal takes what a QR field can hold, and building a code enforces EMVCo.
        if len(self.name) > 99:
            raise InvalidInput(f"merchant name has {len(self.name)} characters; at most 99 (a QR field)")
        if not isinstance(self.city, str) or len(self.city) > 99:
            raise InvalidInput(f"merchant city {self.city!r} must be text of at most 99 characters")

        if not isinstance(self.country, str) or not re.fullmatch(r"[A-Z]{2}", self.country):
            raise InvalidInput(f"country {self.country!r} must be 2 capital letters (ISO 3166-1 alpha-2)")
        if not isinstance(self.mcc, str) or not re.fullmatch(r"[0-9]{4}", self.mcc):
            raise InvalidInput(f"merchant category code {self.mcc!r} must be 4 digits")
        self.currency = currency_info(self.currency).alpha
        if not isinstance(self.address, str) or len(self.address) > 200:
            raise InvalidInput("address must be text of at most 200 characters")
        self.licence_number = validate_licence_number(self.licence_number)
        self.accounts = [a if isinstance(a, MerchantAccount) else _account_from_dict(a) for a in self.accounts]

    @classmethod
    def from_qr(
        cls,
        result: QRParseResult,
        *,
        terminal_id: str,
        merchant_id: str | None = None,
        address: str = "",
        licence_number: str = "",
        mcc: str | None = None,
        name: str | None = None,
        city: str | None = None,
    ) -> Merchant:
        """Make a merchant from a parsed QR code (see :func:`tillvault.domain.emvqr.parse_qr`).

        The merchant id is, in order: ``merchant_id`` if given; the first of the first account's
        merchant id candidates (its value, VietQR account, the sub-fields its scheme uses for the
        merchant, else sub-field 01, 02 or 03) that has at
        least 4 characters and fits field 42 (short values are type codes, e.g. PayNow's
        proxy type); else :func:`derive_merchant_id` of that account's tag, GUI and fields, so
        the same QR code always gives the same id. ``name`` and ``mcc`` fill in for codes that
        lack tag 59 (PromptPay) or 52 (VietQR); without ``mcc`` such a code gets ``0000``.

        :raises QRCodeInvalid: the QR code is not valid (its errors are attached).
        :raises InvalidInput: no merchant name (neither in the code nor given), or a field is
            malformed.
        """
        if not result.valid:
            raise QRCodeInvalid(
                "merchant QR code is invalid: " + (result.errors[0] if result.errors else "unknown problem"),
                list(result.errors),
            )
        name = name or result.merchant_name
        if not name:
            raise InvalidInput("the merchant QR code has no merchant name (tag 59); give it (--merchant-name)")
        # Checked when a merchant is made (a stored terminal from before the check still opens).
        for label, text in (("merchant name", name), ("merchant city", city or result.merchant_city or "")):
            bad = control_character(text)
            if bad is not None:
                raise InvalidInput(f"{label} {text!r} contains the control character U+{ord(bad):04X}")
        if merchant_id is None:
            first = result.accounts[0]
            candidates = [c.strip() for c in first.merchant_id_candidates()]
            merchant_id = next(
                (c for c in candidates if len(c) >= 4 and _MERCHANT_ID.fullmatch(c)),
                None,
            ) or derive_merchant_id(
                first.tag or "",
                first.gui or "",
                # Nothing that names the merchant: then all the account holds, so two merchants of
                # one scheme never share an id.
                *(candidates or [f"{k}={v}" for k, v in sorted(first.fields.items())]),
            )
        return cls(
            merchant_id=merchant_id,
            terminal_id=terminal_id,
            name=name,
            city=city or result.merchant_city or "",
            country=result.country or "",
            mcc=mcc or result.mcc or UNKNOWN_MCC,
            currency=result.currency or "",
            address=address,
            licence_number=licence_number,
            accounts=[
                MerchantAccount(a.tag, a.gui, dict(a.fields), a.value, a.scheme, dict(a.nested))
                for a in result.accounts
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` turns back into an equal merchant."""
        return {
            "merchant_id": self.merchant_id,
            "terminal_id": self.terminal_id,
            "name": self.name,
            "city": self.city,
            "country": self.country,
            "mcc": self.mcc,
            "currency": self.currency,
            "address": self.address,
            "licence_number": self.licence_number,
            "accounts": [a.to_dict() for a in self.accounts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Merchant:
        """Rebuild a merchant from :meth:`to_dict` output, validating every field again.

        :raises InvalidInput: a required key is missing or a field is malformed.
        """
        if not isinstance(data, dict):
            raise InvalidInput("merchant data must be a JSON object")
        required = ("merchant_id", "terminal_id", "name", "city", "country", "mcc", "currency")
        missing = [k for k in required if k not in data]
        if missing:
            raise InvalidInput(f"merchant data lacks {', '.join(missing)}")
        return cls(
            **{k: data[k] for k in required},
            address=data.get("address", ""),
            licence_number=data.get("licence_number", ""),
            accounts=[_account_from_dict(a) for a in data.get("accounts", [])],
        )


def _account_from_dict(data: Any) -> MerchantAccount:
    if not isinstance(data, dict):
        raise InvalidInput("a merchant account must be a JSON object")
    nested = data.get("nested") or {}
    return MerchantAccount(
        tag=data.get("tag"),
        gui=data.get("gui"),
        fields={str(k): str(v) for k, v in (data.get("fields") or {}).items()},
        value=data.get("value"),
        scheme=data.get("scheme"),
        nested={str(k): dict(v) for k, v in nested.items()},
    )
