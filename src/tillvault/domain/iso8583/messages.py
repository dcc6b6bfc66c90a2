"""Message builders and helpers: sale, refund, void, advice, reversal, network, settlement, upload, responses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Final, NotRequired, TypedDict, Unpack

from tillvault.domain import cards
from tillvault.domain.iso8583.spec import (
    _FIELDS,
    _PATTERNS,
    _VALID,
    DEFAULT_ACQUIRER_ID,
    ECHO,
    MTI_ADVICE,
    MTI_BATCH_UPLOAD,
    MTI_FINANCIAL,
    MTI_NETWORK,
    MTI_REVERSAL,
    MTI_REVERSAL_REPEAT,
    MTI_SETTLEMENT,
    PROC_REFUND,
    PROC_SALE,
    PROC_SETTLE_AFTER_UPLOAD,
    PROC_SETTLE_FIRST,
    PROC_VOID,
    REQUEST_MTIS,
    REQUIRED_FIELDS,
    RESPONSE_CODES,
    SIGN_OFF,
    SIGN_ON,
    _check_value,
)
from tillvault.errors import MessageError

# --- Small helpers --------------------------------------------------------------------------------


def response_mti(request_mti: str) -> str:
    """The response MTI for a request MTI (request + 10).

    :raises MessageError: ``request_mti`` is not a request we speak.
    """
    if request_mti not in REQUEST_MTIS:
        raise MessageError(f"{request_mti!r} is not a request message type")
    return f"{int(request_mti) + 10:04d}"


def missing_fields(message: Mapping[str, str]) -> list[str]:
    """The required fields (``REQUIRED_FIELDS``) a request lacks; empty when complete."""
    return [f for f in REQUIRED_FIELDS.get(message.get("t", ""), ()) if f not in message]


def field_int(message: Mapping[str, str], key: str) -> int:
    """Field ``key`` read as a non-negative integer (STAN, amount, batch, invoice...).

    :raises MessageError: the field is missing or not all digits.
    """
    value = message.get(key)
    if value is None:
        raise MessageError(f"field {key} is missing")
    if not value.isdigit() or not value.isascii():
        raise MessageError(f"field {key} must be digits, got {value!r}")
    return int(value)


def is_approved(response: Mapping[str, str]) -> bool:
    """True when field 39 is ``"00"``."""
    return response.get("39") == "00"


def response_text(code: str) -> str:
    """``"51 insufficient funds"`` style text for a response code (unknown codes say so)."""
    return f"{code} {RESPONSE_CODES.get(code, 'unknown response code')}"


def mask_pan(pan: str) -> str:
    """The PAN as the host keeps it: first 6 and last 4 from 13 digits (as the terminal), only
    the issuer's first 6 on a 12-digit card (its fee and card-type rules read them; first 6 and
    last 4 would leave 2 digits hidden), nothing of a shorter number."""
    if len(pan) >= 13:
        return cards.mask_pan(pan)
    if len(pan) == 12:
        return pan[:6] + "*" * 6
    return "*" * len(pan)


def redacted(message: Mapping[str, str]) -> dict[str, str]:
    """A copy safe to log: the PAN masked, the expiry and MAC hidden."""
    out = dict(message)
    if "2" in out:
        out["2"] = mask_pan(out["2"])
    for key in ("14", "128"):
        if key in out:
            out[key] = "*" * len(out[key])
    return out


def terminal_id_field(terminal_id: str) -> str:
    """A terminal id as field 41 carries it: up to 8 printable characters, space padded.

    :raises MessageError: empty, longer than 8 or not printable ASCII.
    """
    return _padded("41", terminal_id, "terminal id")


def _padded(key: str, value: str, what: str) -> str:
    length = _FIELDS[key][2]
    if not value or len(value) > length or not _PATTERNS["ans"].fullmatch(value):
        raise MessageError(f"{what} must be 1 to {length} printable ASCII characters, got {value!r}")
    return value.ljust(length)


def _digits(value: int, width: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 10**width:
        raise MessageError(f"{what} must be an integer from 0 to {10**width - 1}, got {value!r}")
    return f"{value:0{width}d}"


def _stan(stan: int) -> str:
    if isinstance(stan, bool) or not isinstance(stan, int) or not 1 <= stan <= 999_999:
        raise MessageError(f"STAN must be an integer from 1 to 999999, got {stan!r}")
    return f"{stan:06d}"


def _pan(pan: str) -> str:
    if not isinstance(pan, str) or not pan.isascii() or not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise MessageError("PAN must be 12 to 19 digits")
    return pan


def _expiry(expiry: str) -> str:
    if not isinstance(expiry, str) or len(expiry) != 4 or not expiry.isdigit() or not expiry.isascii():
        raise MessageError(f"expiry must be YYMM (4 digits), got {expiry!r}")
    return expiry


def _currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isdigit() or not currency.isascii():
        raise MessageError(f"currency must be the ISO 4217 numeric code (e.g. '156'), got {currency!r}")
    return currency


def _clock(when: datetime | None) -> dict[str, str]:
    """Fields 7 (UTC) and 12/13 (local time of ``when``)."""
    moment = when or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.astimezone()
    utc = moment.astimezone(UTC)
    local = moment if when is not None else moment.astimezone()
    return {
        "7": utc.strftime("%m%d%H%M%S"),
        "12": local.strftime("%H%M%S"),
        "13": local.strftime("%m%d"),
    }


# --- Builders -------------------------------------------------------------------------------------


class CardArgs(TypedDict):
    """Keyword arguments shared by the card request builders (sale, refund, void, advice).

    ``pan`` 12-19 digits; ``expiry`` YYMM or None; ``amount`` int minor units; ``currency`` the
    ISO 4217 numeric code (``"156"``); ``stan`` 1..999999; ``terminal_id`` up to 8 and
    ``merchant_id`` up to 15 printable characters (space padded); ``batch`` (field 60) and
    ``invoice`` (field 62) as up to 6 digits. Optional: ``pos_entry_mode`` (field 22, default
    ``"012"``: keyed), ``acquirer_id`` (field 32) and ``merchant_name_location`` (field 43).
    """

    pan: str
    expiry: str | None
    amount: int
    currency: str
    stan: int
    terminal_id: str
    merchant_id: str
    batch: int
    invoice: int
    pos_entry_mode: NotRequired[str]
    acquirer_id: NotRequired[str]
    merchant_name_location: NotRequired[str | None]


def _card_request(mti: str, processing_code: str, when: datetime | None, card: CardArgs) -> dict[str, str]:
    msg: dict[str, str] = {
        "t": mti,
        "2": _pan(card["pan"]),
        "3": processing_code,
        "4": _digits(card["amount"], 12, "amount (minor units)"),
        **_clock(when),
        "11": _stan(card["stan"]),
        "22": card.get("pos_entry_mode", "012"),
        "25": "00",
        "32": card.get("acquirer_id", DEFAULT_ACQUIRER_ID),
        "41": terminal_id_field(card["terminal_id"]),
        "42": _padded("42", card["merchant_id"], "merchant id"),
        "49": _currency(card["currency"]),
        "60": _digits(card["batch"], 6, "batch number"),
        "62": _digits(card["invoice"], 6, "invoice number"),
    }
    if card.get("expiry") is not None:
        msg["14"] = _expiry(card["expiry"])  # type: ignore[arg-type]
    name = card.get("merchant_name_location")
    if name is not None:
        msg["43"] = name[:40].ljust(40)
    for key in ("22", "32", "43"):
        if key in msg:
            _check_value(key, msg[key])
    return msg


def sale_request(*, when: datetime | None = None, **card: Unpack[CardArgs]) -> dict[str, str]:
    """A 0200 sale (processing code 000000) of ``amount`` minor units; see :class:`CardArgs`.

    ``when`` sets fields 7 (UTC) and 12/13 (its local time); default now.

    :raises MessageError: a value that cannot be carried (PAN not 12-19 digits, negative or
        too large amount, STAN outside 1..999999, terminal id over 8 characters...).
    """
    return _card_request(MTI_FINANCIAL, PROC_SALE, when, card)


def refund_request(
    *, when: datetime | None = None, original_rrn: str | None = None, **card: Unpack[CardArgs]
) -> dict[str, str]:
    """A 0200 refund (processing code 200000): ``amount`` minor units back to the card.

    ``original_rrn`` (field 37), when given, names the sale refunded (informational).

    :raises MessageError: as :func:`sale_request`.
    """
    msg = _card_request(MTI_FINANCIAL, PROC_REFUND, when, card)
    if original_rrn is not None:
        _check_value("37", original_rrn)
        msg["37"] = original_rrn
    return msg


def void_request(
    *,
    original_rrn: str,
    original_auth_code: str | None = None,
    when: datetime | None = None,
    **card: Unpack[CardArgs],
) -> dict[str, str]:
    """A 0200 void of a sale in the open batch (processing code 020000).

    The void has its own ``stan``; ``original_rrn`` (field 37, from the sale's response)
    names the sale; ``amount`` must be the sale's amount and ``invoice`` the sale's invoice.

    :raises MessageError: as :func:`sale_request`, or an RRN that is not 12 characters.
    """
    msg = _card_request(MTI_FINANCIAL, PROC_VOID, when, card)
    _check_value("37", original_rrn)
    msg["37"] = original_rrn
    if original_auth_code is not None:
        _check_value("38", original_auth_code)
        msg["38"] = original_auth_code
    return msg


def advice_request(*, offline_auth_code: str, when: datetime, **card: Unpack[CardArgs]) -> dict[str, str]:
    """A 0220 advice of a sale the terminal approved offline (store-and-forward).

    ``stan`` and ``when`` are the offline sale's (the advice may travel hours later); keep
    them identical on every retry so the host recognises the advice. ``offline_auth_code``
    (6 letters/digits) goes in field 38.

    :raises MessageError: as :func:`sale_request`, or a bad auth code.
    """
    msg = _card_request(MTI_ADVICE, PROC_SALE, when, card)
    _check_value("38", offline_auth_code)
    msg["38"] = offline_auth_code
    return msg


def reversal_request(
    original: Mapping[str, str], *, repeat: bool = False, when: datetime | None = None
) -> dict[str, str]:
    """A 0400 reversal (``repeat=True``: 0420) cancelling ``original`` (a 0200 or 0220 request).

    The reversal keeps the original's STAN, fields 12/13 and amounts, so the host finds the
    original by terminal id + local date + STAN; field 90 carries the original MTI, STAN and
    transmission time (zeros when ``original`` has no field 7). ``original`` may lack the PAN
    (field 2): a terminal rebuilding it from its journal has none, and the host does not need
    it. A reversal is always of the full amount. Send it whenever the outcome of ``original``
    is unknown; the host answers "00" even if it never saw the original.

    :raises MessageError: ``original`` is not a well-formed 0200/0220 request.
    """
    if original.get("t") not in (MTI_FINANCIAL, MTI_ADVICE):
        raise MessageError(f"only a 0200 or 0220 can be reversed, got {original.get('t')!r}")
    lacking = [k for k in ("3", "4", "11", "13", "41", "42", "49") if k not in original]
    if lacking:
        raise MessageError(f"original request lacks fields {', '.join(lacking)}")
    msg = {
        k: original[k]
        for k in ("2", "3", "4", "11", "12", "13", "14", "22", "25", "32", "41", "42", "49", "60", "62")
        if k in original
    }
    msg["t"] = MTI_REVERSAL_REPEAT if repeat else MTI_REVERSAL
    msg["7"] = _clock(when)["7"]
    acquirer = original.get("32", DEFAULT_ACQUIRER_ID)
    sent_at = original.get("7", "0" * 10)
    msg["90"] = original["t"] + original["11"] + sent_at + acquirer.rjust(11, "0") + "0" * 11
    for key, value in msg.items():
        if key != "t":
            _check_value(key, value)
    return msg


def _network(code: str, *, stan: int, terminal_id: str, when: datetime | None) -> dict[str, str]:
    return {
        "t": MTI_NETWORK,
        "7": _clock(when)["7"],
        "11": _stan(stan),
        "41": terminal_id_field(terminal_id),
        "70": code,
    }


def sign_on_request(*, stan: int, terminal_id: str, when: datetime | None = None) -> dict[str, str]:
    """A 0800 sign-on (field 70 = 001).

    :raises MessageError: a bad STAN or terminal id.
    """
    return _network(SIGN_ON, stan=stan, terminal_id=terminal_id, when=when)


def sign_off_request(*, stan: int, terminal_id: str, when: datetime | None = None) -> dict[str, str]:
    """A 0800 sign-off (field 70 = 002).

    :raises MessageError: a bad STAN or terminal id.
    """
    return _network(SIGN_OFF, stan=stan, terminal_id=terminal_id, when=when)


def echo_request(*, stan: int, terminal_id: str, when: datetime | None = None) -> dict[str, str]:
    """A 0800 echo test (field 70 = 301).

    :raises MessageError: a bad STAN or terminal id.
    """
    return _network(ECHO, stan=stan, terminal_id=terminal_id, when=when)


def settlement_request(
    *,
    totals: BatchTotals,
    stan: int,
    terminal_id: str,
    merchant_id: str,
    batch: int,
    currency: str,
    after_upload: bool = False,
    when: datetime | None = None,
) -> dict[str, str]:
    """A 0500 settlement request carrying the terminal's ``totals`` for ``batch``.

    Processing code 920000 for the first close, 960000 after a batch upload
    (``after_upload=True``). The host answers "00" when its totals agree, "95" when not.

    :raises MessageError: totals out of range, a bad STAN, id or currency.
    """
    msg = {
        "t": MTI_SETTLEMENT,
        "3": PROC_SETTLE_AFTER_UPLOAD if after_upload else PROC_SETTLE_FIRST,
        "7": _clock(when)["7"],
        "11": _stan(stan),
        "41": terminal_id_field(terminal_id),
        "42": _padded("42", merchant_id, "merchant id"),
        "49": _currency(currency),
        "60": _digits(batch, 6, "batch number"),
        **totals.to_fields(),
    }
    return msg


def batch_upload_request(
    *,
    stan: int,
    terminal_id: str,
    merchant_id: str,
    batch: int,
    invoice: int,
    original_mti: str,
    original_stan: int,
    processing_code: str,
    amount: int,
    currency: str,
    original_time: str,
    original_date: str,
    rrn: str,
    auth_code: str | None = None,
    pan: str | None = None,
    expiry: str | None = None,
    when: datetime | None = None,
) -> dict[str, str]:
    """A 0320 batch upload of one transaction the terminal counts in ``batch``.

    ``stan`` is the upload message's own STAN; the transaction is named by ``original_mti``
    (0200 or 0220) + ``original_stan`` (field 61) and its ``original_date`` (MMDD, field 13)
    and ``original_time`` (hhmmss, field 12). ``rrn`` (field 37) is the host's RRN, or for an
    offline sale whose advice never got an answer, 12 spaces. ``pan`` is optional: the host
    only needs it to post a transaction it never saw.

    :raises MessageError: a value that cannot be carried.
    """
    if original_mti not in (MTI_FINANCIAL, MTI_ADVICE):
        raise MessageError(f"original MTI must be 0200 or 0220, got {original_mti!r}")
    if processing_code not in (PROC_SALE, PROC_REFUND):
        raise MessageError(f"only sales and refunds are uploaded, got processing code {processing_code!r}")
    clock = _clock(when)
    msg = {
        "t": MTI_BATCH_UPLOAD,
        "3": processing_code,
        "4": _digits(amount, 12, "amount (minor units)"),
        "7": clock["7"],
        "11": _stan(stan),
        "12": original_time,
        "13": original_date,
        "37": rrn,
        "41": terminal_id_field(terminal_id),
        "42": _padded("42", merchant_id, "merchant id"),
        "49": _currency(currency),
        "60": _digits(batch, 6, "batch number"),
        "61": original_mti + _stan(original_stan),
        "62": _digits(invoice, 6, "invoice number"),
    }
    if auth_code is not None:
        msg["38"] = auth_code
    if pan is not None:
        msg["2"] = _pan(pan)
    if expiry is not None:
        msg["14"] = _expiry(expiry)
    for key, value in msg.items():
        if key != "t":
            _check_value(key, value)
    return msg


# Field names accepted by response_for, and the fields echoed from the request.
_NAMED_FIELDS: Final = {
    "processing_code": "3",
    "amount": "4",
    "rrn": "37",
    "auth_code": "38",
    "response_code": "39",
    "message": "63",
    "network_code": "70",
    "net_settlement": "97",
}
_ECHOED: Final = ("3", "4", "11", "12", "13", "32", "41", "42", "49", "60", "61", "62", "70", "90")


def response_for(request: Mapping[str, str], **fields: str | int | None) -> dict[str, str]:
    """The response to ``request``: MTI + 10, the echoed fields, and ``fields`` on top.

    Echoed: 3, 4, 11, 12, 13, 32, 41, 42, 49, 60, 61, 62, 70, 90 (never the PAN or expiry).
    ``fields`` takes names (``response_code``, ``rrn``, ``auth_code``, ``message``,
    ``processing_code``, ``amount``, ``network_code``, ``net_settlement``) or field numbers
    as ``f39="00"``. An ``int`` for a fixed numeric field is zero-padded; ``message`` is cut
    to 999 characters. Passing ``None`` removes an echoed field.

    :raises MessageError: an unknown MTI, name or field, or a value that does not fit.
    """
    mti = response_mti(str(request.get("t")))
    msg: dict[str, str] = {"t": mti}
    msg.update({k: request[k] for k in _ECHOED if k in request})
    for name, value in fields.items():
        key = _NAMED_FIELDS.get(name) or (name[1:] if name.startswith("f") and name[1:] in _FIELDS else None)
        if key is None:
            raise MessageError(f"response_for: unknown field name {name!r}")
        if value is None:
            msg.pop(key, None)
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            kind, prefix, length, _ = _FIELDS[key]
            if kind != "n" or prefix:
                raise MessageError(f"field {key} takes text, not an integer")
            value = _digits(value, length, f"field {key}")
        text = str(value)[:999] if key == "63" else str(value)
        if not _VALID[key](text):
            _check_value(key, text)  # raises, naming the field and the reason
        msg[key] = text
    return msg


# --- Settlement totals ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchTotals:
    """A batch's totals as settlement compares them; all amounts in int minor units.

    Sign convention (cardholder's view): sales are **debits** to the cardholder (fields
    76/88), refunds **credits** (74/86). Reversal fields count sales (77/89) and refunds
    (75/87) that were reversed or voided; they are informational. The net settlement amount
    (field 97) is ``sales_amount - refunds_amount``, written ``'D'`` + 16 digits when the net
    is positive and ``'C'`` + 16 digits of its magnitude otherwise (zero is ``C000...0``).
    """

    sales_count: int = 0
    sales_amount: int = 0
    refunds_count: int = 0
    refunds_amount: int = 0
    sales_reversal_count: int = 0
    sales_reversal_amount: int = 0
    refunds_reversal_count: int = 0
    refunds_reversal_amount: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            width = 10 if f.name.endswith("count") else 16
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**width:
                raise MessageError(f"{f.name} must be an integer from 0 to {10**width - 1}, got {value!r}")

    @property
    def net_amount(self) -> int:
        """Sales minus refunds, minor units (positive: cardholders were debited on balance)."""
        return self.sales_amount - self.refunds_amount

    def balances_with(self, other: BatchTotals) -> bool:
        """True when sales and refunds counts and amounts agree (reversal fields ignored)."""
        return (self.sales_count, self.sales_amount, self.refunds_count, self.refunds_amount) == (
            other.sales_count,
            other.sales_amount,
            other.refunds_count,
            other.refunds_amount,
        )

    def to_fields(self) -> dict[str, str]:
        """Fields 74-77, 86-89 and 97."""
        net = self.net_amount
        sign = "D" if net > 0 else "C"
        return {
            "74": f"{self.refunds_count:010d}",
            "75": f"{self.refunds_reversal_count:010d}",
            "76": f"{self.sales_count:010d}",
            "77": f"{self.sales_reversal_count:010d}",
            "86": f"{self.refunds_amount:016d}",
            "87": f"{self.refunds_reversal_amount:016d}",
            "88": f"{self.sales_amount:016d}",
            "89": f"{self.sales_reversal_amount:016d}",
            "97": f"{sign}{abs(net):016d}",
        }

    @classmethod
    def from_fields(cls, message: Mapping[str, str]) -> BatchTotals:
        """Totals read from fields 74-77 and 86-89 (absent reversal fields count as 0).

        :raises MessageError: a main total is missing, or field 97 disagrees with the totals.
        """
        totals = cls(
            sales_count=field_int(message, "76"),
            sales_amount=field_int(message, "88"),
            refunds_count=field_int(message, "74"),
            refunds_amount=field_int(message, "86"),
            sales_reversal_count=field_int(message, "77") if "77" in message else 0,
            sales_reversal_amount=field_int(message, "89") if "89" in message else 0,
            refunds_reversal_count=field_int(message, "75") if "75" in message else 0,
            refunds_reversal_amount=field_int(message, "87") if "87" in message else 0,
        )
        net = message.get("97")
        if net is not None:
            signed = int(net[1:]) * (1 if net[0] == "D" else -1) if len(net) == 17 else None
            if signed != totals.net_amount:
                raise MessageError(f"field 97 ({net}) disagrees with the totals (net {totals.net_amount})")
        return totals
