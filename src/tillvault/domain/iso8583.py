"""The ISO 8583 dialect TillVault speaks: the field spec, message builders, encode and decode.

Pure: no I/O. Messages are plain ``dict[str, str]``: the key ``"t"`` holds the MTI and the
keys ``"2"`` .. ``"128"`` hold field values as text, exactly as they travel (fixed fields at
their full width). Amounts given to builders are ``int`` minor units; the currency is the
ISO 4217 numeric code as a string (``"156"``). ``docs/iso8583.md`` documents every field.

Wire form: ISO 8583:1987, ASCII throughout, the bitmaps as 16 uppercase hexadecimal
characters (readable in logs, and the whole message stays printable), variable fields with
ASCII ``LL`` / ``LLL`` length prefixes. Decoding is strict: only the fields below, each checked
against its type, and the bytes must be the canonical encoding of what they decode to.
Every failure raises :class:`~tillvault.errors.MessageError` and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final, NotRequired, TypedDict, Unpack

import iso8583

from tillvault.errors import MessageError

__all__ = [
    "ECHO",
    "MTI_ADVICE",
    "MTI_BATCH_UPLOAD",
    "MTI_FINANCIAL",
    "MTI_NETWORK",
    "MTI_REVERSAL",
    "MTI_REVERSAL_REPEAT",
    "MTI_SETTLEMENT",
    "PROC_REFUND",
    "PROC_SALE",
    "PROC_SETTLE_AFTER_UPLOAD",
    "PROC_SETTLE_FIRST",
    "PROC_VOID",
    "REQUEST_MTIS",
    "REQUIRED_FIELDS",
    "RESPONSE_CODES",
    "SIGN_OFF",
    "SIGN_ON",
    "SPEC",
    "BatchTotals",
    "CardArgs",
    "advice_request",
    "batch_upload_request",
    "decode",
    "echo_request",
    "encode",
    "field_int",
    "is_approved",
    "mask_pan",
    "missing_fields",
    "redacted",
    "refund_request",
    "response_for",
    "response_mti",
    "response_text",
    "reversal_request",
    "sale_request",
    "salvage",
    "settlement_request",
    "sign_off_request",
    "sign_on_request",
    "terminal_id_field",
    "void_request",
]

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


# --- Encode / decode ----------------------------------------------------------------------------


def encode(fields: Mapping[str, str]) -> bytes:
    """Encode a message dict (``"t"`` plus field numbers) to wire bytes.

    The bitmaps are computed; a ``"p"`` or ``"1"`` key in ``fields`` is ignored.

    :raises MessageError: an unknown MTI or field, a value of the wrong type or length.
    """
    # The fast path writes the bytes itself from a layout cached per set of keys; anything it
    # does not accept goes to _encode_checked, which decides (and words the error).
    if isinstance(fields, dict):
        mti = fields.get("t")
        keys = tuple(fields)
        layout = _ENCODE_LAYOUTS.get(keys) or _encode_layout(keys)
        if layout is not None and isinstance(mti, str) and mti in _MTIS:
            parts = [mti, layout[0]]
            append = parts.append
            for key, prefix, check in layout[1]:
                value = fields[key]
                if not isinstance(value, str) or not check(value):
                    break
                if prefix:
                    append(_LENGTH_FORMATS[prefix] % len(value))
                append(value)
            else:
                return "".join(parts).encode("ascii")
    return _encode_checked(fields)


def _encode_checked(fields: Mapping[str, str]) -> bytes:
    """:func:`encode` by way of pyiso8583, every field checked first (raises naming the fault)."""
    if not isinstance(fields, Mapping):
        raise MessageError(f"a message must be a mapping, got {type(fields).__name__}")
    doc: dict[str, str] = {"t": _check_mti(fields.get("t"))}
    valid = _VALID
    for key, value in fields.items():
        if key in ("t", "p", "1"):
            continue
        check = valid.get(key)
        if check is None or not isinstance(value, str) or not check(value):
            _check_value(key, value)  # raises, naming the field and the reason
        doc[key] = value
    try:
        raw, _ = iso8583.encode(doc, SPEC)
    except Exception as exc:  # pyiso8583 raises EncodeError; anything else is the same fault
        raise MessageError(f"cannot encode ISO 8583 message: {exc}") from None
    return bytes(raw)


def decode(data: bytes) -> dict[str, str]:
    """Decode wire bytes to a message dict (``"t"`` plus field numbers; bitmaps dropped).

    :raises MessageError: the bytes are not a canonical TillVault ISO 8583 message (truncated,
        unknown MTI or field, bad length prefix, wrong characters, trailing bytes...).
    """
    if isinstance(data, bytes):
        message = _decode_canonical(data)
        if message is not None:
            return message
    return _decode_checked(data)


def _decode_canonical(data: bytes) -> dict[str, str] | None:
    """The message when ``data`` is canonical, read in one pass; None for anything else.

    Accepts only what :func:`_decode_checked` accepts, with the same result
    (tests/domain/test_iso8583_strict.py compares them); None leaves the verdict and its
    wording to it. Any non-ASCII byte is refused there too (MTI, bitmap, prefix or field).
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    mti = text[:4]
    if mti not in _MTIS:
        return None
    # Field 1 (a secondary bitmap) is present when the primary's first hex digit is 8 or more.
    end = 36 if text[4:5] in _HIGH_HEX else 20
    bitmaps = text[4:end]
    layout = _DECODE_LAYOUTS.get(bitmaps) or _decode_layout(bitmaps)
    if layout is None:
        return None
    message = {"t": mti}
    position = end
    for key, prefix, length, check in layout:
        if prefix:
            head = text[position : position + prefix]
            if len(head) != prefix or not head.isdigit():
                return None
            position += prefix
            length = int(head)
        value = text[position : position + length]
        if len(value) != length or not check(value):
            return None
        position += length
        message[key] = value
    return message if position == len(text) else None


def _decode_checked(data: bytes) -> dict[str, str]:
    """:func:`decode` by way of pyiso8583, with every check spelled out (raises naming the fault)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MessageError(f"a message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 20:
        raise MessageError(f"message too short ({len(data)} bytes): no MTI and bitmap")
    try:
        head = data[:4].decode("ascii")
    except UnicodeDecodeError:
        raise MessageError("message type is not ASCII") from None
    _check_mti(head)
    bitmaps_canonical = _check_bitmaps(data)
    try:
        decoded, encoded = iso8583.decode(data, SPEC)
    except Exception as exc:  # DecodeError and anything pyiso8583 lets slip
        raise MessageError(f"cannot decode ISO 8583 message: {exc}") from None
    # pyiso8583 has read each field at its fixed width or within its maximum length and refused
    # trailing bytes; left to check: each field's characters, then that the bytes are the form
    # encode() writes (checked directly, not by encoding again).
    message: dict[str, str] = {}
    valid = _VALID
    for key, value in decoded.items():
        if key == "p" or key == "1":
            continue
        if key != "t" and not valid[key](value):
            _check_value(key, value)  # raises, naming the field
        message[key] = value
    # Given the bitmap checks, the bytes differ from encode(message) only where field 1 announces
    # a secondary bitmap naming no field, or a length prefix is not plain digits: int() also
    # reads " 9", "9 ", "+9", "-0" and "0_9".
    canonical = bitmaps_canonical
    for key in _VARIABLE_FIELDS:
        if key in encoded and not encoded[key]["len"].isdigit():
            canonical = False
    if not canonical:
        raise MessageError("message is not canonically encoded (length prefix or bitmap form)")
    return message


# --- Layouts for the fast paths, cached (a peer's odd bitmaps cannot grow the caches unbounded) --

_LAYOUT_CACHE_SIZE: Final = 512
_LENGTH_FORMATS: Final = {2: "%02d", 3: "%03d"}
_HIGH_HEX: Final = frozenset("89ABCDEF")
# Data fields by number, each with (prefix digits, maximum length, value check).
_BY_NUMBER: Final = sorted((int(key), key, _FIELDS[key][1], _FIELDS[key][2], _VALID[key]) for key in _DATA_FIELDS)
_EncodeLayout = tuple[str, tuple[tuple[str, int, Callable[[str], object]], ...]]
_DecodeLayout = tuple[tuple[str, int, int, Callable[[str], object]], ...]
_ENCODE_LAYOUTS: dict[tuple[str, ...], _EncodeLayout] = {}
_DECODE_LAYOUTS: dict[str, _DecodeLayout] = {}


def _remember(cache: dict[Any, Any], key: object, layout: object) -> None:
    if len(cache) >= _LAYOUT_CACHE_SIZE:
        cache.clear()
    cache[key] = layout


def _encode_layout(keys: tuple[str, ...]) -> _EncodeLayout | None:
    """The bitmaps (hex) and the fields in wire order for a message with ``keys``; None when a
    key is outside the spec or repeated (the checked path then decides)."""
    data_keys = set(keys) - {"t", "p", "1"}
    if not data_keys <= _DATA_FIELDS:
        return None
    fields = [entry for entry in _BY_NUMBER if entry[1] in data_keys]
    primary = _mask(number for number, *_ in fields if number <= 64)
    secondary = _mask(number - 64 for number, *_ in fields if number > 64)
    bitmaps = f"{primary | _BIT_SECONDARY:016X}{secondary:016X}" if secondary else f"{primary:016X}"
    layout = (bitmaps, tuple((key, prefix, check) for _, key, prefix, _, check in fields))
    _remember(_ENCODE_LAYOUTS, keys, layout)
    return layout


def _decode_layout(bitmaps: str) -> _DecodeLayout | None:
    """The fields in wire order that canonical ``bitmaps`` (16 or 32 hex digits) name; None when
    they are not canonical (lowercase, unknown fields, field 1 naming nothing...)."""
    if not _HEX16.fullmatch(bitmaps[:16].encode()):
        return None
    primary = int(bitmaps[:16], 16)
    has_secondary = bool(primary & _BIT_SECONDARY)
    if has_secondary != (len(bitmaps) == 32):
        return None
    secondary = 0
    if has_secondary:
        if not _HEX16.fullmatch(bitmaps[16:].encode()):
            return None
        secondary = int(bitmaps[16:], 16)
        if secondary == 0:
            return None
    if primary & ~_PRIMARY_ALLOWED or secondary & ~_SECONDARY_ALLOWED:
        return None
    present = (primary & ~_BIT_SECONDARY) << 64 | secondary  # bit 128 - n for field n
    layout = tuple(
        (key, prefix, length, check)
        for number, key, prefix, length, check in _BY_NUMBER
        if present >> (128 - number) & 1
    )
    _remember(_DECODE_LAYOUTS, bitmaps, layout)
    return layout


def _check_bitmaps(data: bytes) -> bool:
    """Reject a bitmap that names a field outside the spec (before pyiso8583 looks it up).

    :returns: False when field 1 announces a secondary bitmap that names no field (encode
        never writes one), True otherwise.
    :raises MessageError: a bitmap is not 16 uppercase hex characters, or names a field
        outside the spec.
    """
    if not _HEX16.fullmatch(data[4:20]):
        raise MessageError("primary bitmap is not 16 uppercase hexadecimal characters")
    primary = int(data[4:20], 16)
    secondary = 0
    if primary & _BIT_SECONDARY:
        if not _HEX16.fullmatch(data[20:36]):
            raise MessageError("secondary bitmap is not 16 uppercase hexadecimal characters")
        secondary = int(data[20:36], 16)
    if primary & ~_PRIMARY_ALLOWED or secondary & ~_SECONDARY_ALLOWED:
        present = [n for n in range(1, 65) if primary >> (64 - n) & 1]
        present += [64 + n for n in range(1, 65) if secondary >> (64 - n) & 1]
        number = next(n for n in present if n != 1 and str(n) not in _DATA_FIELDS)
        raise MessageError(f"bitmap names field {number}, which is not part of the TillVault spec")
    return not primary & _BIT_SECONDARY or secondary != 0


def salvage(data: bytes) -> dict[str, str]:
    """Read what can be read of a malformed message: the MTI, STAN (11) and terminal id (41).

    Used by the host to answer garbage with a format-error response. Never raises; returns
    only the keys it could read and check (``"t"`` only when it is a request MTI).
    """
    out: dict[str, str] = {}
    try:
        raw = bytes(data)
        mti = raw[:4].decode("ascii")
        if mti not in REQUEST_MTIS:
            return out
        out["t"] = mti
        try:
            partial, _ = iso8583.decode(raw, SPEC)
        except iso8583.DecodeError as exc:
            partial = exc.doc_dec
        for key in ("11", "41"):
            value = partial.get(key)
            if value is None:
                continue
            try:
                _check_value(key, value)
            except MessageError:
                continue
            out[key] = value
    except Exception:  # best effort by definition: a bitmap naming unknown fields, etc.
        return out
    return out


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
    """The PAN with all but the first 6 and last 4 digits replaced by ``*``."""
    if len(pan) <= 10:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


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
