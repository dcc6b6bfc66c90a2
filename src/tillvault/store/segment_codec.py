"""Columnar encoding of transaction records inside a sealed segment block (format version 1).

Pure: bytes in, records out; no I/O, no crypto, no compression of the whole block (the caller
compresses and encrypts). ``docs/segment-format.md`` describes the bytes; this module is the
reference implementation.

A block holds the columns of the hot tier's ``transactions`` table (:data:`COLUMNS`, without
``checksum``) one after another. Per column the encoder tries the encodings that apply and
keeps the one that compresses smallest (a fast zstd pass as the judge):

* integers: null bitmap, then zigzag values *plain*, *delta* from the previous row, or *minus
  another column* (``updated_ms - created_ms``...), packed as fixed-width little-endian byte
  planes (width 1/2/4/8; all low bytes, then all second bytes... so zstd sees runs of zeros) or
  LEB128 varints for integers beyond 64 bits;
* text: a dictionary in first-appearance order plus one code per row (0 = null, 1 = the next
  new dictionary value, 2 + k = dictionary value k), so a value seen for the first time costs
  one small code and repeats cost an index. The dictionary itself is stored as UTF-8, as raw
  bytes when every value is lowercase hex of one length (card tokens), as integers when every
  value is decimal digits of one width (RRN, auth code), or split into head, stars and tail
  for masked PANs;
* text that is a function of the card token within the block (masked PAN, brand, card type,
  member reference) may instead be stored once per distinct token;
* ``extra`` (any JSON value) as its JSON text, then as text.

Decoding is exact: ``None`` stays distinct from ``""`` and ``0``, integers of any size and any
Unicode text (lone surrogates included) come back as they went in.
"""

from __future__ import annotations

import collections
import itertools
import json
import re
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import zstandard

from tillvault.errors import InvalidInput
from tillvault.store.records import TX_COLUMNS

#: The columns of a sealed record, in block order (the ``transactions`` table without ``checksum``).
COLUMNS: tuple[str, ...] = TX_COLUMNS
INT_COLUMNS = frozenset({"invoice", "batch", "stan", "amount", "original_invoice", "fee", "created_ms", "updated_ms"})
JSON_COLUMNS = frozenset({"extra"})
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
#: Integer columns also tried as the difference from an earlier column of the same row.
_INT_REFS = {"stan": "invoice", "original_invoice": "invoice", "updated_ms": "created_ms"}
#: Integer columns also tried as the residual from a per-class rate of another column:
#: ``fee - (amount * bp + 5000) // 10000`` with ``bp`` (basis points) learnt per (brand, card type).
_RATES = {"fee": ("amount", ("brand", "card_type"))}
#: Text columns also tried as a function of an earlier text column (stored once per parent value).
_PARENTS = {"masked_pan": "card_token", "brand": "card_token", "card_type": "card_token", "customer_ref": "card_token"}

# Tags (the byte values are part of the format).
NULLS_NONE, NULLS_ALL, NULLS_BITMAP = 0, 1, 2
INT_PLAIN, INT_DELTA, INT_MINUS, INT_RATE = 0, 1, 2, 3
TEXT_DICT, TEXT_DEPENDENT = 0, 1
VAL_UTF8, VAL_HEX, VAL_DIGITS, VAL_MASKED = 0, 1, 2, 3
WIDTH_VARINT = 0

_TYPECODES = {w: next(tc for tc in "BHILQ" if array(tc).itemsize == w) for w in (1, 2, 4, 8)}
_BIG_ENDIAN = sys.byteorder == "big"
_MASKED = re.compile(r"([0-9]*)(\*+)([0-9]*)\Z")
_JUDGE_LEVEL = 3
#: Longest digit run stored as an integer (Python refuses int <-> str beyond 4,300 digits).
_MAX_DIGITS = 1000


# -- primitives ------------------------------------------------------------------------------
def _zz(v: int) -> int:
    return v << 1 if v >= 0 else ((-v) << 1) - 1


def _delta_zz(values: Sequence[int]) -> list[int]:
    """The first value, then each row's difference from the previous one, zigzagged."""
    return [_zz(values[0])] + [_zz(b - a) for a, b in itertools.pairwise(values)]


def _put_varint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put_uints(out: bytearray, values: Sequence[int]) -> None:
    """Count, width, then the values: byte planes of fixed width, or varints beyond 64 bits."""
    n = len(values)
    _put_varint(out, n)
    top = max(values) if n else 0
    width = next((w for w in (1, 2, 4, 8) if top < 1 << (8 * w)), WIDTH_VARINT)
    out.append(width)
    if width == WIDTH_VARINT:
        for v in values:
            _put_varint(out, v)
        return
    arr = array(_TYPECODES[width], values)
    if _BIG_ENDIAN:
        arr.byteswap()
    raw = arr.tobytes()
    if width == 1:
        out += raw
    else:
        for plane in range(width):
            out += raw[plane::width]


class _Reader:
    """Sequential reader over a block; every overrun raises ``ValueError``."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise ValueError("block ends early")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise ValueError("block ends early")
        chunk = self.buf[self.pos : end]
        self.pos = end
        return chunk

    def uints(self) -> list[int]:
        n = self.varint()
        width = self.byte()
        if width == WIDTH_VARINT:
            return [self.varint() for _ in range(n)]
        if width not in _TYPECODES:
            raise ValueError(f"unknown integer width {width}")
        data = self.take(n * width)
        if width == 1:
            return list(data)
        buf = bytearray(n * width)
        for plane in range(width):
            buf[plane::width] = data[plane * n : (plane + 1) * n]
        arr = array(_TYPECODES[width])
        arr.frombytes(bytes(buf))
        if _BIG_ENDIAN:
            arr.byteswap()
        return arr.tolist()


def _smallest(candidates: list[bytes], judge: Callable[[bytes], int]) -> bytes:
    if len(candidates) == 1:
        return candidates[0]
    return min(candidates, key=judge)


# -- integer columns -------------------------------------------------------------------------
def _nulls(out: bytearray, values: Sequence[Any]) -> list[Any]:
    present = [v for v in values if v is not None]
    if not present:
        out.append(NULLS_ALL)
    elif len(present) == len(values):
        out.append(NULLS_NONE)
    else:
        out.append(NULLS_BITMAP)
        bitmap = bytearray((len(values) + 7) // 8)
        for i, v in enumerate(values):
            if v is not None:
                bitmap[i >> 3] |= 1 << (i & 7)
        out += bitmap
    return present


def _read_nulls(r: _Reader, n: int) -> list[bool] | None:
    """Row presence flags; ``None`` when every row has a value."""
    tag = r.byte()
    if tag == NULLS_NONE:
        return None
    if tag == NULLS_ALL:
        return [False] * n
    if tag != NULLS_BITMAP:
        raise ValueError(f"unknown null tag {tag}")
    bitmap = r.take((n + 7) // 8)
    return [bool((bitmap[i >> 3] >> (i & 7)) & 1) for i in range(n)]


def _encode_ints(name: str, values: list[Any], columns: dict[str, list[Any]], judge: Callable[[bytes], int]) -> bytes:
    head = bytearray()
    present = _nulls(head, values)
    if not present:
        return bytes(head)
    candidates = []
    plain = bytearray([INT_PLAIN])
    _put_uints(plain, [_zz(v) for v in present])
    candidates.append(bytes(plain))
    if len(present) > 1:
        delta = bytearray([INT_DELTA])
        _put_uints(delta, _delta_zz(present))
        candidates.append(bytes(delta))
    ref_name = _INT_REFS.get(name)
    if ref_name is not None:
        ref = columns[ref_name]
        pairs = [(v, w) for v, w in zip(values, ref, strict=True) if v is not None]
        if all(w is not None for _, w in pairs):
            minus = bytearray([INT_MINUS, _INDEX[ref_name]])
            _put_uints(minus, [_zz(v - w) for v, w in pairs])
            candidates.append(bytes(minus))
    if name in _RATES:
        rate = _rate_candidate(name, values, columns)
        if rate is not None:
            candidates.append(rate)
    return bytes(head) + _smallest(candidates, judge)


def _rate_candidate(name: str, values: list[Any], columns: dict[str, list[Any]]) -> bytes | None:
    """Values as residuals from a rate (basis points) of the reference column, learnt per class."""
    ref_name, class_names = _RATES[name]
    ref = columns[ref_name]
    classes = list(zip(*(columns[c] for c in class_names), strict=True))
    votes: dict[tuple[Any, ...], collections.Counter[int]] = {}
    for v, base, key in zip(values, ref, classes, strict=True):
        if v is not None and base is not None and base >= 1000 and v > 0:
            votes.setdefault(key, collections.Counter())[(v * 20_000 + base) // (2 * base)] += 1
    if not votes:
        return None
    table = {key: counter.most_common(1)[0][0] for key, counter in votes.items()}
    residuals = [
        _zz(v - (0 if base is None else (base * table.get(key, 0) + 5000) // 10_000))
        for v, base, key in zip(values, ref, classes, strict=True)
        if v is not None
    ]
    out = bytearray([INT_RATE, _INDEX[ref_name], len(class_names), *(_INDEX[c] for c in class_names)])
    rates = json.dumps([[*key, bp] for key, bp in table.items()], separators=(",", ":")).encode("ascii")
    _put_varint(out, len(rates))
    out += rates
    _put_uints(out, residuals)
    return bytes(out)


def _decode_ints(r: _Reader, n: int, columns: dict[str, list[Any]], position: int) -> list[Any]:
    flags = _read_nulls(r, n)
    if flags is not None and not any(flags):
        return [None] * n
    m = n if flags is None else sum(flags)
    transform = r.byte()
    if transform == INT_MINUS:
        ref_index = r.byte()
        if ref_index >= position or COLUMNS[ref_index] not in INT_COLUMNS:
            raise ValueError(f"column reference {ref_index} is not an earlier integer column")
        ref = columns[COLUMNS[ref_index]]
    elif transform == INT_RATE:
        ref_index = r.byte()
        class_indexes = [r.byte() for _ in range(r.byte())]
        if (
            ref_index >= position
            or COLUMNS[ref_index] not in INT_COLUMNS
            or any(i >= position or COLUMNS[i] in INT_COLUMNS for i in class_indexes)
        ):
            raise ValueError("rate references are not earlier columns of the right kind")
        ref = columns[COLUMNS[ref_index]]
        table = {tuple(entry[:-1]): int(entry[-1]) for entry in json.loads(r.take(r.varint()))}
        keys = list(zip(*(columns[COLUMNS[i]] for i in class_indexes), strict=True))
    zs = r.uints()
    if len(zs) != m:
        raise ValueError("integer count does not match the null bitmap")
    if transform == INT_PLAIN:
        vals = [(z >> 1) ^ -(z & 1) for z in zs]
    elif transform == INT_DELTA:
        vals = list(itertools.accumulate((z >> 1) ^ -(z & 1) for z in zs))
    elif transform == INT_MINUS:
        refs = ref if flags is None else [w for w, f in zip(ref, flags, strict=True) if f]
        vals = [((z >> 1) ^ -(z & 1)) + w for z, w in zip(zs, refs, strict=True)]
    elif transform == INT_RATE:
        rows = range(n) if flags is None else [i for i, f in enumerate(flags) if f]
        vals = [
            ((z >> 1) ^ -(z & 1)) + (0 if ref[i] is None else (ref[i] * table.get(keys[i], 0) + 5000) // 10_000)
            for z, i in zip(zs, rows, strict=True)
        ]
    else:
        raise ValueError(f"unknown integer transform {transform}")
    if flags is None:
        return vals
    it = iter(vals)
    return [next(it) if f else None for f in flags]


# -- text columns ----------------------------------------------------------------------------
def _dictionary(values: Sequence[str | None]) -> tuple[list[int], list[str]]:
    ids: dict[str, int] = {}
    uniq: list[str] = []
    codes: list[int] = []
    for v in values:
        if v is None:
            codes.append(0)
            continue
        k = ids.get(v)
        if k is None:
            ids[v] = len(uniq)
            uniq.append(v)
            codes.append(1)
        else:
            codes.append(k + 2)
    return codes, uniq


def _digits_payload(out: bytearray, numbers: list[int], judge: Callable[[bytes], int]) -> None:
    plain = bytearray([INT_PLAIN])
    _put_uints(plain, [_zz(v) for v in numbers])
    candidates = [bytes(plain)]
    if len(numbers) > 1:
        delta = bytearray([INT_DELTA])
        _put_uints(delta, _delta_zz(numbers))
        candidates.append(bytes(delta))
    out += _smallest(candidates, judge)


def _read_digits(r: _Reader, width: int, k: int) -> list[str]:
    transform = r.byte()
    zs = r.uints()
    if len(zs) != k:
        raise ValueError("digit count does not match the dictionary")
    if transform == INT_PLAIN:
        nums = [(z >> 1) ^ -(z & 1) for z in zs]
    elif transform == INT_DELTA:
        nums = list(itertools.accumulate((z >> 1) ^ -(z & 1) for z in zs))
    else:
        raise ValueError(f"unknown digits transform {transform}")
    if nums and (min(nums) < 0 or len(str(max(nums))) > width):
        raise ValueError("digit value does not fit its width")
    fmt = f"0{width}d"
    return [format(v, fmt) for v in nums]


def _same_width(uniq: list[str]) -> int | None:
    width = len(uniq[0])
    return width if all(len(s) == width for s in uniq) else None


def _encode_values(uniq: list[str], judge: Callable[[bytes], int]) -> bytes:
    """The dictionary's values with the smallest value encoding that applies."""
    utf8 = bytearray([VAL_UTF8])
    encoded = [s.encode("utf-8", "surrogatepass") for s in uniq]
    _put_uints(utf8, [len(b) for b in encoded])
    utf8 += b"".join(encoded)
    candidates = [bytes(utf8)]
    if not uniq:
        return candidates[0]
    width = _same_width(uniq)
    if width and width % 2 == 0 and all(s.isascii() and _is_lower_hex(s) for s in uniq):
        hexed = bytearray([VAL_HEX])
        _put_varint(hexed, width // 2)
        hexed += b"".join(bytes.fromhex(s) for s in uniq)
        candidates.append(bytes(hexed))
    prefix = _digit_prefix(uniq)
    if prefix is not None:
        # A shared prefix, then decimal digits of one width: "000123" (RRN), "C0001234", "ecr-20250602-00017".
        digits = bytearray([VAL_DIGITS])
        raw = prefix.encode("utf-8", "surrogatepass")
        _put_varint(digits, len(raw))
        digits += raw
        _put_varint(digits, len(uniq[0]) - len(prefix))
        _digits_payload(digits, [int(s[len(prefix) :]) for s in uniq], judge)
        candidates.append(bytes(digits))
    if all(s.isascii() for s in uniq):
        parts = [_MASKED.match(s) for s in uniq]
        if all(parts):
            heads = [p.group(1) for p in parts if p]
            tails = [p.group(3) for p in parts if p]
            hw, tw = len(heads[0]), len(tails[0])
            if tw <= _MAX_DIGITS and all(len(h) == hw for h in heads) and all(len(t) == tw for t in tails):
                masked = bytearray([VAL_MASKED])
                _put_varint(masked, hw)
                _put_varint(masked, tw)
                head_section = _encode_text_dict(heads, judge)
                _put_varint(masked, len(head_section))
                masked += head_section
                _put_uints(masked, [len(p.group(2)) for p in parts if p])
                if tw:
                    _digits_payload(masked, [int(t) for t in tails], judge)
                candidates.append(bytes(masked))
    return _smallest(candidates, judge)


def _digit_prefix(uniq: list[str]) -> str | None:
    """The prefix all values share when each continues with ASCII digits of one width, else ``None``."""
    width = _same_width(uniq)
    if not width or width > _MAX_DIGITS:
        return None
    prefix = uniq[0]
    for s in uniq[1:]:
        while not s.startswith(prefix):
            prefix = prefix[:-1]
    prefix = prefix[: width - 1]  # at least one digit stays in the number
    while prefix and prefix[-1].isascii() and prefix[-1].isdigit():
        prefix = prefix[:-1]  # digits belong to the number: keeps "4000" + "12345" as one integer
    if all(s[len(prefix) :].isascii() and s[len(prefix) :].isdigit() for s in uniq):
        return prefix
    return None


def _is_lower_hex(s: str) -> bool:
    try:
        return bytes.fromhex(s).hex() == s
    except ValueError:
        return False


def _read_values(r: _Reader, k: int) -> list[str]:
    kind = r.byte()
    if kind == VAL_UTF8:
        lengths = r.uints()
        if len(lengths) != k:
            raise ValueError("dictionary length count mismatch")
        blob = r.take(sum(lengths))
        out = []
        pos = 0
        for n in lengths:
            out.append(blob[pos : pos + n].decode("utf-8", "surrogatepass"))
            pos += n
        return out
    if kind == VAL_HEX:
        size = r.varint()
        blob = r.take(size * k)
        return [blob[i : i + size].hex() for i in range(0, size * k, size)] if size else [""] * k
    if kind == VAL_DIGITS:
        prefix = r.take(r.varint()).decode("utf-8", "surrogatepass")
        width = r.varint()
        values = _read_digits(r, width, k)
        return [prefix + d for d in values] if prefix else values
    if kind == VAL_MASKED:
        hw, tw = r.varint(), r.varint()
        heads = _decode_text_dict(_Reader(r.take(r.varint())), k)
        stars = r.uints()
        tails = _read_digits(r, tw, k) if tw else [""] * k
        if len(stars) != k or any(h is None or len(h) != hw or s < 1 for h, s in zip(heads, stars, strict=True)):
            raise ValueError("masked value parts do not fit")
        return [f"{h}{'*' * s}{t}" for h, s, t in zip(heads, stars, tails, strict=True)]
    raise ValueError(f"unknown value encoding {kind}")


def _encode_text_dict(values: Sequence[str | None], judge: Callable[[bytes], int]) -> bytes:
    codes, uniq = _dictionary(values)
    out = bytearray([TEXT_DICT])
    _put_uints(out, codes)
    _put_varint(out, len(uniq))
    if uniq:
        out += _encode_values(uniq, judge)
    return bytes(out)


def _decode_text_dict(r: _Reader, n: int) -> list[str | None]:
    mode = r.byte()
    if mode != TEXT_DICT:
        raise ValueError(f"expected a dictionary text section, found mode {mode}")
    codes = r.uints()
    k = r.varint()
    if len(codes) != n or k > n:
        raise ValueError("text code count mismatch")
    uniq = _read_values(r, k) if k else []
    # Code 1 is "the next new value": new values appear in dictionary order.
    if codes.count(1) != k or (codes and max(codes) > k + 1):
        raise ValueError("text codes do not match the dictionary")
    table: list[str | None] = [None, None, *uniq]
    fresh = iter(range(2, k + 2))
    return [table[next(fresh) if c == 1 else c] for c in codes]


def _parent_slots(parent: Sequence[str | None]) -> dict[str | None, int]:
    """Slot of each parent value: 0 for null, 1 + first-appearance rank for the others."""
    order = dict.fromkeys(parent)
    order.pop(None, None)
    slots: dict[str | None, int] = {None: 0}
    slots.update(zip(order, range(1, len(order) + 1), strict=True))
    return slots


def _encode_text(name: str, values: list[Any], columns: dict[str, list[Any]], judge: Callable[[bytes], int]) -> bytes:
    candidates = [_encode_text_dict(values, judge)]
    parent_name = _PARENTS.get(name)
    if parent_name is not None:
        parent = columns[parent_name]
        slots = _parent_slots(parent)
        child: list[Any] = [None] * len(slots)
        filled = [False] * len(slots)
        functional = True
        for p, v in zip(parent, values, strict=True):
            s = slots[p]
            if not filled[s]:
                child[s], filled[s] = v, True
            elif child[s] != v or (child[s] is None) != (v is None):
                functional = False
                break
        if functional:
            dep = bytearray([TEXT_DEPENDENT, _INDEX[parent_name]])
            dep += _encode_text_dict(child, judge)
            candidates.append(bytes(dep))
    return _smallest(candidates, judge)


def _decode_text(
    r: _Reader, n: int, columns: dict[str, list[Any]], position: int, slot_cache: dict[int, Any] | None = None
) -> list[Any]:
    mode = r.buf[r.pos] if r.pos < len(r.buf) else -1
    if mode == TEXT_DICT:
        return _decode_text_dict(r, n)
    if mode != TEXT_DEPENDENT:
        raise ValueError(f"unknown text mode {mode}")
    r.byte()
    parent_index = r.byte()
    if parent_index >= position or COLUMNS[parent_index] in INT_COLUMNS:
        raise ValueError(f"parent column {parent_index} is not an earlier text column")
    parent = columns[COLUMNS[parent_index]]
    cache = {} if slot_cache is None else slot_cache
    slots = cache.get(parent_index)
    if slots is None:
        slots = cache[parent_index] = _parent_slots(parent)
    child = _decode_text_dict(r, len(slots))
    if len(slots) == len(parent) + 1:  # every parent value distinct (and no null): slot i + 1 is row i
        return child[1:]
    return [child[slots[p]] for p in parent]


# -- blocks ----------------------------------------------------------------------------------
def check_records(records: Sequence[dict[str, Any]], *, offset: int = 0) -> None:
    """Check that every record has exactly :data:`COLUMNS` with values of the right type.

    Integers must be ``int`` (not ``bool``), text ``str``, ``extra`` any JSON value; any may be ``None``.

    :raises InvalidInput: naming the record (by position) and the column.
    """
    expected = set(COLUMNS)
    for i, rec in enumerate(records, start=offset):
        if not isinstance(rec, dict):
            raise InvalidInput(f"record {i} is a {type(rec).__name__}, not a dict")
        if rec.keys() != expected:
            missing = sorted(expected - rec.keys())
            unknown = sorted(str(k) for k in rec.keys() - expected)
            raise InvalidInput(f"record {i} has the wrong columns (missing {missing}, unknown {unknown})")
        for name in COLUMNS:
            v = rec[name]
            if v is None or name in JSON_COLUMNS:
                continue
            if name in INT_COLUMNS:
                if type(v) is not int:
                    raise InvalidInput(f"record {i} column {name}: expected an integer, got {type(v).__name__}")
            elif type(v) is not str:
                raise InvalidInput(f"record {i} column {name}: expected text, got {type(v).__name__}")


def encode_block(records: Sequence[dict[str, Any]]) -> bytes:
    """Encode records (already checked with :func:`check_records`) as one block's plaintext.

    :raises InvalidInput: an ``extra`` value is not JSON-serialisable.
    """
    compressor = zstandard.ZstdCompressor(level=_JUDGE_LEVEL)

    def judge(data: bytes) -> int:
        return len(compressor.compress(data))

    out = bytearray()
    _put_varint(out, len(records))
    columns: dict[str, list[Any]] = {}
    for name in COLUMNS:
        values = [rec[name] for rec in records]
        columns[name] = values
        if name in INT_COLUMNS:
            section = _encode_ints(name, values, columns, judge)
        else:
            if name in JSON_COLUMNS:
                values = [None if v is None else _json_text(v, name) for v in values]
            section = _encode_text(name, values, columns, judge)
        _put_varint(out, len(section))
        out += section
    return bytes(out)


def _json_text(value: Any, name: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"column {name}: value is not JSON-serialisable: {exc}") from exc


def decode_columns(block: bytes) -> dict[str, list[Any]]:
    """Decode a block's plaintext into ``{column: values}``.

    :raises ValueError: the bytes are not a valid block (the caller reports corruption).
    """
    r = _Reader(block)
    n = r.varint()
    if n > len(block):  # every text column spends at least a byte per row
        raise ValueError("record count larger than the block could hold")
    columns: dict[str, list[Any]] = {}
    slot_cache: dict[int, Any] = {}
    for position, name in enumerate(COLUMNS):
        section = _Reader(r.take(r.varint()))
        try:
            if name in INT_COLUMNS:
                values = _decode_ints(section, n, columns, position)
            else:
                values = _decode_text(section, n, columns, position, slot_cache)
                if name in JSON_COLUMNS:
                    values = [None if v is None else json.loads(v) for v in values]
        except (TypeError, IndexError, KeyError, OverflowError, RecursionError) as exc:
            raise ValueError(f"column {name}: {type(exc).__name__}: {exc}") from exc
        if section.pos != len(section.buf) or len(values) != n:
            raise ValueError(f"column {name}: {len(section.buf) - section.pos} unused bytes or wrong row count")
        columns[name] = values
    if r.pos != len(block):
        raise ValueError(f"{len(block) - r.pos} unused bytes after the last column")
    return columns


def decode_block(block: bytes) -> list[dict[str, Any]]:
    """Decode a block's plaintext into records (dicts with :data:`COLUMNS` in order).

    :raises ValueError: the bytes are not a valid block.
    """
    columns = decode_columns(block)
    return [dict(zip(COLUMNS, row, strict=True)) for row in zip(*(columns[c] for c in COLUMNS), strict=True)]


def same_records(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> bool:
    """Whether two record lists are equal value for value *and* type for type (``0`` is not ``False``)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x != y:
            return False
        for name in COLUMNS:
            if name not in JSON_COLUMNS and type(x[name]) is not type(y[name]):
                return False
        if any(_json_text(x[c], c) != _json_text(y[c], c) for c in JSON_COLUMNS if x[c] is not None):
            return False
    return True
