"""A real filesystem filled to 100%: admission refuses sales first, settlement still commits.

Mounts a small tmpfs (root only; skipped with the reason elsewhere), fills it with another
file, and checks DESIGN.md invariants 2 and 3 on the real thing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tillvault.errors import StorageFull
from tillvault.store.journal import SETTLEMENT
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.terminal import Terminal


def _sale(t: Terminal, amount: int) -> dict:
    with t.admit_sale():
        tx = t.records.record_intent(
            kind="sale", amount=amount, currency="CNY", business_date=t.business_date(), masked_pan="622848******0001"
        )
        return t.records.record_outcome(tx["invoice"], status="approved", response_code="00", rrn="000000000001")


def _event_count(t: Terminal) -> int:
    return int(t.journal.conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_full_filesystem_refuses_sales_before_writing_but_settlement_commits(tmpfs) -> None:  # type: ignore[no-untyped-def]
    data = tmpfs.path / "data"
    t = Terminal.init(data, terminal_id="TV000001", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    committed = [_sale(t, 100 + i) for i in range(30)]
    filler = tmpfs.fill()

    # Sales use the headroom above the reserve, then admission refuses them before anything is written.
    refused = None
    for i in range(10_000):
        before = _event_count(t)
        try:
            committed.append(_sale(t, 1_000 + i))
        except StorageFull as exc:
            refused = exc
            assert _event_count(t) == before, "a refused sale must write nothing"
            break
    assert refused is not None, "admission should refuse once only the reserve is left"
    assert "storage device A is full" in str(refused) and "tillvault settle" in str(refused)
    assert "存储设备A已满" in refused.message_zh
    assert t.status()["pressure"] == "exhausted"

    # Settlement-class writes draw on the reserve: a batch close's worth of events commits.
    for n in range(len(committed)):
        t.journal.append("batch_upload", {"invoice": committed[n]["invoice"], "n": n}, klass=SETTLEMENT)
    t.settlement_write("batch_closed", {"batch": 1, "count": len(committed)})

    # Nothing committed is lost, everything verifies.
    assert t.scrub()["ok"]
    for tx in committed:
        assert t.records.get(tx["invoice"])["status"] == "approved"
    t.close()

    # A new process (the CLI) can still open and commit on the full disk: the WAL persisted.
    t = Terminal.open(data)
    t.settlement_write("report_printed", {"batch": 1})
    with pytest.raises(StorageFull):
        _sale(t, 5)

    # Space returns: normal operation resumes.
    filler.unlink()
    t.maintain()
    _sale(t, 777)
    assert t.status()["pressure"] in ("normal", "watch", "high")
    assert t.scrub()["ok"]
    t.close()


def test_engine_full_error_rolls_back_and_journal_resumes_after_space_returns(tmpfs) -> None:  # type: ignore[no-untyped-def]
    """Without admission (raw writes) SQLITE_FULL surfaces as StorageFull; nothing committed is lost."""
    data = tmpfs.path / "data"
    t = Terminal.init(data, terminal_id="TV000001", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    filler = tmpfs.fill()
    written = 0
    with pytest.raises(StorageFull) as info:
        for i in range(1_000_000):
            t.journal.append("raw", {"i": i, "pad": "x" * 3000})
            written += 1
    assert "rolled back" in str(info.value)
    assert written > 0
    # The journal is consistent and every acknowledged write is there.
    report = t.scrub()
    assert report["ok"], report["problems"][:3]
    count = t.journal.conn.execute("SELECT count(*) FROM events WHERE kind = 'raw'").fetchone()[0]
    assert count == written
    filler.unlink()
    t.journal.append("raw", {"i": -1})
    assert t.scrub()["ok"]
    t.close()
    # Readable by plain SQLite too.
    raw = sqlite3.connect(Path(data) / "journal.db")
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()


def test_a_top_up_on_a_full_disk_keeps_the_free_pages_it_found(tmpfs) -> None:  # type: ignore[no-untyped-def]
    from tillvault.store.journal import Journal

    j = Journal(tmpfs.path / "journal.db").open()
    reached = j.grow_free_pages(300 * 1024)
    assert reached >= 300 * 1024
    tmpfs.fill()
    # Filler would first take the free pages already there; on a full disk it could not give them
    # back (the checkpoint cannot extend the file), and the settlement reserve would be gone.
    assert j.grow_free_pages(600 * 1024) == reached
    assert j.free_page_bytes() == reached
    assert j.conn.execute("SELECT count(*) FROM headroom").fetchone()[0] == 0
    j.close()


def test_init_on_a_filesystem_too_small_for_a_terminal_says_so_and_makes_nothing(tmpfs_factory) -> None:  # type: ignore[no-untyped-def]
    from tillvault.errors import InvalidInput
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR
    from tillvault.terminal.terminal import Terminal

    disk = tmpfs_factory("1m")
    with pytest.raises(InvalidInput, match=r"has [0-9,]+ B free, below the [0-9,]+ B a terminal needs"):
        Terminal.init(disk.path / "data", terminal_id="TVSMALL1", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    assert not (disk.path / "data").exists()
    # A quota does not make the disk larger, and device B must hold what A holds.
    with pytest.raises(InvalidInput, match=r"has [0-9,]+ B free, below the [0-9,]+ B a terminal needs"):
        Terminal.init(
            disk.path / "data", terminal_id="TVSMALL1", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9",
            capacity="64MiB",
        )  # fmt: skip
    roomy = tmpfs_factory("16m")
    with pytest.raises(InvalidInput, match=rf"filesystem of {disk.path / 'b'} has [0-9,]+ B free"):
        Terminal.init(
            roomy.path / "data", terminal_id="TVSMALL1", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9",
            device_b=disk.path / "b",
        )  # fmt: skip
    with pytest.raises(InvalidInput, match=r"--capacity 67,108,864 B is more than the whole filesystem"):
        Terminal.init(
            roomy.path / "data", terminal_id="TVSMALL1", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9",
            capacity="64MiB",
        )  # fmt: skip
    assert not (disk.path / "data").exists() and not (roomy.path / "data").exists() and not (disk.path / "b").exists()
