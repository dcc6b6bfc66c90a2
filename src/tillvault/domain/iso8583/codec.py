"""Encode and decode: the one-pass path for canonical messages, pyiso8583's checked path for the rest.

Every failure raises :class:`~tillvault.errors.MessageError` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import iso8583

from tillvault.domain.iso8583.spec import (
    _BIT_SECONDARY,
    _DATA_FIELDS,
    _FIELDS,
    _HEX16,
    _MTIS,
    _PRIMARY_ALLOWED,
    _SECONDARY_ALLOWED,
    _VALID,
    _VARIABLE_FIELDS,
    REQUEST_MTIS,
    SPEC,
    _check_mti,
    _check_value,
    _mask,
)
from tillvault.errors import MessageError

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
