"""Sealed segments: exact round trips, index lookups, corruption, keys, atomic writes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tillvault.errors import ConfigError, InvalidInput, KeyRingError, SegmentCorrupt, StorageFull
from tillvault.sim import reference_records
from tillvault.store import fsutil, segments
from tillvault.store.keys import Key, KeyRing
from tillvault.store.segment_codec import COLUMNS, INT_COLUMNS, JSON_COLUMNS, decode_block, encode_block, same_records
from tillvault.store.segments import (
    find,
    find_time_range,
    read_segment,
    seal_segment,
    segment_info,
    verify_segment,
)

CHAIN_FROM = hashlib.sha256(b"from").digest()
CHAIN_TO = hashlib.sha256(b"to").digest()


@pytest.fixture(scope="module")
def day() -> list[dict[str, Any]]:
    """One business day of the reference shop (batch 1)."""
    return [r for r in reference_records(2_600) if r["batch"] == 1]


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "ring" / "keyring.json")


def seal(records: list[dict[str, Any]], path: Path, ring: KeyRing, **kw: Any) -> segments.SegmentInfo:
    return seal_segment(records, path, ring, batch=1, terminal_id="TV000001", **kw)


# -- round trips -----------------------------------------------------------------------------
def test_reference_day_round_trips_exactly(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    info = seal(day, tmp_path / "b1.tvseg", ring, chain_from=CHAIN_FROM, chain_to=CHAIN_TO)
    back = read_segment(info.path, ring)
    assert same_records(back, day)
    assert [list(r) for r in back[:1]] == [list(COLUMNS)]
    assert info.count == len(day) and info.size_bytes == info.path.stat().st_size
    assert info.size_bytes / len(day) < 40, "warm tier should stay near 30 bytes per reference transaction"
    assert verify_segment(info.path) == [] and verify_segment(info.path, ring) == []
    header = segment_info(info.path)
    assert (header.chain_from, header.chain_to) == (CHAIN_FROM, CHAIN_TO)
    assert header.kek_id == ring.active("kek").key_id
    assert (header.min_invoice, header.max_invoice) == (day[0]["invoice"], day[-1]["invoice"])


def test_none_empty_and_zero_stay_distinct(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    records = [dict(r) for r in day[:6]]
    records[0].update(customer_ref=None, fee=None, reason=None, extra=None)
    records[1].update(customer_ref="", fee=0, reason="", extra="")
    records[2].update(customer_ref="0", fee=-1, reason="名字 é \U0001f600", extra={"a": [1, None, "x"], "b": False})
    records[3].update(amount=2**100, fee=-(2**90), stan=0, extra=0)
    records[4].update(card_token="ABCDEF", masked_pan="", rrn="0000001", auth_code="A1B2C3", extra=[])
    records[5].update(terminal_id="", business_date="2025-06-02\x00", extra={}, rrn="7" * 5000, idem_key="1" * 5000)
    info = seal(records, tmp_path / "s.tvseg", ring, block_records=2)
    back = read_segment(info.path, ring)
    assert same_records(back, records)
    assert back[0]["customer_ref"] is None and back[1]["customer_ref"] == ""
    assert back[0]["fee"] is None and back[1]["fee"] == 0 and type(back[1]["fee"]) is int
    assert back[1]["extra"] == "" and back[3]["extra"] == 0 and back[4]["extra"] == []
    long_digits = [{**day[0], "rrn": "7" * 5000, "masked_pan": "1" * 6 + "*" * 3 + "2" * 5000}]
    assert same_records(decode_block(encode_block(long_digits)), long_digits)


def test_fee_stored_as_residual_of_a_rate_round_trips_with_odd_rows() -> None:
    import random

    from tillvault.store import segment_codec

    rng = random.Random(3)
    base = dict.fromkeys(COLUMNS)
    rows = []
    for _ in range(400):
        amount = rng.randrange(100, 500_000)
        brand, card_type, bp = rng.choice([("unionpay", "debit", 50), ("unionpay", "credit", 60), ("visa", None, 200)])
        rows.append(
            {**base, "amount": amount, "fee": (amount * bp + 5000) // 10_000, "brand": brand, "card_type": card_type}
        )
    rows += [
        {**base, "amount": None, "fee": 7, "brand": "visa", "card_type": None},  # no base amount
        {**base, "amount": 5_000, "fee": 0, "brand": "unionpay", "card_type": "debit"},  # a refund
        {**base, "amount": 10**25, "fee": -3, "brand": None, "card_type": "credit"},  # an unseen class
        {**base, "amount": 30_000, "fee": None, "brand": "unionpay", "card_type": "debit"},
        {**base, "amount": 30_000, "fee": 2**70, "brand": "unionpay", "card_type": "debit"},
    ]
    block = encode_block(rows)
    assert same_records(decode_block(block), rows)
    reader = segment_codec._Reader(block)
    reader.varint()
    for name in COLUMNS:
        section = reader.take(reader.varint())
        if name == "fee":
            assert section[0] == segment_codec.NULLS_BITMAP
            assert section[1 + (len(rows) + 7) // 8] == segment_codec.INT_RATE


def test_empty_segment(tmp_path: Path, ring: KeyRing) -> None:
    info = seal([], tmp_path / "e.tvseg", ring)
    assert info.count == 0 and info.blocks == 0 and info.min_invoice is None
    assert read_segment(info.path, ring) == []
    assert find(info.path, ring, invoice=1) is None
    assert verify_segment(info.path, ring) == []


_INTS = st.one_of(
    st.none(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]),
)
_TEXTS = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["", "0", "00", "007", "ab" * 16, "AB" * 16, "621700******1234", "1*", "*", "\ud800x", "1 2"]),
    st.sampled_from(["C0000123", "C0004567", "C9", "ecr-20250602-00017", "ecr-20250602-00018", "x9", "9x", "٣٣"]),
    st.integers(0, 999_999).map(lambda v: f"{v:06d}"),
    st.binary(min_size=16, max_size=16).map(bytes.hex),
    st.builds(
        lambda h, n, t: f"{h:06d}{'*' * n}{t:04d}", st.integers(0, 999_999), st.integers(1, 9), st.integers(0, 9999)
    ),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_RECORD = st.fixed_dictionaries(
    {c: (_INTS if c in INT_COLUMNS else _JSON if c in JSON_COLUMNS else _TEXTS) for c in COLUMNS}
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_RECORD, max_size=25))
def test_codec_round_trips_arbitrary_records(records: list[dict[str, Any]]) -> None:
    assert same_records(decode_block(encode_block(records)), records)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(_RECORD, max_size=12), block_records=st.integers(min_value=1, max_value=5))
def test_segment_round_trips_arbitrary_records(
    tmp_path: Path, ring: KeyRing, records: list[dict[str, Any]], block_records: int
) -> None:
    info = seal(records, tmp_path / "h.tvseg", ring, block_records=block_records)
    assert same_records(read_segment(info.path, ring), records)
    assert verify_segment(info.path, ring) == []


def test_bad_records_are_refused_before_writing(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    path = tmp_path / "bad.tvseg"
    missing = {k: v for k, v in day[0].items() if k != "fee"}
    with pytest.raises(InvalidInput, match="missing \\['fee'\\]"):
        seal([missing], path, ring)
    with pytest.raises(InvalidInput, match="unknown \\['checksum'\\]"):
        seal([{**day[0], "checksum": b"x"}], path, ring)
    with pytest.raises(InvalidInput, match="column amount: expected an integer, got bool"):
        seal([{**day[0], "amount": True}], path, ring)
    with pytest.raises(InvalidInput, match="column rrn: expected text"):
        seal([{**day[0], "rrn": 123}], path, ring)
    with pytest.raises(InvalidInput, match="survive encoding exactly"):
        seal([{**day[0], "extra": {"x": float("nan")}}], path, ring)
    assert not path.exists() and not list(path.parent.glob(".*.tmp"))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_damaged_block_plaintext_only_ever_raises_value_error(data: st.DataObject) -> None:
    # Blocks are authenticated before decoding; this proves the decoder fails cleanly anyway.
    block = bytearray(_SMALL_BLOCK)
    for _ in range(data.draw(st.integers(1, 4))):
        block[data.draw(st.integers(0, len(block) - 1))] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(ValueError):  # anything else (TypeError, IndexError...) fails the test
        decode_block(bytes(block))


_SMALL_BLOCK = encode_block(reference_records(60))


def test_the_reader_in_the_format_document_works(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "segment-format.md").read_text("utf-8")
    match = re.search(r"```python\n(.*?)```", doc, re.S)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)
    info = seal(day, tmp_path / "s.tvseg", ring, block_records=700)
    plains = namespace["block_plaintexts"](info.path.read_bytes(), {info.kek_id: ring.get(info.kek_id).material})
    assert [r for p in plains for r in decode_block(p)] == day


# -- lookups through the index ---------------------------------------------------------------
def test_find_by_invoice_and_time_range(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    info = seal(day, tmp_path / "b.tvseg", ring, block_records=500)
    assert info.blocks == 4
    for rec in (day[0], day[777], day[-1]):
        assert find(info.path, ring, invoice=rec["invoice"]) == rec
    assert find(info.path, ring, invoice=day[-1]["invoice"] + 1) is None
    start, end = day[100]["created_ms"], day[1500]["created_ms"]
    expected = [r for r in day if start <= r["created_ms"] < end]
    assert find_time_range(info.path, ring, start, end) == expected
    assert find_time_range(info.path, ring, 0, 1) == []


def test_find_decrypts_only_the_block_it_needs(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    info = seal(day, tmp_path / "b.tvseg", ring, block_records=500)
    data = bytearray(info.path.read_bytes())
    data[-10] ^= 0xFF  # damage the last block only
    info.path.write_bytes(bytes(data))
    assert find(info.path, ring, invoice=day[10]["invoice"]) == day[10]
    early = find_time_range(info.path, ring, day[0]["created_ms"], day[20]["created_ms"])
    assert early == day[:20]
    with pytest.raises(SegmentCorrupt, match="block 3"):
        find(info.path, ring, invoice=day[-1]["invoice"])
    with pytest.raises(SegmentCorrupt, match="block 3"):
        read_segment(info.path, ring)


def test_plaintext_header_leaks_no_card_data(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    info = seal(day, tmp_path / "b.tvseg", ring, block_records=500)
    data = info.path.read_bytes()
    header = json.loads(data[10 : 10 + int.from_bytes(data[6:10], "big")])
    allowed = {"count", "min_invoice", "max_invoice", "min_created_ms", "max_created_ms", "nonce"}
    assert all(set(block) == allowed for block in header["blocks"])
    for rec in day[:200]:
        for secret in (rec["card_token"], rec["masked_pan"], rec["rrn"], rec["customer_ref"]):
            if secret:
                assert secret.encode() not in data
        assert bytes.fromhex(rec["card_token"]) not in data


# -- corruption ------------------------------------------------------------------------------
def _block_of(info_path: Path, offset: int) -> int | None:
    """Which block holds byte ``offset`` (None: the header)."""
    data = info_path.read_bytes()
    seal_len = int.from_bytes(data[6:10], "big")
    at = 10 + seal_len
    digests = json.loads(data[at + 4 : at + 4 + int.from_bytes(data[at : at + 4], "big")])
    start = at + 4 + int.from_bytes(data[at : at + 4], "big") + 32
    for i, block in enumerate(digests["blocks"]):
        if start <= offset < start + block["length"]:
            return i
        start += block["length"]
    return None


def test_every_flipped_byte_is_found_and_never_read(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    original = seal(day[:30], tmp_path / "good.tvseg", ring, block_records=10).path
    good = original.read_bytes()
    bad = tmp_path / "bad.tvseg"
    header_region = re.compile(r"^(bytes 0-4: magic|byte 5: format version|bytes \d+-\d+: |header \(bytes 0-)")
    for offset in range(len(good)):
        data = bytearray(good)
        data[offset] ^= 0x40
        bad.write_bytes(bytes(data))
        problems = verify_segment(bad)
        assert problems, f"flip at byte {offset} went unnoticed"
        block = _block_of(original, offset)
        if block is None:
            assert header_region.match(problems[0]), (offset, problems)
        else:
            assert len(problems) == 1 and problems[0].startswith(f"block {block} (bytes "), (offset, problems)
        if offset % 3 == 0:
            with pytest.raises(SegmentCorrupt):
                read_segment(bad, ring)


def test_truncated_and_appended_files_are_corrupt(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    info = seal(day[:50], tmp_path / "s.tvseg", ring)
    good = info.path.read_bytes()
    for data, phrase in ((good[:-1], "do not fit"), (good[:200], "runs past"), (good + b"\0", "after the last block")):
        info.path.write_bytes(data)
        assert any(phrase in p for p in verify_segment(info.path)), phrase
        with pytest.raises(SegmentCorrupt):
            read_segment(info.path, ring)
    info.path.write_bytes(b"")
    with pytest.raises(SegmentCorrupt, match="too short"):
        read_segment(info.path, ring)


def _rewrite(path: Path, edit_seal: Any = None, edit_block: int | None = None) -> None:
    """Alter a segment and recompute every keyless digest, as a deliberate tamperer would."""
    data = path.read_bytes()
    seal_len = int.from_bytes(data[6:10], "big")
    seal_doc = json.loads(data[10 : 10 + seal_len])
    at = 10 + seal_len
    digest_len = int.from_bytes(data[at : at + 4], "big")
    digests = json.loads(data[at + 4 : at + 4 + digest_len])
    blocks = bytearray(data[at + 4 + digest_len + 32 :])
    if edit_seal:
        edit_seal(seal_doc)
    if edit_block is not None:
        blocks[edit_block] ^= 1
        digests["blocks"][0]["sha256"] = hashlib.sha256(bytes(blocks[: digests["blocks"][0]["length"]])).hexdigest()
        digests["ciphertext_sha256"] = hashlib.sha256(bytes(blocks)).hexdigest()
    s = json.dumps(seal_doc, sort_keys=True, separators=(",", ":")).encode()
    d = json.dumps(digests, sort_keys=True, separators=(",", ":")).encode()
    head = data[:6] + len(s).to_bytes(4, "big") + s + len(d).to_bytes(4, "big") + d
    path.write_bytes(head + hashlib.sha256(head).digest() + bytes(blocks))


def test_tampering_that_fixes_the_digests_fails_authentication(
    tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]
) -> None:
    info = seal(day[:40], tmp_path / "s.tvseg", ring)
    good = info.path.read_bytes()
    _rewrite(info.path, edit_block=5)
    assert verify_segment(info.path) == []  # digests were recomputed: only the key can tell
    assert any("fails authentication" in p for p in verify_segment(info.path, ring))
    with pytest.raises(SegmentCorrupt, match="fails authentication"):
        read_segment(info.path, ring)
    info.path.write_bytes(good)
    _rewrite(info.path, edit_seal=lambda s: s.update(batch=2))  # relabel the batch
    assert verify_segment(info.path) == []
    with pytest.raises(SegmentCorrupt, match="fails authentication"):
        read_segment(info.path, ring)


# -- keys ------------------------------------------------------------------------------------
def test_wrong_key_ring_raises_keyring_error(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    info = seal(day[:20], tmp_path / "s.tvseg", ring)
    other = KeyRing.create(tmp_path / "other" / "keyring.json")
    with pytest.raises(KeyRingError, match="lacks key"):
        read_segment(info.path, other)
    impostor = KeyRing(tmp_path / "x.json", [Key(info.kek_id, "kek", os.urandom(32))])
    with pytest.raises(KeyRingError, match="does not open"):
        read_segment(info.path, impostor)
    with pytest.raises(KeyRingError):
        find(info.path, impostor, invoice=day[0]["invoice"])
    with pytest.raises(KeyRingError):
        verify_segment(info.path, impostor)
    assert verify_segment(info.path) == []  # the segment itself is fine


def test_segment_sealed_under_an_old_kek_reads_after_rotation(
    tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]
) -> None:
    old = seal(day[:20], tmp_path / "old.tvseg", ring)
    new_key = ring.add_key("kek")
    assert new_key.key_id != old.kek_id
    new = seal(day[20:40], tmp_path / "new.tvseg", ring)
    assert new.kek_id == new_key.key_id
    reloaded = KeyRing.load(ring.path)
    assert read_segment(old.path, reloaded) == day[:20]
    assert read_segment(new.path, reloaded) == day[20:40]


def test_no_raw_data_key_in_the_file(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    info = seal(day[:20], tmp_path / "s.tvseg", ring)
    header = json.loads(info.path.read_bytes()[10 : 10 + int.from_bytes(info.path.read_bytes()[6:10], "big")])
    assert len(bytes.fromhex(header["wrapped_key"])) == 32 + 16  # key + GCM tag: wrapped, not raw
    assert header["cipher"] == "AES-256-GCM" and header["kek_id"] == info.kek_id


# -- zstd dictionary -------------------------------------------------------------------------
def test_dictionary_is_used_only_when_it_pays(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    useless = b"\x00" * 2048
    plain = seal(day[:300], tmp_path / "a.tvseg", ring, dictionary=useless)
    assert plain.dictionary_id is None
    # A raw dictionary holding these very card tokens makes the block smaller.
    helpful = b"".join(bytes.fromhex(r["card_token"]) for r in day[:300])
    used = seal(day[:300], tmp_path / "b.tvseg", ring, dictionary=helpful)
    assert used.dictionary_id == segments.dictionary_id(helpful)
    assert used.size_bytes < plain.size_bytes
    with pytest.raises(ConfigError, match="dictionary"):
        read_segment(used.path, ring)
    assert read_segment(used.path, ring, dictionaries={used.dictionary_id: helpful}) == day[:300]


# -- durability ------------------------------------------------------------------------------
def test_seal_is_atomic_and_leaves_no_temp_files(tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]]) -> None:
    path = tmp_path / "seg" / "b.tvseg"
    first = seal(day[:10], path, ring)
    second = seal(day[10:20], path, ring)
    assert read_segment(path, ring) == day[10:20] and first.segment_id != second.segment_id
    assert [p.name for p in path.parent.iterdir()] == ["b.tvseg"]


def test_disk_full_while_sealing_leaves_the_old_file(
    tmp_path: Path, ring: KeyRing, day: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.tvseg"
    seal(day[:10], path, ring)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full)
    with pytest.raises(StorageFull, match="nothing was written"):
        seal(day[10:20], path, ring)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir() if p.name != "ring"] == ["b.tvseg"]
    assert read_segment(path, ring) == day[:10]
