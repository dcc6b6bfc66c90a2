"""Canonical encoding of journal events, their checksums and the hash chain.

An event is encoded as compact JSON with sorted keys (UTF-8), so the same event always
has the same bytes on every platform. Its checksum covers the sequence number, time,
kind and body; its chain hash covers the previous chain hash and the checksum, so
removing, reordering or altering any event breaks every hash after it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tillvault.errors import InvalidInput

#: Chain hash that precedes the first event of a journal.
GENESIS = b"\x00" * 32
CHECKSUM_BYTES = 16


#: One encoder for every call (``json.dumps`` with options builds a new one each time).
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON bytes (sorted keys, no spaces, UTF-8).

    :raises InvalidInput: if ``obj`` holds something JSON cannot represent exactly
        (floats are refused: money and counts are integers).
    """
    _refuse_floats(obj)
    try:
        return _ENCODE(obj).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"event body cannot be encoded: {exc}") from exc


def _refuse_floats(obj: Any) -> None:
    """Raise InvalidInput on a float anywhere in ``obj``, or a dict key that is not text.

    Iterative, with exact-type fast paths: it runs on every record a sale writes.
    """
    stack = [obj]
    pop, push = stack.pop, stack.append
    while stack:
        o = pop()
        t = type(o)
        if t is dict or (t is not list and t is not tuple and isinstance(o, dict)):
            for key, value in o.items():
                if type(key) is not str and not isinstance(key, str):
                    raise InvalidInput(f"event body key {key!r} is not a string")
                tv = type(value)
                if tv is str or tv is int or value is None or tv is bool:
                    continue
                push(value)
        elif t is list or t is tuple or isinstance(o, list | tuple):
            stack.extend(o)
        elif isinstance(o, float):
            raise InvalidInput("event body holds a float; amounts must be integer minor units")


def decode(body: bytes | str) -> Any:
    """Decode canonical JSON bytes back into Python objects.

    :raises InvalidInput: if the bytes are not valid UTF-8 JSON.
    """
    try:
        return json.loads(body.decode("utf-8") if isinstance(body, bytes | bytearray | memoryview) else body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"event body is not canonical JSON: {exc}") from exc


def event_checksum(seq: int, ts_ms: int, kind: str, body: bytes) -> bytes:
    """The per-record checksum: BLAKE2b-128 over seq, time, kind and body."""
    h = hashlib.blake2b(digest_size=CHECKSUM_BYTES, person=b"tillvault-event")
    h.update(seq.to_bytes(8, "big", signed=True))
    h.update(ts_ms.to_bytes(8, "big", signed=True))
    k = kind.encode("utf-8")
    h.update(len(k).to_bytes(2, "big"))
    h.update(k)
    h.update(body)
    return h.digest()


def chain_hash(previous: bytes, checksum: bytes) -> bytes:
    """The chain link: SHA-256 over the previous link and this record's checksum."""
    return hashlib.sha256(previous + checksum).digest()


def row_checksum(values: dict[str, Any]) -> bytes:
    """Checksum of a current-state row (all columns except the checksum itself)."""
    return _row_digest(canonical(values))


def _row_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_BYTES, person=b"tillvault-row").digest()


def row_intact(row: Any) -> bool:
    """Whether a stored row (an ``sqlite3.Row`` with its ``checksum`` column) still matches its checksum.

    A value no written row can hold (a float, a blob) makes the row damaged, not an error: the
    bytes are encoded as :func:`row_checksum` encodes them, without its refusal of floats.
    """
    values = {k: row[k] for k in row.keys() if k != "checksum"}  # noqa: SIM118 (Row iterates values)
    stored = row["checksum"]
    if not isinstance(stored, bytes):
        return False
    try:
        data = _ENCODE(values).encode("utf-8")
    except (TypeError, ValueError):
        return False
    return _row_digest(data) == stored  # a checksum, not a secret


@dataclass(frozen=True, slots=True)
class Event:
    """One journal entry as stored."""

    seq: int
    ts_ms: int
    kind: str
    body: bytes
    checksum: bytes
    chain: bytes

    def data(self) -> Any:
        """The decoded body."""
        return decode(self.body)

    def checksum_ok(self) -> bool:
        """True when the stored checksum matches the record's content."""
        return event_checksum(self.seq, self.ts_ms, self.kind, self.body) == self.checksum
