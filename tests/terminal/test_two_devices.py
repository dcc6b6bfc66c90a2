"""Two storage devices on real filesystems (two small tmpfs): mirroring, B full / failing / gone /
replaced, A failing, corruption repaired by scrub. Sales and settlement continue in every case."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tillvault.domain.cards import luhn_check_digit
from tillvault.host.process import HostProcess
from tillvault.store.archive import file_sha256
from tillvault.store.devices import MARKER
from tillvault.store.journal import Journal
from tillvault.store.records import Records
from tillvault.store.space import BALLAST_NAME
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.terminal import Terminal

PANS = [p + luhn_check_digit(p) for p in (f"62284800{i:07d}" for i in range(200))]


def _make(a: Path, b: Path, host: HostProcess, tid: str) -> Terminal:
    return Terminal.init(
        a / "data", terminal_id=tid, merchant_qr=DEMO_MERCHANT_QR, host=host.address, device_b=b / "till"
    )


def _sell(t: Terminal, n: int, start: int = 0) -> list[int]:
    out = []
    for i in range(start, start + n):
        r = t.sale(100 + i, PANS[i % len(PANS)], "3012")
        assert r.status == "approved", r.reason
        out.append(r.invoice)
    return out


def test_every_write_and_segment_is_on_both_devices(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    a, b = tmpfs_factory("16m"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV01")
    try:
        _sell(t, 20)
        assert t.devices.b_journal is not None and t.devices.b_journal.tip == t.journal.tip
        t.settle()
        seg = t.tiers.catalogue()[0]
        copy_b = b.path / "till" / "segments" / seg["name"]
        assert file_sha256(copy_b) == seg["digest"]
        assert t.devices.b_journal.tip == t.journal.tip
        assert [d["state"] for d in t.status()["devices"]] == ["ok", "ok"]
    finally:
        t.close()


def test_device_b_full_mid_day_then_back(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    a, b = tmpfs_factory("16m"), tmpfs_factory("8m")
    t = _make(a.path, b.path, host, "TV2DEV02")
    try:
        before = _sell(t, 10)
        filler = b.fill()
        after: list[int] = []
        while not t.devices.alerts() and len(after) < 600:  # B's own reserve absorbs some first
            after += _sell(t, 1, start=10 + len(after))
        after += _sell(t, 30, start=10 + len(after))  # keeps selling on A
        alerts = t.status()["alerts"]
        assert alerts and alerts[0]["device"] == "B" and alerts[0]["state"] == "full"
        assert "storage device B is full: running on A only" in alerts[0]["message"]
        assert "存储设备B已满" in alerts[0]["message_zh"]
        with Terminal.open(a.path / "data") as reader:  # `tillvault status` in another process
            [seen] = [d for d in reader.status()["devices"] if d["name"] == "B"]
            assert seen["state"] == "full", seen  # not "behind A: re-copied by the next sale"
        report = t.settle()
        assert report.balanced and report.totals.sales_count == 10 + len(after)
        filler.unlink()
        t.maintain()  # between sales: B is back, resilvered
        assert t.status()["alerts"] == []
        assert t.devices.b_journal is not None and t.devices.b_journal.tip == t.journal.tip
        assert all(t.find_transaction(i)["status"] == "approved" for i in before + after)
        assert t.scrub()["ok"]
    finally:
        t.close()


def test_device_a_full_spills_to_device_b_and_comes_back_when_it_has_room(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    # A's flash filled by another program while B (a bigger card) has room: the terminal does not
    # refuse sales, it goes on on B (the ladder's critical step), and A is re-copied once freed.
    a, b = tmpfs_factory("8m"), tmpfs_factory("24m")
    t = _make(a.path, b.path, host, "TV2SPILL")
    try:
        before = _sell(t, 10)
        filler = a.fill()
        after = _sell(t, 150, start=10)  # never refused (A alone refuses within these): spilled to B
        assert t.devices.primary == "B" and t.space.device == "B"
        alerts = t.status()["alerts"]
        assert alerts and alerts[0]["device"] == "A" and alerts[0]["state"] == "full", alerts
        report = t.settle()
        assert report.balanced and report.totals.sales_count == 160
        t.close()
        t = Terminal.open(a.path / "data")  # a restart keeps B, which holds the newer sales
        assert t.devices.primary == "B"
        more = _sell(t, 5, start=170)
        filler.unlink()
        t.maintain()  # between sales: A has room again, re-copied from B and mirrored
        assert t.status()["alerts"] == [] and t.devices.b_journal is not None
        assert t.devices.b_journal.tip == t.journal.tip
        assert all(t.find_transaction(i)["status"] == "approved" for i in before + after + more)
        assert t.scrub()["ok"]
    finally:
        t.close()


def test_device_b_failing_with_eio_then_back(tmpfs_factory, ext4_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    a, b = tmpfs_factory("16m"), ext4_factory("32M")
    t = _make(a.path, b.path, host, "TV2DEV06")
    try:
        first = _sell(t, 5)
        b.shutdown()  # the SD card fails: every I/O returns EIO
        more = _sell(t, 5, start=5)
        alert = t.status()["alerts"][0]
        assert alert["device"] == "B" and alert["state"] == "failed"
        assert alert["message"] == "storage device B failed: running on A only; replace B"
        b_health = next(d for d in t.status()["devices"] if d["name"] == "B")["health"]
        assert b_health["state"] == "failing" and b_health["observed"]["io_errors"] >= 1
        assert t.settle().balanced
        # The card is re-seated (fs recovered): B is resilvered between sales.
        b.unmount()
        b.mount()
        t.maintain()
        assert t.status()["alerts"] == []
        assert t.devices.b_journal.tip == t.journal.tip
        assert all(t.find_transaction(i)["status"] == "approved" for i in first + more)
        assert t.scrub()["ok"]
    finally:
        t.close()


def test_device_b_gone_then_replaced(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    a, b = tmpfs_factory("16m"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV03")
    try:
        _sell(t, 10)
        # Unplugged: the folder is no longer the device.
        subprocess.run(["umount", "-l", str(b.path)], check=True)
        _sell(t, 5, start=10)
        alert = t.status()["alerts"][0]
        assert alert["state"] == "gone" and "storage device B is gone" in alert["message"]
        assert t.settle().balanced
        # A new, empty card in the slot is not adopted silently...
        t.maintain()
        assert t.status()["alerts"][0]["state"] == "gone"
        t.close()
        # ...but `init`-time marker on a fresh card (the replace procedure) brings B back, resilvered.
        from tillvault.store.devices import write_marker

        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(b.path)], check=True)
        t = Terminal.open(a.path / "data", exclusive=True)
        write_marker(b.path / "till", terminal_uuid=t.config.terminal_uuid, device="B")
        t.maintain()
        assert t.status()["alerts"] == []
        assert t.devices.b_journal.tip == t.journal.tip
        assert t.scrub()["ok"]
    finally:
        t.close()


def test_device_a_failing_fails_over_to_b(ext4_factory, tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    a, b = ext4_factory("64M"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV04")
    try:
        first = _sell(t, 5)
        a.shutdown()
        more = _sell(t, 5, start=5)
        st = t.status()
        assert st["alerts"][0]["device"] == "A" and "running on B only" in st["alerts"][0]["message"]
        assert t.journal.device == "B"
        assert all(t.records.get(i)["status"] == "approved" for i in first + more)
        assert t.journal.verify().ok
        t.space.ensure_ballast()  # the survivor keeps its own emergency ballast
        assert t.space.ballast_path() == b.path / "till" / BALLAST_NAME and t.space.ballast_path().exists()
        assert t.space.status().ballast_bytes == t.space.ballast_path().stat().st_size
        t.close()
        # The failover is durable: reopened (A readable again or not), B is the primary with every sale.
        a.unmount()
        a.mount()
        t = Terminal.open(a.path / "data", exclusive=True)
        assert t.journal.device == "B"
        assert all(t.records.get(i)["status"] == "approved" for i in first + more)
        assert t.devices.b_journal is not None and t.devices.b_journal.tip == t.journal.tip, "A was resilvered from B"
        assert t.sale(100, PANS[50], "3012").status == "approved"
    finally:
        t.close()


def test_scrub_repairs_a_corrupt_journal_and_segment_on_one_device(
    tmpfs_factory,
    host: HostProcess,  # type: ignore[no-untyped-def]
) -> None:
    a, b = tmpfs_factory("16m"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV05")
    try:
        _sell(t, 20)
        t.settle()
        _sell(t, 10, start=20)
        seg = t.tiers.catalogue()[0]
        # Corrupt the segment on B and a transaction row inside B's journal.
        copy_b = b.path / "till" / "segments" / seg["name"]
        data = bytearray(copy_b.read_bytes())
        data[len(data) // 2] ^= 0x55
        copy_b.write_bytes(bytes(data))
        t.devices.b_journal.conn.execute(
            "UPDATE transactions SET amount = amount + 1 WHERE invoice = (SELECT max(invoice) FROM transactions)"
        )
        report = t.scrub()
        devices = {p["device"] for p in report["problems"]}
        assert devices == {"B"}
        repaired = {(r["device"], r["what"]) for r in report["repaired"]}
        assert ("B", "journal") in repaired and ("B", seg["name"]) in repaired
        assert report["ok"]
        assert file_sha256(copy_b) == seg["digest"]
        # And the other way round: A's segment copy is damaged, B's is good.
        copy_a = a.path / "data" / "segments" / seg["name"]
        copy_a.write_bytes(b"\0" * 100)
        report = t.scrub()
        assert ("A", seg["name"]) in {(r["device"], r["what"]) for r in report["repaired"]}
        assert t.scrub()["ok"] and t.scrub()["problems"] == []
    finally:
        t.close()


def test_a_terminal_catching_up_with_another_process_re_checks_its_mirror(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    a, b = tmpfs_factory("16m"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV07")
    assert (b.path / "till").stat().st_mode & 0o777 == 0o700  # the mirror is as private as A
    _sell(t, 2)
    t.close()
    reader = Terminal.open(a.path / "data")  # has device B open as its mirror, in step
    try:
        assert reader.journal.mirror is not None
        with Terminal.open(a.path / "data", exclusive=True) as other:
            other.devices.release_mirror()  # this process writes A alone (B unavailable to it)
            _sell(other, 1, start=2)
        late = reader.sale(300, PANS[3], "3012")  # takes the lock: catches up, re-checks B, re-copies it
        assert late.status == "approved" and late.invoice == 4
        assert reader.devices.b_journal is not None and reader.devices.b_journal.tip == reader.journal.tip
    finally:
        reader.close()
    mirror = Journal(b.path / "till" / "journal.db", device="B").open()
    try:
        assert mirror.verify().ok
        assert sorted(r["invoice"] for r in Records(mirror, "TV2DEV07").list()) == [1, 2, 3, 4]
    finally:
        mirror.close()


def test_device_a_gone_read_only_fails_over_to_b_from_the_command_line(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import sys

    a, b = tmpfs_factory("16m"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV08")
    first = _sell(t, 2)
    t.close()
    # Worn flash: the kernel remounts the filesystem read-only on errors.
    subprocess.run(["mount", "-o", "remount,ro", str(a.path)], check=True)
    cmd = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "--data", str(a.path / "data")]
    sale = subprocess.run(
        [*cmd, "sale", "--amount", "2.00", "--pan", PANS[7], "--expiry", "3012", "--json"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )  # fmt: skip
    assert sale.returncode == 0, sale.stdout + sale.stderr
    assert json.loads(sale.stdout)["status"] == "approved"
    status = subprocess.run([*cmd, "status", "--json"], capture_output=True, text=True, timeout=60)
    alerts = json.loads(status.stdout)["alerts"]
    assert alerts and alerts[0]["device"] == "A" and "running on B only" in alerts[0]["message"]
    t = Terminal.open(a.path / "data")
    try:
        assert t.journal.device == "B"
        assert all(t.records.get(i)["status"] == "approved" for i in first)
    finally:
        t.close()


@pytest.mark.parametrize("a_after", ["re-copied", "left behind"])
def test_a_process_opened_before_another_failed_over_follows_it(tmpfs_factory, host: HostProcess, a_after: str) -> None:  # type: ignore[no-untyped-def]
    a, b = tmpfs_factory("16m"), tmpfs_factory("16m")
    # Its own terminal id per case: the module's host rightly takes a reused id + STAN as a duplicate
    # (94) once the local time in field 12 has moved on a second, and replays the first case's answers
    # when it has not (the second case then never reached the host at all).
    t = _make(a.path, b.path, host, "TV2DEV09" if a_after == "re-copied" else "TV2DEV11")
    first = _sell(t, 2)
    t.close()
    reader = Terminal.open(a.path / "data")  # opened on A, with B in step
    try:
        assert reader.journal.device == "A"
        with Terminal.open(a.path / "data", exclusive=True) as other:
            if a_after == "left behind":  # A unreadable to that process: it cannot re-copy A later
                other.devices.devs["A"].root.joinpath(MARKER).unlink()
            # What a failing write on A does in that process: B takes over, its generation goes up.
            assert other.journal._fail_over("storage device A: I/O error")
            during = _sell(other, 2, start=2)  # B has these; A has them only once re-copied
        late = reader.sale(300, PANS[5], "3012")  # takes the lock: never writes an old file or device
        assert late.status == "approved" and late.invoice == 5, late.reason
        assert reader.journal.device == ("A" if a_after == "re-copied" else "B")
        assert [reader.records.get(i)["status"] for i in [*first, *during, late.invoice]] == ["approved"] * 5
        if a_after == "re-copied":
            mirror = reader.journal.mirror
            assert mirror is not None and mirror.device == "B" and mirror.tip == reader.journal.tip
    finally:
        reader.close()
    again = Terminal.open(a.path / "data")
    try:
        assert again.journal.verify().ok
        assert sorted(r["invoice"] for r in again.records.list()) == [1, 2, 3, 4, 5]
    finally:
        again.close()


def test_after_a_failover_and_a_re_copy_a_primary_left_alone_keeps_its_sales(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    a, b = tmpfs_factory("16m"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV10")
    _sell(t, 2)
    t.close()
    w = Terminal.open(a.path / "data", exclusive=True)
    try:
        assert w.journal._fail_over("storage device A: I/O error")  # B primary, its generation raised
        _sell(w, 2, start=2)  # A is re-copied and mirrors again: both devices at the same generation
        assert w.journal.mirror is not None and w.journal.mirror.device == "A"
        w.devices._mirror_failed("A", "storage device A is full")  # A drops out as mirror
        w.devices.devs["A"].root = a.path / "elsewhere"  # and stays out for the rest of this run
        alone = _sell(w, 2, start=4)  # on B alone
    finally:
        w.close()
    again = Terminal.open(a.path / "data", exclusive=True)
    try:
        assert again.journal.device == "B", "the device that went on alone is the primary"
        assert sorted(r["invoice"] for r in again.records.list()) == [1, 2, 3, 4, *alone]
        assert again.journal.mirror is not None and again.journal.mirror.tip == again.journal.tip
    finally:
        again.close()


def _journal_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith("journal.db")]


def test_a_lost_journal_on_a_is_restored_from_b_never_copied_over_it(tmp_path: Path, host: HostProcess) -> None:
    t = Terminal.init(
        tmp_path / "a", terminal_id="TV2DEV20", merchant_qr=DEMO_MERCHANT_QR, host=host.address, device_b=tmp_path / "b"
    )
    sold = _sell(t, 10)
    t.close()
    for p in _journal_files(tmp_path / "a"):
        p.unlink()  # device A's journal is gone (a bad block, a careless clean-up)
    reader = Terminal.open(tmp_path / "a")  # a reader (status) copies nothing, and says so
    try:
        assert sorted(r["invoice"] for r in reader.records.list()) == sold
    finally:
        reader.close()
    t = Terminal.open(tmp_path / "a", exclusive=True)
    try:
        assert sorted(r["invoice"] for r in t.records.list()) == sold, "B's transactions are all there"
        assert (tmp_path / "a" / "journal.db").exists() and t.devices.primary in ("A", "B")
        nxt = t.sale(5_000, PANS[50], "3012")
        assert nxt.status == "approved" and nxt.invoice == sold[-1] + 1, "invoice numbers go on, never again from 1"
        assert t.devices.b_journal is not None and t.devices.b_journal.tip == t.journal.tip
        assert t.journal.verify().ok
    finally:
        t.close()


def test_a_journal_on_a_that_lost_its_last_writes_is_recopied_from_b(tmp_path: Path, host: HostProcess) -> None:
    import shutil

    t = Terminal.init(
        tmp_path / "a", terminal_id="TV2DEV21", merchant_qr=DEMO_MERCHANT_QR, host=host.address, device_b=tmp_path / "b"
    )
    _sell(t, 5)
    t.close()
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    for p in _journal_files(tmp_path / "a"):
        shutil.copy2(p, snapshot / p.name)
    t = Terminal.open(tmp_path / "a", exclusive=True)
    later = _sell(t, 5, start=5)
    t.close()
    for p in _journal_files(tmp_path / "a"):
        p.unlink()
    for p in snapshot.iterdir():
        shutil.copy2(p, tmp_path / "a" / p.name)  # A as it was five sales ago (its WAL cut short)
    t = Terminal.open(tmp_path / "a", exclusive=True)
    try:
        approved = {r["invoice"]: r["status"] for r in t.records.list()}
        assert all(approved[i] == "approved" for i in later), "no approved sale is reversed or lost"
        assert len(approved) == 10 and t.journal.tip == t.devices.b_journal.tip  # type: ignore[union-attr]
        assert t.devices.primary == "B", "the device that holds every sale is the one sold on"
        assert t.sale(5_000, PANS[60], "3012").invoice == max(later) + 1
    finally:
        t.close()


def test_without_a_second_device_a_lost_journal_is_named_and_nothing_new_is_made(
    tmp_path: Path, host: HostProcess
) -> None:
    from tillvault.errors import JournalCorrupt

    t = Terminal.init(tmp_path / "a", terminal_id="TV2DEV22", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    _sell(t, 3)
    t.close()
    for p in _journal_files(tmp_path / "a"):
        p.unlink()
    with pytest.raises(JournalCorrupt, match=r"\(journal\.db\) is missing .* \(tillvault restore\)"):
        Terminal.open(tmp_path / "a", exclusive=True)
    assert not (tmp_path / "a" / "journal.db").exists(), "no empty journal made to restart invoice numbers"


def test_two_copies_that_diverged_are_neither_overwritten(tmp_path: Path) -> None:
    import shutil

    from tillvault.terminal.devices import _strictly_ahead

    one = Journal(tmp_path / "one" / "journal.db").open()
    for i in range(3):
        one.append("note", {"i": i})
    one.close()
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    one, two = Journal(tmp_path / "one" / "journal.db").open(), Journal(tmp_path / "two" / "journal.db").open()
    try:
        two.append("note", {"i": 3})
        assert _strictly_ahead(two, one) is True and _strictly_ahead(one, two) is False
        one.append("note", {"i": "other"})
        two.append("note", {"i": 4})
        assert _strictly_ahead(two, one) is None  # each holds what the other lacks
    finally:
        one.close()
        two.close()


def test_a_device_a_behind_b_with_no_room_for_b_s_copy_never_takes_a_sale_on_its_old_copy(
    tmpfs_factory,
    host: HostProcess,  # type: ignore[no-untyped-def]
) -> None:
    import shutil

    a, b = tmpfs_factory("8m"), tmpfs_factory("16m")
    t = _make(a.path, b.path, host, "TV2DEV23")
    _sell(t, 5)
    t.close()
    snapshot = b.path / "snap"
    snapshot.mkdir()
    for p in _journal_files(a.path / "data"):
        shutil.copy2(p, snapshot / p.name)
    t = Terminal.open(a.path / "data", exclusive=True)
    later = _sell(t, 5, start=5)
    t.close()
    for p in _journal_files(a.path / "data"):
        p.unlink()
    for p in snapshot.iterdir():
        shutil.copy2(p, a.path / "data" / p.name)  # A five sales behind B
    filler = a.fill()  # and no room on A for B's copy
    try:
        t = Terminal.open(a.path / "data", exclusive=True)
        try:
            assert t.devices.primary == "B"
            r = t.sale(5_000, PANS[70], "3012")
            assert r.status == "approved" and r.invoice == max(later) + 1, "never invoice 6 again"
            assert all(t.find_transaction(i)["status"] == "approved" for i in later)
        finally:
            t.close()
    finally:
        filler.unlink()
