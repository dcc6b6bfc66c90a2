"""The journal's event encoding, checksums, hash chain, idempotency and verification."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tillvault.errors import InvalidInput
from tillvault.store.encoding import GENESIS, canonical, chain_hash, decode, event_checksum
from tillvault.store.journal import Journal
from tillvault.store.records import Records
from tillvault.store.schema import SCHEMA_VERSION

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_canonical_encoding_round_trips_and_is_stable(value: object) -> None:
    data = canonical(value)
    assert decode(data) == value
    assert canonical(decode(data)) == data


def test_floats_are_refused_because_money_is_integer() -> None:
    with pytest.raises(InvalidInput, match="float"):
        canonical({"amount": 12.34})


@given(
    st.integers(1, 10**9),
    st.integers(0, 2**40),
    st.text(min_size=1, max_size=12),
    st.binary(max_size=64),
    st.integers(0, 63),
)
def test_any_bit_flip_in_a_body_changes_the_checksum(seq: int, ts: int, kind: str, body: bytes, bit: int) -> None:
    original = event_checksum(seq, ts, kind, body)
    if body:
        i = bit % len(body)
        flipped = body[:i] + bytes([body[i] ^ (1 << (bit % 8))]) + body[i + 1 :]
        assert event_checksum(seq, ts, kind, flipped) != original
    assert event_checksum(seq + 1, ts, kind, body) != original


@settings(max_examples=50)
@given(st.lists(st.binary(min_size=16, max_size=16), min_size=2, max_size=20), st.data())
def test_chain_detects_removal_and_reordering(checksums: list[bytes], data: st.DataObject) -> None:
    def link(items: list[bytes]) -> bytes:
        h = GENESIS
        for c in items:
            h = chain_hash(h, c)
        return h

    tip = link(checksums)
    i = data.draw(st.integers(0, len(checksums) - 1))
    removed = checksums[:i] + checksums[i + 1 :]
    assert link(removed) != tip
    j = data.draw(st.integers(0, len(checksums) - 1))
    if checksums[i] != checksums[j]:
        swapped = list(checksums)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        assert link(swapped) != tip


def _journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.db").open()


def test_schema_is_versioned_with_user_version(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    assert j.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert j.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_newer_schema_is_refused_not_guessed_at(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    j.close()
    from tillvault.errors import ConfigError

    with pytest.raises(ConfigError, match="newer"):
        Journal(tmp_path / "journal.db").open()


def test_verify_passes_then_names_the_first_tampered_event(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    records = Records(j, "TV000001")
    for i in range(20):
        tx = records.record_intent(kind="sale", amount=100 + i, currency="CNY", business_date="2026-11-25")
        records.record_outcome(tx["invoice"], status="approved", response_code="00")
    report = j.verify()
    assert report.ok and report.checked == 40 + 20
    j.close()
    raw = sqlite3.connect(tmp_path / "journal.db")
    raw.execute("UPDATE events SET body = replace(body, '\"amount\":107', '\"amount\":999') WHERE seq = 15")
    raw.execute("DELETE FROM events WHERE seq = 30")
    raw.commit()
    raw.close()
    report = Journal(tmp_path / "journal.db").open().verify()
    assert not report.ok
    assert report.problems[0]["seq"] == 15 and "checksum" in report.problems[0]["problem"]
    assert any("gap" in p["problem"] for p in report.problems)


def test_a_tampered_transaction_row_is_reported_by_invoice(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    records = Records(j, "TV000001")
    tx = records.record_intent(kind="sale", amount=500, currency="CNY", business_date="2026-11-25")
    j.conn.execute("UPDATE transactions SET amount = 5 WHERE invoice = ?", (tx["invoice"],))
    report = j.verify()
    assert not report.ok
    assert report.problems[0]["invoice"] == tx["invoice"]


def test_idempotency_key_returns_the_first_result_and_writes_nothing_twice(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    records = Records(j, "TV000001")
    first = records.record_intent(kind="sale", amount=100, currency="CNY", business_date="2026-11-25", idem_key="abc")
    again = records.record_intent(kind="sale", amount=100, currency="CNY", business_date="2026-11-25", idem_key="abc")
    assert again == first
    assert j.conn.execute("SELECT count(*) FROM transactions").fetchone()[0] == 1
    w1 = j.write(lambda ctx: {"n": ctx.emit("note", {"x": 1})}, idem_key="w")
    w2 = j.write(lambda ctx: {"n": ctx.emit("note", {"x": 2})}, idem_key="w")
    assert w2.replayed and w2.result == w1.result
    assert j.conn.execute("SELECT count(*) FROM events WHERE kind = 'note'").fetchone()[0] == 1


def test_stan_is_unique_per_terminal_per_day_and_restarts_next_day(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    records = Records(j, "TV000001")
    stans = [
        records.record_intent(kind="sale", amount=1, currency="CNY", business_date="2026-11-25")["stan"]
        for _ in range(5)
    ]
    assert stans == [1, 2, 3, 4, 5]
    assert records.record_intent(kind="sale", amount=1, currency="CNY", business_date="2026-11-26")["stan"] == 1


@pytest.mark.parametrize("returning", [True, False], ids=["one-statement", "read-then-write"])
def test_a_counter_advances_and_wraps_to_its_start_on_either_sqlite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, returning: bool
) -> None:
    from tillvault.store import journal as journal_module

    monkeypatch.setattr(journal_module, "_HAS_RETURNING", returning)
    j = _journal(tmp_path)

    def advance(name: str, **kw: int) -> int:
        return j.write(lambda ctx: j.next_counter(ctx.conn, name, **kw)).result

    assert [advance("invoice") for _ in range(3)] == [1, 2, 3]
    assert [advance("stan", wrap=3) for _ in range(5)] == [1, 2, 3, 1, 2]
    assert [advance("from-ten", start=10, wrap=11) for _ in range(3)] == [10, 11, 10]
    assert j.counter("invoice") == 3 and j.counter("never") is None


def test_a_failed_write_leaves_nothing_and_the_chain_continues(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.append("a", {"n": 1})

    def boom(ctx):  # type: ignore[no-untyped-def]
        ctx.emit("b", {"n": 2})
        raise RuntimeError("caller failed mid-write")

    with pytest.raises(RuntimeError):
        j.write(boom)
    j.append("c", {"n": 3})
    kinds = [e.kind for e in j.events()]
    assert kinds == ["a", "c"]
    assert j.verify().ok


def test_bad_input_to_records_is_refused_with_the_field_named(tmp_path: Path) -> None:
    records = Records(_journal(tmp_path), "TV000001")
    with pytest.raises(InvalidInput, match="amount"):
        records.record_intent(kind="sale", amount=-5, currency="CNY", business_date="2026-11-25")
    with pytest.raises(InvalidInput, match="kind"):
        records.record_intent(kind="gift", amount=5, currency="CNY", business_date="2026-11-25")
    with pytest.raises(InvalidInput, match="pan"):
        records.record_intent(kind="sale", amount=5, currency="CNY", business_date="2026-11-25", pan="4111")


def test_wal_survives_close_so_a_full_disk_can_still_commit(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.grow_free_pages(256 * 1024)
    j.close()
    wal = tmp_path / "journal.db-wal"
    assert j.persistent_wal
    assert wal.exists() and wal.stat().st_size > 64 * 1024


def test_migrations_carry_existing_rows_forward(tmp_path: Path) -> None:
    from tillvault.store import schema
    from tillvault.store.encoding import row_checksum
    from tillvault.store.records import TX_COLUMNS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for version in range(2):  # a journal written by schema version 2
        conn.execute("BEGIN")
        for statement in schema.MIGRATIONS[version]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute("COMMIT")
    row = dict.fromkeys(TX_COLUMNS)
    row.update(
        invoice=7,
        terminal_id="TV000001",
        batch=1,
        stan=7,
        business_date="2026-11-25",
        kind="sale",
        status="approved",
        amount=1234,
        currency="CNY",
        created_ms=1,
        updated_ms=1,
        idem_key="k",
    )
    marks = ", ".join("?" * (len(TX_COLUMNS) + 1))
    conn.execute(
        f"INSERT INTO transactions ({', '.join(TX_COLUMNS)}, checksum) VALUES ({marks})",
        (*row.values(), row_checksum(row)),
    )
    conn.close()
    j = Journal(path).open()
    assert j.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert Records(j, "TV000001").by_idem_key("k")["amount"] == 1234
    assert Records(j, "TV000001").day_total("2026-11-25") == (1234, 1)  # schema 5 counted the old row
    assert j.verify().ok


def _summed_day_total(j: Journal, day: str) -> tuple[int, int]:
    from tillvault.store.schema import LIVE_SALE

    row = j.conn.execute(
        f"SELECT coalesce(sum(amount), 0), count(*) FROM transactions WHERE business_date = ? AND {LIVE_SALE}", (day,)
    ).fetchone()
    return int(row[0]), int(row[1])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["intent", "outcome", "void", "delete", "fail"]),
            st.sampled_from(["sale", "refund", "offline_sale"]),
            st.integers(1, 50_000),
            st.sampled_from(["2026-11-24", "2026-11-25"]),
            st.sampled_from(["approved", "declined", "offline_approved", "not_completed", "reversed"]),
        ),
        max_size=30,
    )
)
def test_the_kept_day_total_always_equals_the_sum_over_the_rows(tmp_path_factory, steps) -> None:  # type: ignore[no-untyped-def]
    j = _journal(tmp_path_factory.mktemp("days"))
    records = Records(j, "TV000001")
    invoices: list[int] = []
    for action, kind, amount, day, status in steps:
        if action == "intent" or not invoices:
            invoices.append(
                records.record_intent(kind=kind, amount=amount, currency="CNY", business_date=day)["invoice"]
            )
        elif action == "outcome":
            records.record_outcome(invoices[amount % len(invoices)], status=status)
        elif action == "void":
            target = invoices[amount % len(invoices)]
            j.write(lambda ctx, target=target: records.set_status(ctx, target, "voided"))
        elif action == "delete":
            j.execute_direct("DELETE FROM transactions WHERE invoice = ?", (invoices.pop(amount % len(invoices)),))
        else:  # a write that fails half-way leaves the total as it was

            def half(ctx, target=invoices[amount % len(invoices)]):  # type: ignore[no-untyped-def]
                records.set_status(ctx, target, "approved")
                raise RuntimeError("caller failed mid-write")

            with pytest.raises(RuntimeError):
                j.write(half)
        for d in ("2026-11-24", "2026-11-25"):
            assert records.day_total(d) == _summed_day_total(j, d)


def test_scrubbing_the_wal_leaves_no_old_frame_and_never_waits_for_a_reader(tmp_path: Path) -> None:
    import time

    j = _journal(tmp_path)
    secret = "SECRET-" * 40

    def put(ctx: object) -> None:
        ctx.conn.execute("INSERT INTO meta (key, value) VALUES ('s', ?)", (secret,))  # type: ignore[attr-defined]

    j.write(put)
    j.write(lambda ctx: ctx.conn.execute("DELETE FROM meta WHERE key = 's'"))
    wal = tmp_path / "journal.db-wal"
    assert b"SECRET-" in wal.read_bytes()
    size = wal.stat().st_size
    # Another connection's read keeps the frames in use: the scrub gives up at once.
    reader = sqlite3.connect(tmp_path / "journal.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM events").fetchone()
    began = time.monotonic()
    assert j.scrub_wal() is False
    assert time.monotonic() - began < 2.0, "the scrub must not wait for the reader (every writer would wait too)"
    reader.rollback()
    reader.close()
    assert j.scrub_wal() is True
    assert wal.stat().st_size == size, "the WAL keeps its size"
    assert b"SECRET-" not in wal.read_bytes() and b"SECRET-" not in (tmp_path / "journal.db").read_bytes()
    j.write(lambda ctx: ctx.emit("after", {"n": 1}))  # and it works on
    j.close()
    assert Journal(tmp_path / "journal.db").open().verify().ok


def test_filler_left_by_a_killed_top_up_goes_back_to_the_reserve(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.grow_free_pages(256 * 1024)
    free = j.free_page_bytes()
    # What a SIGKILL between the filler rows and their delete leaves behind.
    conn = j.conn
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO headroom (pad) VALUES (zeroblob(?))", [(4096 - 200,)] * 32)
    conn.execute("COMMIT")
    assert j.free_page_bytes() < free
    # Even when no growth is wanted (the disk is full, or the reserve is already there).
    j.grow_free_pages(0)
    assert conn.execute("SELECT count(*) FROM headroom").fetchone()[0] == 0
    assert j.free_page_bytes() >= free
    j.close()
