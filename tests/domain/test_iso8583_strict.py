"""The ISO 8583 codec's strictness: every non-canonical form is refused, exactly as a full re-encode would.

``encode`` and ``decode`` check fields with precompiled patterns and check the canonical form
directly instead of re-encoding. These tests pin each rejection path and compare both functions,
on generated near-valid wire bytes, with a reference written the slow, obvious way (pyiso8583,
``_check_value`` on every field, then a full re-encode compared byte for byte).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import iso8583
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tillvault.domain import iso8583 as iso
from tillvault.errors import MessageError

_ALPHABETS = {
    "n": "0123456789",
    "an": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
    "hex": "0123456789ABCDEF",
    "x+n": "CD0123456789",
}
# Characters some field type refuses: controls, DEL, lowercase hex, signs, a non-ASCII letter.
_NOISE = "\x00\x1f\x7f aZf+-_\u00e9"
_MTIS = sorted(iso.REQUEST_MTIS | iso._RESPONSE_MTIS)
_NUMBERS = sorted(int(k) for k in iso._DATA_FIELDS)


# --- the reference: how decode and encode worked before they were made fast ----------------------


def _reference_check_bitmaps(data: bytes) -> None:
    if not iso._HEX16.fullmatch(data[4:20]):
        raise MessageError("primary bitmap is not 16 uppercase hexadecimal characters")
    primary = int(data[4:20], 16)
    present = [n for n in range(1, 65) if primary >> (64 - n) & 1]
    if 1 in present:
        if not iso._HEX16.fullmatch(data[20:36]):
            raise MessageError("secondary bitmap is not 16 uppercase hexadecimal characters")
        secondary = int(data[20:36], 16)
        present += [64 + n for n in range(1, 65) if secondary >> (64 - n) & 1]
    for number in present:
        if number != 1 and str(number) not in iso._DATA_FIELDS:
            raise MessageError(f"bitmap names field {number}, which is not part of the TillVault spec")


def _reference_encode(fields: Mapping[str, Any]) -> bytes:
    doc = {"t": iso._check_mti(fields.get("t"))}
    for key, value in fields.items():
        if key in ("t", "p", "1"):
            continue
        iso._check_value(key, value)
        doc[key] = value
    return bytes(iso8583.encode(doc, iso.SPEC)[0])


def _reference_decode(data: bytes) -> dict[str, str]:
    if len(data) < 20:
        raise MessageError(f"message too short ({len(data)} bytes): no MTI and bitmap")
    try:
        head = data[:4].decode("ascii")
    except UnicodeDecodeError:
        raise MessageError("message type is not ASCII") from None
    iso._check_mti(head)
    _reference_check_bitmaps(data)
    try:
        decoded, _ = iso8583.decode(data, iso.SPEC)
    except Exception as exc:
        raise MessageError(f"cannot decode ISO 8583 message: {exc}") from None
    message = {k: v for k, v in decoded.items() if k not in ("p", "1")}
    for key, value in message.items():
        if key != "t":
            iso._check_value(key, value)
    if _reference_encode(message) != data:
        raise MessageError("message is not canonically encoded (length prefix or bitmap form)")
    return message


def _outcome(function: Callable[[Any], Any], argument: Any) -> tuple[str, Any]:
    """``("ok", result)`` or ``("error", message)``; any other exception fails the test."""
    try:
        return "ok", function(argument)
    except MessageError as exc:
        return "error", str(exc)


# --- strategies ---------------------------------------------------------------------------------


@st.composite
def _field_text(draw: st.DrawFn, key: str) -> str:
    """A value for field ``key``: valid most of the time, else one wrong character or a wrong length."""
    kind, prefix, length, _ = iso._FIELDS[key]
    size = length if prefix == 0 else draw(st.integers(0, min(length, 30)))
    if kind == "x+n":
        value = draw(st.sampled_from("CD")) + draw(st.text(_ALPHABETS["n"], min_size=size - 1, max_size=size - 1))
    else:
        value = draw(st.text(_ALPHABETS[kind], min_size=size, max_size=size))
    spoil = draw(st.integers(0, 9))
    if spoil == 0 and value:
        at = draw(st.integers(0, len(value) - 1))
        value = value[:at] + draw(st.sampled_from(_NOISE)) + value[at + 1 :]
    elif spoil == 1:
        value = value[:-1] if draw(st.booleans()) else value + draw(st.sampled_from(_ALPHABETS[kind]))
    return value


@st.composite
def _wire_bytes(draw: st.DrawFn) -> bytes:
    """Bytes near a canonical message: a known MTI and spec fields, with the odd flaw in the
    bitmaps (field 1 with an empty secondary, lowercase), a length prefix (" 9", "+9", "0_9",
    "-0"...), a field's characters or length, or trailing bytes."""
    numbers = sorted(draw(st.sets(st.sampled_from(_NUMBERS), max_size=8)))
    primary = sum(1 << (64 - n) for n in numbers if n <= 64)
    secondary = sum(1 << (128 - n) for n in numbers if n > 64)
    if secondary or draw(st.integers(0, 9)) == 0:
        primary |= 1 << 63
    bitmaps = f"{primary:016X}" + (f"{secondary:016X}" if primary >> 63 else "")
    if draw(st.integers(0, 19)) == 0:
        bitmaps = bitmaps.lower()
    parts = [draw(st.sampled_from(_MTIS)), bitmaps]
    for number in numbers:
        _, prefix, _, _ = iso._FIELDS[str(number)]
        value = draw(_field_text(str(number)))
        if prefix:
            canonical = f"{len(value):0{prefix}d}"
            odd = draw(st.text(" +-_0123456789", min_size=prefix, max_size=prefix))
            parts.append(odd if draw(st.integers(0, 3)) == 0 else canonical)
        parts.append(value)
    parts.append(draw(st.sampled_from(["", "", "", "", "0", "X", "\x00"])))
    return "".join(parts).encode("utf-8")


@st.composite
def _messages(draw: st.DrawFn) -> dict[str, Any]:
    """Message dicts for encode: spec fields with valid or flawed values, now and then a key
    outside the spec, a value that is not text, or a bitmap key that encode ignores."""
    keys = draw(st.sets(st.sampled_from(sorted(iso._DATA_FIELDS)), max_size=10))
    message: dict[str, Any] = {"t": draw(st.sampled_from([*_MTIS, "0201", "", 200]))}
    message.update({k: draw(_field_text(k)) for k in keys})
    extra = draw(st.integers(0, 9))
    if extra == 0:
        message[draw(st.sampled_from(["5", "65", "0", "x", "p", "1"]))] = "123"
    elif extra == 1 and keys:
        message[min(keys)] = draw(st.sampled_from([12, None, b"12", 1.5]))
    return message


# --- equivalence with the reference -------------------------------------------------------------


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(_wire_bytes())
def test_decode_agrees_with_a_full_re_encode_check(data: bytes) -> None:
    assert _outcome(iso.decode, data) == _outcome(_reference_decode, data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_messages())
def test_encode_agrees_with_checking_every_field_one_by_one(message: dict[str, Any]) -> None:
    assert _outcome(iso.encode, message) == _outcome(_reference_encode, message)


@settings(max_examples=500)
@given(st.sampled_from(sorted(iso._FIELDS)), st.data())
def test_precompiled_field_pattern_accepts_exactly_what_check_value_accepts(key: str, data: st.DataObject) -> None:
    _, _, length, _ = iso._FIELDS[key]
    size = data.draw(st.integers(0, length + 2))
    alphabet = data.draw(st.sampled_from([*_ALPHABETS.values(), _NOISE + _ALPHABETS["n"]]))
    value = data.draw(st.text(alphabet, min_size=size, max_size=size))
    accepted = _outcome(lambda v: iso._check_value(key, v), value)[0] == "ok"
    assert bool(iso._VALID[key](value)) == accepted


def _valid_value(kind: str, size: int) -> str:
    return "D" + "9" * (size - 1) if kind == "x+n" else {"n": "1", "an": "a", "ans": "~", "hex": "F"}[kind] * size


@pytest.mark.parametrize("key", sorted(iso._FIELDS))
def test_precompiled_field_pattern_agrees_on_every_character_and_length_edge(key: str) -> None:
    kind, _, length, _ = iso._FIELDS[key]
    bases = [_valid_value(kind, size) for size in sorted({1, 2, length - 1, length, length + 1})]
    spoilt = [base[:at] + chr(c) + base[at + 1 :] for base in bases for at in {0, len(base) - 1} for c in range(0x100)]
    values = ["", *bases, *spoilt]
    for value in values:
        accepted = _outcome(lambda v: iso._check_value(key, v), value)[0] == "ok"
        assert bool(iso._VALID[key](value)) == accepted, (key, value)


# --- each rejection path, by hand -----------------------------------------------------------------

_PAN9 = iso.encode({"t": "0200", "2": "411111111"})  # ... "09" + "411111111"
_BATCH = iso.encode({"t": "0200", "60": "000006"})  # ... "006" + "000006"
_NO_PAN = iso.encode({"t": "0200", "2": ""})  # ... "00"
_SECONDARY = iso.encode({"t": "0800", "89": "0" * 16, "90": "0" * 42})  # secondary bitmap "...C000000000"
_TERMINAL = iso.encode({"t": "0800", "41": "T000000X"})


def test_the_hand_built_messages_are_canonical_to_begin_with() -> None:
    for raw in (_PAN9, _BATCH, _NO_PAN, _SECONDARY, _TERMINAL):
        assert iso.encode(iso.decode(raw)) == raw
    assert _PAN9.endswith(b"09411111111") and _BATCH.endswith(b"006000006") and _NO_PAN.endswith(b"00")
    assert _SECONDARY[20:36] == b"000000C000000000"  # fields 89 and 90: a letter to lowercase


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # length prefixes pyiso8583 reads as numbers, but not in the one form encode writes
        (_PAN9.replace(b"09411", b"+9411"), "not canonically encoded"),
        (_PAN9.replace(b"09411", b"9 411"), "not canonically encoded"),
        (_PAN9.replace(b"09411", b" 9411"), "not canonically encoded"),
        (_BATCH.replace(b"006000006", b"+06000006"), "not canonically encoded"),
        (_BATCH.replace(b"006000006", b"0_6000006"), "not canonically encoded"),
        (_BATCH.replace(b"006000006", b"6  000006"), "not canonically encoded"),
        (_BATCH.replace(b"006000006", b"-06000006"), "cannot decode"),
        (_NO_PAN[:-2] + b"-0", "not canonically encoded"),
        (_NO_PAN[:-2] + b"+0", "not canonically encoded"),
        (_NO_PAN[:-2] + b" 0", "not canonically encoded"),
        (_PAN9.replace(b"09411", b"0A411"), "cannot decode"),
        # bitmaps
        (b"0800" + b"8020000000000000" + b"0" * 16 + b"000001", "not canonically encoded"),  # field 1, no 65-128
        (_SECONDARY[:20] + _SECONDARY[20:36].lower() + _SECONDARY[36:], "secondary bitmap"),
        (b"0800" + b"8020000000000000" + b"00", "secondary bitmap"),  # truncated secondary bitmap
        (b"0800" + b"8000000000000000" + b"8000000000000000", "field 65"),  # a tertiary bitmap
        (b"0800" + b"8000000000000000" + b"0000000010000000", "field 100"),
        (b"0800" + b"8800000000000000" + b"0000000010000000", "field 5"),  # the lowest unknown field is named
        (b"0200" + b"3000000000000000" + b"000000", "cannot decode"),  # names field 4, which is absent
        (b"0200" + b"2000000000000000" + b"000000000000001234", "Extra data"),  # field 4 present, not named
        # fields and trailing bytes
        (_PAN9 + b"0", "Extra data"),
        (_PAN9[:-1], "cannot decode"),  # truncated field
        (_BATCH[:-7], "cannot decode"),  # truncated length prefix
        (_TERMINAL.replace(b"X", b"\x00"), "field 41 .* not allowed"),
        (_TERMINAL.replace(b"X", b"\x7f"), "field 41 .* not allowed"),
        (_TERMINAL.replace(b"X", b"\xe9"), "cannot decode"),
        (b"0200" + b"4000000000800000" + b"+9" + b"411111111" + b"T000000\x01", "field 41"),  # chars first
        (iso.encode({"t": "0800", "97": "D" + "0" * 16}).replace(b"D0", b"X0"), "field 97 .* type x\\+n"),
    ],
)
def test_decode_refuses_non_canonical_or_malformed_bytes(data: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        iso.decode(data)
    assert _outcome(_reference_decode, data)[0] == "error"


def test_decode_accepts_empty_variable_fields_and_fields_above_64() -> None:
    message = {"t": "0500", "2": "", "60": "", "63": "", "97": "C" + "0" * 16, "128": "0123456789ABCDEF"}
    assert iso.decode(iso.encode(message)) == message


# --- the one-pass paths (no pyiso8583) against the checked ones ----------------------------------


@settings(max_examples=700, suppress_health_check=[HealthCheck.too_slow])
@given(_wire_bytes())
def test_one_pass_decode_accepts_exactly_the_canonical_messages_with_the_same_result(data: bytes) -> None:
    expected = _outcome(_reference_decode, data)
    fast = iso._decode_canonical(data)
    assert (fast is not None) == (expected[0] == "ok")
    if fast is not None:
        assert fast == expected[1]
        assert list(fast) == list(iso._decode_checked(data))  # same keys, same order


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_messages())
def test_one_pass_encode_writes_the_bytes_pyiso8583_writes(message: dict[str, Any]) -> None:
    # a dict takes the one-pass path; any other mapping the checked one
    assert _outcome(iso.encode, message) == _outcome(iso._encode_checked, message)
    assert _outcome(iso.encode, message) == _outcome(_reference_encode, message)


def test_the_builders_messages_take_the_one_pass_paths_both_ways() -> None:
    sale = iso.sale_request(
        pan="4111111111111111",
        expiry="2712",
        amount=1234,
        currency="156",
        stan=42,
        terminal_id="T1",
        merchant_id="M1",
        batch=3,
        invoice=7,
    )
    totals = iso.BatchTotals(sales_count=2, sales_amount=300, refunds_count=1, refunds_amount=500)
    settle = iso.settlement_request(totals=totals, stan=43, terminal_id="T1", merchant_id="M1", batch=3, currency="156")
    reply = iso.response_for(sale, response_code="00", rrn="000000000001", auth_code="123456", message="approved")
    for message in (sale, settle, reply):
        raw = iso.encode(message)
        assert raw == _reference_encode(message)
        assert iso._decode_canonical(raw) == message == iso.decode(raw)


def test_layout_caches_stay_bounded_whatever_bitmaps_a_peer_sends() -> None:
    numbers = [n for n in _NUMBERS if n <= 64]
    for i in range(2 * iso._LAYOUT_CACHE_SIZE):
        chosen = [n for bit, n in enumerate(numbers) if i >> bit & 1]
        message = {
            "t": "0800",
            **{
                str(n): _valid_value(iso._FIELDS[str(n)][0], 1 if iso._FIELDS[str(n)][1] else iso._FIELDS[str(n)][2])
                for n in chosen
            },
        }
        assert iso.decode(iso.encode(message)) == message
    assert len(iso._DECODE_LAYOUTS) <= iso._LAYOUT_CACHE_SIZE
    assert len(iso._ENCODE_LAYOUTS) <= iso._LAYOUT_CACHE_SIZE
