"""The field spec of TillVault's ISO 8583 dialect: message types, codes, fields, value checks.

Pure: no I/O. See the package's docstring and ``docs/iso8583.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from tillvault.errors import MessageError

# --- Message types, processing codes, network management codes -------------------------------

MTI_NETWORK: Final = "0800"
MTI_FINANCIAL: Final = "0200"
MTI_ADVICE: Final = "0220"
MTI_BATCH_UPLOAD: Final = "0320"
MTI_REVERSAL: Final = "0400"
MTI_REVERSAL_REPEAT: Final = "0420"
MTI_SETTLEMENT: Final = "0500"

#: Every request MTI the host answers; the response MTI is the request's plus 10.
REQUEST_MTIS: Final = frozenset(
    {
        MTI_NETWORK,
        MTI_FINANCIAL,
        MTI_ADVICE,
        MTI_BATCH_UPLOAD,
        MTI_REVERSAL,
        MTI_REVERSAL_REPEAT,
        MTI_SETTLEMENT,
    }
)
_RESPONSE_MTIS: Final = frozenset(f"{int(m) + 10:04d}" for m in REQUEST_MTIS)

PROC_SALE: Final = "000000"
PROC_VOID: Final = "020000"
PROC_REFUND: Final = "200000"
PROC_SETTLE_FIRST: Final = "920000"
PROC_SETTLE_AFTER_UPLOAD: Final = "960000"

SIGN_ON: Final = "001"
SIGN_OFF: Final = "002"
ECHO: Final = "301"

#: Response codes (field 39) the host uses, with their meaning.
RESPONSE_CODES: Final[dict[str, str]] = {
    "00": "approved",
    "05": "do not honor",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card number",
    "25": "unable to locate record",
    "30": "format error",
    "51": "insufficient funds",
    "54": "expired card",
    "61": "exceeds amount limit",
    "62": "restricted card",
    "91": "issuer unavailable",
    "94": "duplicate transmission",
    "95": "reconcile error",
    "96": "system malfunction",
}

DEFAULT_ACQUIRER_ID: Final = "10000001"

# --- The field spec -----------------------------------------------------------------------------

# number -> (type, length prefix digits (0 = fixed), length, description)
# Types: n digits; an letters/digits/space; ans printable ASCII; x+n 'C'/'D' then digits;
# hex uppercase hexadecimal.
_FIELDS: Final[dict[str, tuple[str, int, int, str]]] = {
    "t": ("n", 0, 4, "Message Type Identifier"),
    "p": ("hex", 0, 16, "Primary bitmap (hex)"),
    "1": ("hex", 0, 16, "Secondary bitmap (hex)"),
    "2": ("n", 2, 19, "Primary Account Number"),
    "3": ("n", 0, 6, "Processing code"),
    "4": ("n", 0, 12, "Amount, transaction (minor units)"),
    "7": ("n", 0, 10, "Transmission date and time MMDDhhmmss (UTC)"),
    "11": ("n", 0, 6, "System trace audit number (STAN)"),
    "12": ("n", 0, 6, "Time, local transaction hhmmss"),
    "13": ("n", 0, 4, "Date, local transaction MMDD"),
    "14": ("n", 0, 4, "Date, expiration YYMM"),
    "15": ("n", 0, 4, "Date, settlement MMDD (0510: the host's business date of the batch)"),
    "22": ("n", 0, 3, "POS entry mode"),
    "25": ("n", 0, 2, "POS condition code"),
    "32": ("n", 2, 11, "Acquiring institution id"),
    "37": ("an", 0, 12, "Retrieval reference number"),
    "38": ("an", 0, 6, "Authorization id response"),
    "39": ("an", 0, 2, "Response code"),
    "41": ("ans", 0, 8, "Card acceptor terminal id"),
    "42": ("ans", 0, 15, "Card acceptor id (merchant)"),
    "43": ("ans", 0, 40, "Card acceptor name/location"),
    "49": ("n", 0, 3, "Currency code, transaction (ISO 4217 numeric)"),
    "60": ("ans", 3, 999, "Private: batch number"),
    "61": ("ans", 3, 999, "Private: original MTI + STAN (batch upload)"),
    "62": ("ans", 3, 999, "Private: invoice number"),
    "63": ("ans", 3, 999, "Private: additional response text"),
    "70": ("n", 0, 3, "Network management information code"),
    "74": ("n", 0, 10, "Credits, number (refunds)"),
    "75": ("n", 0, 10, "Credits, reversal number"),
    "76": ("n", 0, 10, "Debits, number (sales)"),
    "77": ("n", 0, 10, "Debits, reversal number"),
    "86": ("n", 0, 16, "Credits, amount"),
    "87": ("n", 0, 16, "Credits, reversal amount"),
    "88": ("n", 0, 16, "Debits, amount"),
    "89": ("n", 0, 16, "Debits, reversal amount"),
    "90": ("n", 0, 42, "Original data elements"),
    "97": ("x+n", 0, 17, "Amount, net settlement"),
    "128": ("hex", 0, 16, "Message authentication code (hex)"),
}


def _build_spec() -> dict[str, dict[str, Any]]:
    spec: dict[str, dict[str, Any]] = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "No header"}
    }
    for key, (_kind, prefix, length, desc) in _FIELDS.items():
        spec[key] = {
            "data_enc": "ascii",
            "len_enc": "ascii",
            "len_type": prefix,
            "max_len": length,
            "desc": desc,
        }
    return spec


#: The pyiso8583 specification (ASCII, hex bitmaps); see the module docstring.
SPEC: Final = _build_spec()

_PATTERNS: Final = {
    "n": re.compile(r"[0-9]*"),
    "an": re.compile(r"[A-Za-z0-9 ]*"),
    "ans": re.compile(r"[\x20-\x7e]*"),
    "x+n": re.compile(r"[CD][0-9]*"),
    "hex": re.compile(r"[0-9A-F]*"),
}
_HEX16: Final = re.compile(rb"[0-9A-F]{16}")
_DATA_FIELDS: Final = frozenset(k for k in _FIELDS if k not in ("t", "p", "1"))

#: Fields a request of each MTI must carry (the host answers "30" when one is missing).
REQUIRED_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    MTI_NETWORK: ("7", "11", "41", "70"),
    MTI_FINANCIAL: ("2", "3", "4", "11", "12", "13", "41", "42", "49", "60", "62"),
    MTI_ADVICE: ("2", "3", "4", "11", "12", "13", "38", "41", "42", "49", "60", "62"),
    MTI_REVERSAL: ("3", "4", "11", "13", "41", "42", "49", "90"),
    MTI_REVERSAL_REPEAT: ("3", "4", "11", "13", "41", "42", "49", "90"),
    MTI_SETTLEMENT: ("3", "11", "41", "42", "49", "60", "74", "76", "86", "88", "97"),
    MTI_BATCH_UPLOAD: ("3", "4", "11", "12", "13", "37", "41", "42", "49", "60", "61", "62"),
}

_MTIS: Final = REQUEST_MTIS | _RESPONSE_MTIS


def _valid_value_pattern(kind: str, prefix: int, length: int) -> re.Pattern[str]:
    """One pattern for a field's characters *and* length: ``[0-9]{12}``, ``[A-Za-z0-9 ]{6}``...

    Its fullmatch accepts exactly the str values :func:`_check_value` accepts, in one C call
    (tests/domain/test_iso8583_strict.py proves it); encode and decode test every field with it
    and call _check_value only to explain a failure.
    """
    if kind == "x+n":  # 'C' or 'D', then digits
        head, chars, length = "[CD]", "[0-9]", length - 1
    else:
        head, chars = "", _PATTERNS[kind].pattern.removesuffix("*")
    count = str(length) if prefix == 0 else f"0,{length}"
    return re.compile(f"{head}{chars}{{{count}}}")


_VALID: Final[dict[str, Callable[[str], object]]] = {
    key: _valid_value_pattern(kind, prefix, length).fullmatch for key, (kind, prefix, length, _) in _FIELDS.items()
}
# Fields with an LL/LLL length prefix; decode checks those prefixes are the canonical digits.
_VARIABLE_FIELDS: Final = tuple(k for k, (_, prefix, _, _) in _FIELDS.items() if prefix)


def _mask(numbers: Iterable[int]) -> int:
    """A 64-bit bitmap as an int, with bit ``64 - n`` set for each field ``n`` (1..64)."""
    return sum(1 << (64 - n) for n in numbers)


_BIT_SECONDARY: Final = _mask([1])
# The bits a primary bitmap (field 1 + 2..64) and a secondary bitmap (65..128) may carry.
_PRIMARY_ALLOWED: Final = _mask([1, *(int(k) for k in _DATA_FIELDS if int(k) <= 64)])
_SECONDARY_ALLOWED: Final = _mask(int(k) - 64 for k in _DATA_FIELDS if int(k) > 64)


def _check_value(key: str, value: object) -> None:
    """Raise MessageError unless ``value`` is valid text for field ``key``."""
    if key not in _FIELDS:
        raise MessageError(f"field {key} is not part of the TillVault ISO 8583 spec")
    if not isinstance(value, str):
        raise MessageError(f"field {key} must be text, got {type(value).__name__}")
    kind, prefix, length, desc = _FIELDS[key]
    if prefix == 0 and len(value) != length:
        raise MessageError(f"field {key} ({desc}) must be {length} characters, got {len(value)}")
    if len(value) > length:
        raise MessageError(f"field {key} ({desc}) is longer than {length} characters")
    if not _PATTERNS[kind].fullmatch(value):
        raise MessageError(f"field {key} ({desc}) holds characters not allowed in type {kind}")


def _check_mti(mti: object) -> str:
    if not isinstance(mti, str) or mti not in _MTIS:
        raise MessageError(f"unknown message type {mti!r}")
    return mti
