"""The warm tier: settled batches sealed into immutable, compressed, encrypted segment files.

A segment holds the records of one settled batch (or a few) in blocks of up to
:data:`DEFAULT_BLOCK_RECORDS` records. Each block is column-encoded
(:mod:`tillvault.store.segment_codec`), compressed with zstd and encrypted with AES-256-GCM
under a random per-segment data key; the data key is wrapped by the key ring's active KEK.
A plaintext header carries what a reader needs without the key — counts, the invoice and time
range of each block (the index: no card data), the KEK id, the wrapped key, the nonces and the
digests — so :func:`verify_segment` can check a segment without the key, and :func:`find` and
:func:`find_time_range` decrypt only the blocks they need. The byte layout is in
``docs/segment-format.md``.

Failure modes and what happens:

- The disk fills while sealing: the temporary file is removed, nothing replaces ``path``,
  ``StorageFull`` is raised; the batch stays in the hot tier. An I/O error: ``DeviceFailed``,
  same clean-up.
- A crash while sealing: ``path`` is either absent or the complete old file, never a torn one
  (temp file, fsync, rename, fsync of the folder). A stale ``.<name>.*.tmp`` may remain.
- A damaged byte anywhere: :func:`verify_segment` names the region (header or block and byte
  range); readers raise ``SegmentCorrupt`` and never return data from a damaged block.
- The key ring lacks the segment's KEK, or holds a different key under that id:
  ``KeyRingError`` (the segment itself is fine).
"""

from __future__ import annotations

import errno
import hashlib
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tillvault.errors import ConfigError, DeviceFailed, InvalidInput, KeyRingError, SegmentCorrupt, StorageFull
from tillvault.store.fsutil import write_atomic
from tillvault.store.keys import KeyRing
from tillvault.store.segment_codec import check_records, decode_block, decode_columns, encode_block, same_records

__all__ = [
    "DEFAULT_BLOCK_RECORDS",
    "FORMAT_VERSION",
    "MAGIC",
    "SegmentInfo",
    "dictionary_id",
    "find",
    "find_time_range",
    "read_segment",
    "seal_segment",
    "segment_info",
    "verify_segment",
]

MAGIC = b"TVSEG"
FORMAT_VERSION = 1
#: Records per block: a whole reference day (2,000, 2,600 on weekends) fits one block; smaller
#: blocks make lookups cheaper and compression worse (see ``bench/segment_size.py``).
DEFAULT_BLOCK_RECORDS = 4096
ZSTD_LEVEL = 19
_PREAMBLE = len(MAGIC) + 1
_DIGEST = 32
_KEY_AAD = b"tillvault-segment-data-key/1:"
_REQUIRED = (
    "segment_id",
    "terminal_id",
    "batch",
    "count",
    "min_invoice",
    "max_invoice",
    "min_created_ms",
    "max_created_ms",
    "sealed_ms",
    "compression",
    "kek_id",
    "key_nonce",
    "wrapped_key",
    "chain_from",
    "chain_to",
    "plaintext_sha256",
)


@dataclass(frozen=True)
class SegmentInfo:
    """What a segment's header says (readable without the key). Times are ms since the epoch."""

    path: Path
    size_bytes: int
    segment_id: str
    count: int
    batch: int
    terminal_id: str
    min_invoice: int | None
    max_invoice: int | None
    min_created_ms: int | None
    max_created_ms: int | None
    sealed_ms: int
    kek_id: str
    blocks: int
    chain_from: bytes
    chain_to: bytes
    plaintext_sha256: str
    ciphertext_sha256: str
    dictionary_id: str | None


@dataclass
class _Parsed:
    size: int
    header_end: int
    seal_bytes: bytes
    seal: dict[str, Any]
    blocks: list[dict[str, Any]]  # seal's block entries merged with offset, length and sha256
    ciphertext_sha256: str


def dictionary_id(dictionary: bytes) -> str:
    """The id a segment records for a zstd dictionary: the first 16 hex chars of its SHA-256."""
    return hashlib.sha256(dictionary).hexdigest()[:16]


# -- sealing ---------------------------------------------------------------------------------
def seal_segment(
    records: Sequence[dict[str, Any]],
    path: Path,
    keyring: KeyRing,
    *,
    batch: int,
    terminal_id: str,
    chain_from: bytes = b"",
    chain_to: bytes = b"",
    dictionary: bytes | None = None,
    block_records: int = DEFAULT_BLOCK_RECORDS,
    level: int = ZSTD_LEVEL,
) -> SegmentInfo:
    """Seal ``records`` (rows of the ``transactions`` table, without ``checksum``) into ``path``.

    Every block is decoded again before anything is written and must give back exactly the
    records given, so a sealed segment never holds something other than its input. The file
    is written atomically and durably; an existing file at ``path`` is replaced.

    ``chain_from``/``chain_to`` are the journal's chain hashes before the first and after the
    last sealed event (kept in the header). With ``dictionary`` (a zstd dictionary) the blocks
    are compressed with it only if that makes the segment smaller; the header then names the
    dictionary by :func:`dictionary_id` and readers must be given it (``dictionaries=``).

    :returns: the sealed segment's :class:`SegmentInfo`.
    :raises InvalidInput: a record lacks a column, has an unknown one, or a value of the wrong type.
    :raises KeyRingError: the key ring has no active KEK.
    :raises StorageFull: the disk filled while writing; nothing was written.
    :raises DeviceFailed: an I/O error while writing; nothing was written.
    """
    if not isinstance(batch, int) or isinstance(batch, bool):
        raise InvalidInput(f"batch must be an integer, got {batch!r}")
    if not isinstance(terminal_id, str):
        raise InvalidInput(f"terminal_id must be text, got {terminal_id!r}")
    if block_records < 1:
        raise InvalidInput(f"block_records must be at least 1, got {block_records}")
    check_records(records)
    kek = keyring.active("kek")
    path = Path(path)

    plains: list[bytes] = []
    entries: list[dict[str, Any]] = []
    n = len(records)
    nblocks = -(-n // block_records)
    for i in range(nblocks):
        part = records[i * n // nblocks : (i + 1) * n // nblocks]
        plain = encode_block(part)
        if not same_records(decode_block(plain), part):
            raise InvalidInput(
                f"records {i * n // nblocks}..{(i + 1) * n // nblocks - 1} do not survive encoding exactly "
                "(a JSON value in 'extra' that JSON cannot represent, such as NaN or a tuple?)"
            )
        plains.append(plain)
        entries.append({"count": len(part), **_ranges(part)})

    compressed, dict_id = _compress(plains, level, dictionary)
    segment_id = secrets.token_bytes(16)
    data_key = secrets.token_bytes(32)
    key_nonce = secrets.token_bytes(12)
    kek_id = kek.key_id
    wrapped = AESGCM(kek.material).encrypt(key_nonce, data_key, _key_aad(segment_id, kek_id))
    nonces = [secrets.token_bytes(12) for _ in plains]
    seal: dict[str, Any] = {
        "format": "tillvault-segment",
        "version": FORMAT_VERSION,
        "segment_id": segment_id.hex(),
        "terminal_id": terminal_id,
        "batch": batch,
        "count": n,
        **_ranges(records),
        "sealed_ms": time.time_ns() // 1_000_000,
        "compression": {"codec": "zstd", "level": level, "dictionary": dict_id},
        "cipher": "AES-256-GCM",
        "kek_id": kek_id,
        "key_nonce": key_nonce.hex(),
        "wrapped_key": wrapped.hex(),
        "chain_from": chain_from.hex(),
        "chain_to": chain_to.hex(),
        "plaintext_sha256": hashlib.sha256(b"".join(plains)).hexdigest(),
        "blocks": [{**e, "nonce": nonce.hex()} for e, nonce in zip(entries, nonces, strict=True)],
    }
    seal_bytes = _canonical(seal)
    aead = AESGCM(data_key)
    cipher = [
        aead.encrypt(nonce, body, _block_aad(seal_bytes, i))
        for i, (nonce, body) in enumerate(zip(nonces, compressed, strict=True))
    ]
    digests = {
        "blocks": [{"length": len(c), "sha256": hashlib.sha256(c).hexdigest()} for c in cipher],
        "ciphertext_sha256": hashlib.sha256(b"".join(cipher)).hexdigest(),
    }
    digest_bytes = _canonical(digests)
    head = (
        MAGIC
        + bytes([FORMAT_VERSION])
        + len(seal_bytes).to_bytes(4, "big")
        + seal_bytes
        + len(digest_bytes).to_bytes(4, "big")
        + digest_bytes
    )
    data = head + hashlib.sha256(head).digest() + b"".join(cipher)
    _write_atomic(path, data)
    return _info(path, _parse(data), len(data))


def _ranges(records: Sequence[dict[str, Any]]) -> dict[str, int | None]:
    invoices = [r["invoice"] for r in records if r["invoice"] is not None]
    times = [r["created_ms"] for r in records if r["created_ms"] is not None]
    return {
        "min_invoice": min(invoices) if invoices else None,
        "max_invoice": max(invoices) if invoices else None,
        "min_created_ms": min(times) if times else None,
        "max_created_ms": max(times) if times else None,
    }


def _compress(plains: list[bytes], level: int, dictionary: bytes | None) -> tuple[list[bytes], str | None]:
    plain = zstandard.ZstdCompressor(level=level)
    bodies = [plain.compress(p) for p in plains]
    if dictionary is None:
        return bodies, None
    zdict = zstandard.ZstdCompressionDict(dictionary)
    with_dict = zstandard.ZstdCompressor(level=level, dict_data=zdict)
    alt = [with_dict.compress(p) for p in plains]
    if sum(map(len, alt)) < sum(map(len, bodies)):
        return alt, dictionary_id(dictionary)
    return bodies, None


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _key_aad(segment_id: bytes, kek_id: str) -> bytes:
    return _KEY_AAD + segment_id + kek_id.encode("utf-8")


def _block_aad(seal_bytes: bytes, index: int) -> bytes:
    return MAGIC + bytes([FORMAT_VERSION]) + seal_bytes + index.to_bytes(4, "big")


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise _os_error(exc, path, len(data)) from exc


def _os_error(exc: OSError, path: Path, size: int) -> StorageFull | DeviceFailed:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(
            f"no space to seal segment {path.name} ({size} bytes) in {path.parent}: nothing was written and the "
            "batch stays in the hot tier; free space or offload sealed segments",
            needed_bytes=size,
        )
    return DeviceFailed(f"I/O error sealing segment {path.name} in {path.parent}: {exc.strerror or exc}")


# -- parsing (no key needed) -----------------------------------------------------------------
def _parse(data: bytes, problems: list[str] | None = None) -> _Parsed:
    """Parse and check the header; with ``problems``, record and continue where possible.

    :raises SegmentCorrupt: the header is damaged (always, when it cannot be parsed at all).
    """

    def fail(message: str) -> None:
        if problems is None:
            raise SegmentCorrupt(message)
        problems.append(message)

    size = len(data)
    if size < _PREAMBLE + 8 + _DIGEST:
        raise SegmentCorrupt(f"file is {size} bytes: too short for a segment header (truncated)")
    if data[: len(MAGIC)] != MAGIC:
        fail(f"bytes 0-4: magic is {data[: len(MAGIC)]!r}, expected {MAGIC!r} (not a segment, or damaged)")
    if data[len(MAGIC)] != FORMAT_VERSION:
        fail(f"byte 5: format version {data[len(MAGIC)]} is not supported (this reader knows {FORMAT_VERSION})")
    seal_len = int.from_bytes(data[_PREAMBLE : _PREAMBLE + 4], "big")
    seal_start = _PREAMBLE + 4
    digests_at = seal_start + seal_len
    if digests_at + 4 + _DIGEST > size:
        raise SegmentCorrupt(f"bytes 6-9: header length {seal_len} runs past the end of the {size}-byte file")
    digests_len = int.from_bytes(data[digests_at : digests_at + 4], "big")
    head_end = digests_at + 4 + digests_len
    if head_end + _DIGEST > size:
        raise SegmentCorrupt(
            f"bytes {digests_at}-{digests_at + 3}: digest section length {digests_len} runs past the end of the file"
        )
    header_end = head_end + _DIGEST
    if hashlib.sha256(data[:head_end]).digest() != data[head_end:header_end]:
        fail(f"header (bytes 0-{header_end - 1}): SHA-256 mismatch, the header is damaged")
    seal_bytes = data[seal_start:digests_at]
    try:
        seal = json.loads(seal_bytes)
        digests = json.loads(data[digests_at + 4 : head_end])
        entries = [
            {**entry, "length": int(d["length"]), "sha256": str(d["sha256"])}
            for entry, d in zip(seal["blocks"], digests["blocks"], strict=True)
        ]
        ciphertext_sha256 = str(digests["ciphertext_sha256"])
        missing = [k for k in _REQUIRED if k not in seal]
        if missing:
            raise KeyError(", ".join(missing))
    except (ValueError, KeyError, TypeError) as exc:
        raise SegmentCorrupt(f"header (bytes 0-{header_end - 1}) cannot be parsed: {exc}") from exc
    offset = header_end
    for i, entry in enumerate(entries):
        entry["offset"] = offset
        end = offset + entry["length"]
        if entry["length"] < 16 or end > size:
            raise SegmentCorrupt(
                f"block {i}: declared bytes {offset}-{end - 1} do not fit in the {size}-byte file (truncated?)"
            )
        offset = end
    if offset != size:
        fail(f"bytes {offset}-{size - 1}: {size - offset} bytes after the last block (the file was appended to)")
    return _Parsed(size, header_end, seal_bytes, seal, entries, ciphertext_sha256)


def _load(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DeviceFailed(f"I/O error reading segment {Path(path).name}: {exc.strerror or exc}") from exc


def _info(path: Path, parsed: _Parsed, size: int) -> SegmentInfo:
    seal = parsed.seal
    return SegmentInfo(
        path=Path(path),
        size_bytes=size,
        segment_id=seal["segment_id"],
        count=seal["count"],
        batch=seal["batch"],
        terminal_id=seal["terminal_id"],
        min_invoice=seal["min_invoice"],
        max_invoice=seal["max_invoice"],
        min_created_ms=seal["min_created_ms"],
        max_created_ms=seal["max_created_ms"],
        sealed_ms=seal["sealed_ms"],
        kek_id=seal["kek_id"],
        blocks=len(parsed.blocks),
        chain_from=bytes.fromhex(seal["chain_from"]),
        chain_to=bytes.fromhex(seal["chain_to"]),
        plaintext_sha256=seal["plaintext_sha256"],
        ciphertext_sha256=parsed.ciphertext_sha256,
        dictionary_id=seal["compression"]["dictionary"],
    )


def segment_info(path: Path) -> SegmentInfo:
    """Read a segment's header without the key.

    :raises FileNotFoundError: no file at ``path``.
    :raises SegmentCorrupt: the header is damaged.
    """
    data = _load(path)
    return _info(path, _parse(data), len(data))


# -- reading (key needed) --------------------------------------------------------------------
class _Opened:
    """A parsed segment with its unwrapped data key, decrypting blocks on demand."""

    def __init__(
        self, path: Path, keyring: KeyRing, dictionaries: Mapping[str, bytes] | None, data: bytes | None = None
    ) -> None:
        self.path = Path(path)
        self.data = data if data is not None else _load(self.path)
        self.parsed = _parse(self.data)
        seal = self.parsed.seal
        self.name = self.path.name
        kek = keyring.get(seal["kek_id"])
        try:
            segment_id = bytes.fromhex(seal["segment_id"])
            data_key = AESGCM(kek.material).decrypt(
                bytes.fromhex(seal["key_nonce"]), bytes.fromhex(seal["wrapped_key"]), _key_aad(segment_id, kek.key_id)
            )
        except InvalidTag:
            raise KeyRingError(
                f"segment {self.name}: the key ring's key {kek.key_id!r} does not open this segment's data key "
                "(a different key ring holds a key of the same id)"
            ) from None
        except ValueError as exc:
            raise SegmentCorrupt(f"segment {self.name}: wrapped data key is malformed: {exc}") from exc
        self.aead = AESGCM(data_key)
        dict_id = seal["compression"]["dictionary"]
        zdict = None
        if dict_id is not None:
            blob = (dictionaries or {}).get(dict_id)
            if blob is None or dictionary_id(blob) != dict_id:
                raise ConfigError(
                    f"segment {self.name} was compressed with zstd dictionary {dict_id}; pass it in dictionaries="
                )
            zdict = zstandard.ZstdCompressionDict(blob)
        self.decompressor = (
            zstandard.ZstdDecompressor(dict_data=zdict) if zdict is not None else zstandard.ZstdDecompressor()
        )

    def plaintext(self, i: int) -> bytes:
        """Block ``i``'s decrypted, decompressed bytes. :raises SegmentCorrupt: damaged block."""
        entry = self.parsed.blocks[i]
        start, end = entry["offset"], entry["offset"] + entry["length"]
        where = f"segment {self.name} block {i} (bytes {start}-{end - 1})"
        body = self.data[start:end]
        if hashlib.sha256(body).hexdigest() != entry["sha256"]:
            raise SegmentCorrupt(f"{where}: ciphertext SHA-256 mismatch, the block is damaged")
        try:
            compressed = self.aead.decrypt(bytes.fromhex(entry["nonce"]), body, _block_aad(self.parsed.seal_bytes, i))
        except (InvalidTag, ValueError):
            raise SegmentCorrupt(f"{where}: fails authentication (the block or the header was altered)") from None
        try:
            return self.decompressor.decompress(compressed)
        except zstandard.ZstdError as exc:
            raise SegmentCorrupt(f"{where}: does not decompress: {exc}") from exc

    def columns(self, i: int) -> dict[str, list[Any]]:
        """Block ``i`` decoded into columns. :raises SegmentCorrupt: damaged or undecodable block."""
        try:
            columns = decode_columns(self.plaintext(i))
        except ValueError as exc:
            raise SegmentCorrupt(f"segment {self.name} block {i}: does not decode: {exc}") from exc
        count = self.parsed.blocks[i]["count"]
        if len(columns["invoice"]) != count:
            raise SegmentCorrupt(f"segment {self.name} block {i}: holds {len(columns['invoice'])} records, not {count}")
        return columns

    def records(self, i: int) -> list[dict[str, Any]]:
        columns = self.columns(i)
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def read_segment(
    path: Path, keyring: KeyRing, *, dictionaries: Mapping[str, bytes] | None = None, data: bytes | None = None
) -> list[dict[str, Any]]:
    """All records of a segment, in the order they were sealed (``data``: its bytes, already in
    memory, e.g. from the back office; ``path`` then only names it).

    :raises FileNotFoundError: no file at ``path``.
    :raises SegmentCorrupt: any damage (header, block, digest); nothing is returned.
    :raises KeyRingError: the ring lacks the segment's KEK or holds another key under its id.
    :raises ConfigError: the segment names a zstd dictionary that is not in ``dictionaries``.
    """
    seg = _Opened(path, keyring, dictionaries, data)
    plains = [seg.plaintext(i) for i in range(len(seg.parsed.blocks))]
    if hashlib.sha256(b"".join(plains)).hexdigest() != seg.parsed.seal["plaintext_sha256"]:
        raise SegmentCorrupt(f"segment {seg.name}: plaintext SHA-256 mismatch")
    out: list[dict[str, Any]] = []
    for i in range(len(plains)):
        out.extend(seg.records(i))
    if len(out) != seg.parsed.seal["count"]:
        raise SegmentCorrupt(f"segment {seg.name}: holds {len(out)} records, header says {seg.parsed.seal['count']}")
    return out


def find(
    path: Path,
    keyring: KeyRing,
    *,
    invoice: int,
    dictionaries: Mapping[str, bytes] | None = None,
    data: bytes | None = None,
) -> dict[str, Any] | None:
    """The record with ``invoice``, or ``None``; decrypts only blocks whose invoice range holds it.

    :raises SegmentCorrupt: a block it needed is damaged.
    :raises KeyRingError, ConfigError: as :func:`read_segment`.
    """
    seg = _Opened(path, keyring, dictionaries, data)
    for i, entry in enumerate(seg.parsed.blocks):
        lo, hi = entry["min_invoice"], entry["max_invoice"]
        if lo is None or not lo <= invoice <= hi:
            continue
        columns = seg.columns(i)
        invoices = columns["invoice"]
        for row, value in enumerate(invoices):
            if value == invoice:
                return {name: values[row] for name, values in columns.items()}
    return None


def find_time_range(
    path: Path,
    keyring: KeyRing,
    start_ms: int,
    end_ms: int,
    *,
    dictionaries: Mapping[str, bytes] | None = None,
) -> list[dict[str, Any]]:
    """Records with ``start_ms <= created_ms < end_ms`` (ms since the epoch), in sealed order.

    Decrypts only blocks whose time range overlaps the interval.

    :raises SegmentCorrupt: a block it needed is damaged.
    :raises KeyRingError, ConfigError: as :func:`read_segment`.
    """
    seg = _Opened(path, keyring, dictionaries)
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(seg.parsed.blocks):
        lo, hi = entry["min_created_ms"], entry["max_created_ms"]
        if lo is None or hi < start_ms or lo >= end_ms:
            continue
        out.extend(r for r in seg.records(i) if r["created_ms"] is not None and start_ms <= r["created_ms"] < end_ms)
    return out


# -- verification ----------------------------------------------------------------------------
def verify_segment(
    path: Path, keyring: KeyRing | None = None, *, dictionaries: Mapping[str, bytes] | None = None
) -> list[str]:
    """Check a segment; return the problems found (empty when it is intact).

    Without a key ring: magic, version, header digest, layout and every block's ciphertext
    SHA-256. With one: also the data key, every block's authentication, decompression and
    decoding, the record counts, the index ranges and the plaintext SHA-256.

    :raises FileNotFoundError: no file at ``path``.
    :raises KeyRingError: the header is intact but the ring cannot open it (wrong or missing key).
    """
    data = _load(path)
    problems: list[str] = []
    try:
        parsed = _parse(data, problems)
    except SegmentCorrupt as exc:
        return [*problems, str(exc)]
    bad_blocks = set()
    for i, entry in enumerate(parsed.blocks):
        start, end = entry["offset"], entry["offset"] + entry["length"]
        if hashlib.sha256(data[start:end]).hexdigest() != entry["sha256"]:
            problems.append(f"block {i} (bytes {start}-{end - 1}): ciphertext SHA-256 mismatch, the block is damaged")
            bad_blocks.add(i)
    whole = hashlib.sha256(data[parsed.header_end :]).hexdigest()
    if whole != parsed.ciphertext_sha256 and not bad_blocks:
        problems.append("ciphertext SHA-256 of all blocks does not match the header")
    if keyring is None or problems:
        return problems
    seg = _Opened(path, keyring, dictionaries)
    seg.data = data
    plains: list[bytes] = []
    for i, entry in enumerate(parsed.blocks):
        try:
            plain = seg.plaintext(i)
            plains.append(plain)
            records = decode_block(plain)
        except SegmentCorrupt as exc:
            problems.append(str(exc))
            continue
        except ValueError as exc:
            problems.append(f"block {i}: does not decode: {exc}")
            continue
        if len(records) != entry["count"]:
            problems.append(f"block {i}: holds {len(records)} records, index says {entry['count']}")
        ranges = _ranges(records)
        for key, value in ranges.items():
            if entry.get(key) != value:
                problems.append(f"block {i}: {key} is {value}, index says {entry.get(key)}")
    if not problems:
        if hashlib.sha256(b"".join(plains)).hexdigest() != parsed.seal["plaintext_sha256"]:
            problems.append("plaintext SHA-256 mismatch")
        if sum(e["count"] for e in parsed.blocks) != parsed.seal["count"]:
            problems.append(
                f"blocks hold {sum(e['count'] for e in parsed.blocks)} records, header says {parsed.seal['count']}"
            )
    return problems
