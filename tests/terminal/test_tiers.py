"""Sealing, offload with acknowledgement, eviction, fetch, retention and the pressure ladder."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tillvault.errors import SegmentCorrupt
from tillvault.store.archive import ArchiveUnavailable, DirectorySink, file_sha256
from tillvault.store.segments import verify_segment
from tillvault.terminal.terminal import Terminal

VISA = "4111111111111111"
EXPIRY = "3012"


def _day(t: Terminal, n: int, start: int = 100) -> list[int]:
    invoices = []
    for i in range(n):
        r = t.sale(start + i, VISA, EXPIRY)
        assert r.status == "approved", r.reason
        invoices.append(r.invoice)
    t.settle()
    return invoices


def test_settled_batch_is_sealed_and_leaves_the_hot_tier(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    invoices = _day(t, 25)
    cat = t.tiers.catalogue()
    assert len(cat) == 1 and cat[0]["records"] == 25
    assert t.records.list() == []
    assert t.find_transaction(invoices[7])["amount"] == 107
    st = t.status()
    assert st["sealed_transactions"] == 25 and st["sealed_segments"] == 1
    report = t.scrub()
    assert report["ok"], report["problems"]
    # The hot chain continues from the sealed segment's last link.
    _day(t, 5)
    assert t.scrub()["ok"]


def test_offload_acknowledges_then_evicts_only_after_retention_and_fetches_back(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive, retention={"transactions_local_days": 7})
    invoices = _day(t, 10)
    sink = t.archive_sink()
    assert sink is not None
    assert t.tiers.offload(sink).offloaded == 1
    seg = t.tiers.catalogue()[0]
    assert seg["acked_ms"] is not None
    assert file_sha256(archive / seg["name"]) == seg["digest"]
    assert t.tiers.evict(sink, keep_days=7, now_ms=t.now_ms()).evicted == 0, "inside local retention"
    assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 1).evicted == 1
    assert not t.tiers.segment_path(seg["name"]).exists()
    # Still found: read from the archive's verified copy, and nothing is fetched onto the terminal.
    assert t.find_transaction(invoices[0])["amount"] == 100
    assert not t.tiers.segment_path(seg["name"]).exists()
    archive.rename(tmp_path / "nas-unplugged")  # the archive is not reachable: not found, said so
    with pytest.raises(Exception, match="invoice"):
        t.find_transaction(invoices[0])
    (tmp_path / "nas-unplugged").rename(archive)
    t.tiers.fetch(sink, seg["name"])
    assert t.find_transaction(invoices[0])["amount"] == 100
    assert t.scrub()["ok"]


def test_scrub_checks_the_archives_copies_and_sends_a_lost_one_again_while_it_can(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    _day(t, 10)
    _day(t, 10, start=200)
    sink = t.archive_sink()
    assert sink is not None and t.tiers.offload(sink).offloaded == 2
    kept, gone = t.tiers.catalogue()
    report = t.scrub()
    assert report["ok"] and report["archive"] == {"configured": True, "reachable": True, "checked": 2, "other_sink": 0}
    # The archive's copy of a segment still on the terminal rots: scrub finds it and sends it again.
    damaged = bytearray((archive / kept["name"]).read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    (archive / kept["name"]).write_bytes(bytes(damaged))
    report = t.scrub()
    assert report["ok"], report["problems"]
    assert [(r["device"], r["what"]) for r in report["repaired"]] == [("archive", kept["name"])]
    assert file_sha256(archive / kept["name"]) == kept["digest"]
    # A segment the terminal has evicted loses its only copy: scrub says so, and cannot mend it.
    assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 1).evicted == 2
    (archive / gone["name"]).unlink()
    report = t.scrub()
    assert not report["ok"]
    [problem] = report["problems"]
    assert problem["device"] == "archive" and problem["segment"] == gone["name"]
    assert "no longer holds this segment" in problem["problem"]
    # An unplugged archive is not a problem of the terminal's: it is said in the summary.
    archive.rename(tmp_path / "nas-unplugged")
    report = t.scrub()
    assert report["ok"] and report["archive"]["reachable"] is False
    # Nor is the empty mount point an unplugged disk leaves behind: no loss reported, nothing
    # copied onto the terminal's own disk in its place.
    archive.mkdir()
    report = t.scrub()
    assert report["ok"] and report["archive"]["reachable"] is False and "not mounted" in report["archive"]["why"]
    assert list(archive.iterdir()) == []


def test_unacknowledged_segment_is_never_evicted(make_terminal: Callable[..., Terminal], tmp_path: Path) -> None:
    t = make_terminal()
    _day(t, 5)
    sink = DirectorySink(tmp_path / "elsewhere")  # never given the segment
    (tmp_path / "elsewhere").mkdir()
    assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 10**9).evicted == 0
    assert t.tiers.segment_path(t.tiers.catalogue()[0]["name"]).exists()


def test_sink_gone_or_full_keeps_the_local_copy(make_terminal: Callable[..., Terminal], tmp_path: Path, tmpfs) -> None:  # type: ignore[no-untyped-def]
    t = make_terminal()
    _day(t, 30)
    gone = DirectorySink(tmp_path / "unplugged")
    report = t.tiers.offload(gone)
    assert report.offloaded == 0 and "not available" in report.errors[0]
    tmpfs.fill()
    full = DirectorySink(tmpfs.path)
    report = t.tiers.offload(full)
    assert report.offloaded == 0 and "could not take" in report.errors[0]
    assert not list(tmpfs.path.glob(".tmp-*")), "no partial copy is left behind"
    seg = t.tiers.catalogue()[0]
    assert seg["acked_ms"] is None and t.tiers.segment_path(seg["name"]).exists()


def test_a_corrupt_copy_in_the_archive_is_not_an_acknowledgement(tmp_path: Path) -> None:
    src = tmp_path / "seg.tvs"
    src.write_bytes(b"x" * 1000)
    sink = DirectorySink(tmp_path / "nas")
    (tmp_path / "nas").mkdir()
    with pytest.raises(ArchiveUnavailable):
        sink.put(src, "0" * 64)
    assert not (tmp_path / "nas" / "seg.tvs").exists()


CHILD = r"""
import sys
from pathlib import Path
from tillvault.terminal.terminal import Terminal
t = Terminal.open(Path(sys.argv[1]), exclusive=True)
sink = t.archive_sink()
while True:
    t.tiers.offload(sink)
    t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 10**9)
    for seg in t.tiers.catalogue():
        if not seg["local"]:
            t.tiers.fetch(sink, seg["name"])
"""


def test_kill_9_during_offload_and_eviction_leaves_every_segment_somewhere_verified(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    for d in range(4):
        _day(t, 15, start=100 * (d + 1))
    data = t.data_dir
    t.close()
    rng = random.Random(5)
    for _ in range(15):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data)], env=os.environ.copy(), stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.3, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t = Terminal.open(data, exclusive=True)
        try:
            for seg in t.tiers.catalogue():
                local = t.tiers.segment_path(seg["name"])
                local_ok = local.exists() and file_sha256(local) == seg["digest"]
                remote_ok = (archive / seg["name"]).exists() and file_sha256(archive / seg["name"]) == seg["digest"]
                assert local_ok or (seg["acked_ms"] is not None and remote_ok), seg["name"]
                if seg["local"]:
                    assert local_ok, f"{seg['name']} catalogued as local but its copy does not verify"
            assert t.journal.verify().ok
        finally:
            t.close()


def test_scrub_reports_a_corrupted_segment(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    _day(t, 8)
    path = t.tiers.segment_path(t.tiers.catalogue()[0]["name"])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    report = t.scrub()
    assert not report["ok"]
    assert any(p.get("segment") == path.name for p in report["problems"])
    assert verify_segment(path)


def test_a_rotten_local_segment_is_fetched_back_from_the_archive_that_acknowledged_it(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    # One device, ageing flash: a sealed segment rots on the terminal. The archive acknowledged
    # it, so scrub brings the archive's copy back (checked against the catalogue's digest).
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    invoices = _day(t, 8)
    later = _day(t, 8, start=300)
    newest = _day(t, 3, start=500)
    sink = t.archive_sink()
    assert sink is not None and t.tiers.offload(sink, limit=1).offloaded == 1
    acked, unacked, intact = t.tiers.catalogue()
    assert acked["acked_ms"] is not None and unacked["acked_ms"] is None
    for seg in (acked, unacked):
        path = t.tiers.segment_path(seg["name"])
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    # Before any repair: a damaged segment hides no other one, the archive answers for what it
    # acknowledged, and what only the damaged copy held is named as such (not "not found").
    assert t.find_transaction(newest[0])["amount"] == 500
    assert t.find_transaction(invoices[1])["amount"] == 101
    with pytest.raises(SegmentCorrupt, match=rf"invoice {later[0]:06d} .*{unacked['name']}"):
        t.find_transaction(later[0])
    assert intact["local"]
    report = t.scrub()
    assert [(r["device"], r["what"]) for r in report["repaired"]] == [("A", acked["name"])]
    assert "fetched back from the archive" in report["repaired"][0]["how"]
    assert file_sha256(t.tiers.segment_path(acked["name"])) == acked["digest"]
    assert t.find_transaction(invoices[0])["amount"] == 100
    # The other one the archive never acknowledged: reported, never "repaired" from a guess.
    assert not report["ok"]
    [left] = [p for p in report["problems"] if "repaired" not in p]
    assert left["segment"] == unacked["name"] and "has not acknowledged" in left["problem"]
    archive.rename(tmp_path / "nas-unplugged")  # nothing to fetch from: said, nothing changed
    path = t.tiers.segment_path(acked["name"])
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    report = t.scrub()
    assert any(p["segment"] == acked["name"] and "repair_failed" in p for p in report["problems"])


def test_cleanup_frees_caches_and_finished_downloads_first(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    update = t.caches.path("updates") / "firmware-2.1.bin"
    update.write_bytes(os.urandom(300_000))
    partial = t.caches.path("updates") / "firmware-2.2.bin.part"
    partial.write_bytes(b"p" * 1000)
    abandoned = t.caches.path("updates") / "firmware-2.0.bin.part"
    abandoned.write_bytes(b"a" * 200_000)
    old = time.time() - 7200
    os.utime(update, (old, old))
    os.utime(partial, (time.time() - 600, time.time() - 600))  # written to ten minutes ago
    os.utime(abandoned, (old, old))  # nothing has written to it for two hours: the download died
    report = t.cleanup().to_dict()
    assert not update.exists(), "a finished download is evicted"
    assert partial.exists(), "a download in progress is kept"
    assert not abandoned.exists(), "an abandoned download does not hold its space for ever"
    assert report["freed_bytes"] >= 500_000
    assert any("cleaned caches" in a for a in report["actions"])


def test_customers_are_purged_after_inactivity(make_terminal: Callable[..., Terminal]) -> None:
    now = [datetime.now().astimezone()]
    t = make_terminal(retention={"customers_inactive_days": 30})
    t.clock = lambda: now[0]
    t.sale(1000, VISA, EXPIRY, customer_phone="13800138000")
    assert t.journal.conn.execute("SELECT count(*) FROM customers").fetchone()[0] == 1
    now[0] += timedelta(days=31)
    assert t.purge()["customers"] == 1


def test_status_reports_runway_from_usage_samples(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    base = t.now_ms() - 10 * 86_400_000
    rows = [(base + d * 86_400_000, 1_000_000 + d * 50_000, "sample") for d in range(10)]
    t.journal.conn.executemany("INSERT INTO usage_samples (ts_ms, used_bytes, kind) VALUES (?,?,?)", rows)
    st = t.status()
    assert st["bytes_per_day"] == pytest.approx(50_000, rel=0.05)
    expected = st["available_for_sales_bytes"] / 50_000
    assert st["runway_days"] == pytest.approx(expected, rel=0.1)
    assert "message_zh" in st


def test_ladder_acts_in_order_as_pressure_rises(make_terminal: Callable[..., Terminal], tmp_path: Path) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive, capacity="4MiB")
    from tillvault.domain.cards import luhn_check_digit

    pans = [f"62284800{i:07d}" for i in range(60)]
    pans = [p + luhn_check_digit(p) for p in pans]
    for day in range(3):
        for i in range(60):
            assert t.sale(100 + i, pans[i], EXPIRY).status == "approved"
        if day < 2:
            t.settle()
    assert t.status()["pressure"] == "normal"
    # An update download lands and takes most of the space: pressure climbs to critical.
    blob = t.caches.path("updates") / "update-3.0.bin"
    st = t.space.status()
    blob.write_bytes(b"u" * (st.available_for_sales_bytes - 30 * t.space.policy.sale_life_bytes))
    old = time.time() - 7200
    os.utime(blob, (old, old))
    before = t.status()
    assert before["pressure"] == "critical"
    report = t.relieve_pressure().to_dict()
    actions = " | ".join(report["actions"])
    # watch: caches and sealing; high: offload and evict; critical: ballast and settlement.
    assert "cleaned caches" in actions and "offloaded 2 segment(s)" in actions and "evicted 2" in actions
    assert "released the ballast" in actions and "forced settlement of batch 3" in actions
    assert actions.index("cleaned caches") < actions.index("offloaded") < actions.index("released the ballast")
    after = t.status()
    assert after["pressure"] in ("normal", "watch") and not blob.exists()
    assert after["ballast_bytes"] > 0, "the ballast is rebuilt once space is back"
    assert t.sale(100, pans[0], EXPIRY).status == "approved"
    assert t.scrub()["ok"]
    assert report["message_zh"].startswith("存储设备A")


def test_before_refusing_a_sale_the_terminal_frees_space_itself(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    t = make_terminal(capacity="3MiB")
    blob = t.caches.path("updates") / "update.bin"
    st = t.space.status()
    blob.write_bytes(b"u" * (st.available_for_sales_bytes - 100))  # only the reserve is left
    old = time.time() - 7200
    os.utime(blob, (old, old))
    r = t.sale(100, VISA, EXPIRY)
    assert r.status == "approved", r.reason  # the finished download was cleaned first
    assert not blob.exists()


def test_a_refund_of_an_evicted_sale_is_bounded_by_the_refunds_the_archive_holds(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    sale = t.sale(1_000, VISA, EXPIRY)
    assert t.refund(300, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"
    t.settle()
    sink = t.archive_sink()
    assert sink is not None and t.tiers.offload(sink).offloaded == 1
    assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 1).evicted == 1
    over = t.refund(800, VISA, EXPIRY, original_invoice=sale.invoice)
    assert over.status == "refused" and "exceeds what remains" in over.reason and "7.00" in over.reason
    assert t.refund(700, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"
    assert t.refund(1, VISA, EXPIRY, original_invoice=sale.invoice).status == "refused"


def test_earlier_refunds_that_cannot_be_read_refuse_the_refund_rather_than_forget_them(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    sale = t.sale(1_000, VISA, EXPIRY)
    t.settle()  # batch 1: the sale
    assert t.refund(600, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"
    t.settle()  # batch 2: its refund
    sink = t.archive_sink()
    assert sink is not None and t.tiers.offload(sink).offloaded == 2
    assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 1).evicted == 2
    first = t.tiers.catalogue()[0]["name"]
    t.tiers.fetch(sink, first)  # the sale is on the terminal again; its refund only in the archive
    archive.rename(tmp_path / "nas-unplugged")
    blind = t.refund(1_000, VISA, EXPIRY, original_invoice=sale.invoice)
    assert blind.status == "refused" and "cannot all be read" in blind.reason and "connect the archive" in blind.reason
    (tmp_path / "nas-unplugged").rename(archive)
    over = t.refund(1_000, VISA, EXPIRY, original_invoice=sale.invoice)
    assert over.status == "refused" and "exceeds what remains" in over.reason and "4.00" in over.reason


def test_an_archive_is_known_by_its_marker_and_an_empty_mount_point_never_taken_for_it(
    make_terminal: Callable[..., Terminal],
    tmp_path: Path,
    tmpfs_factory,  # type: ignore[no-untyped-def]
) -> None:
    nas = tmpfs_factory("8m")  # a disk of its own, as a NAS or USB disk is
    t = make_terminal(archive=nas.path)
    _day(t, 10)
    _day(t, 10, start=300)
    sink = t.archive_sink()
    assert sink is not None and t.tiers.offload(sink).offloaded == 2
    assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 1).evicted == 2
    gone = t.tiers.catalogue()[0]["name"]
    (nas.path / gone).unlink()  # a segment lost from the archive (the marker still there): a loss, said so
    report = t.scrub()
    assert not report["ok"] and report["archive"]["reachable"] is True
    assert "no longer holds this segment" in report["problems"][0]["problem"]
    for f in nas.path.iterdir():  # wiped, marker and all: not that archive any more, and how to use it again
        f.unlink()
    report = t.scrub()
    assert report["archive"]["reachable"] is False  # never "lost, restore the archive from its backup"
    kept = t.tiers.catalogue()[1]
    with pytest.raises(ArchiveUnavailable, match=r"holds no archive marker: .*tillvault archive set"):
        t.archive_sink().fetch(kept["name"], tmp_path / kept["name"], kept["digest"])
    # A folder on the terminal's own disk without the marker is an empty mount point: nothing is
    # sent there, so nothing can be evicted on the strength of it.
    local = tmp_path / "mnt-nas"
    local.mkdir()
    other = make_terminal("other", archive=local)
    (local / ".tillvault-archive").unlink()  # as if the disk marked at set-up is not mounted now
    _day(other, 10)
    report = other.tiers.offload(other.archive_sink())
    assert report.offloaded == 0 and report.errors and "not mounted" in report.errors[0]
    assert list(local.iterdir()) == []
    assert other.scrub()["archive"]["reachable"] is False
    # The same on a third disk: the terminal's data on a disk of its own, the NAS's mount point an
    # empty folder on the system disk. Without the marker set up there, nothing is sent or evicted.
    own = tmpfs_factory("8m")
    mount_point = tmp_path / "mnt-nas-2"
    mount_point.mkdir()
    third = make_terminal(archive=mount_point, name=str(own.path / "till"))
    (mount_point / ".tillvault-archive").unlink()  # the NAS is not mounted now
    _day(third, 5)
    report = third.tiers.offload(third.archive_sink())
    assert report.offloaded == 0 and "holds no archive marker" in report.errors[0]
    assert third.tiers.evict(third.archive_sink(), keep_days=0, now_ms=third.now_ms() + 1).evicted == 0
    assert list(mount_point.iterdir()) == [] and all(s["local"] for s in third.tiers.catalogue())
    assert "holds no archive marker" in " ".join(third.cleanup().to_dict()["actions"])


def test_init_names_an_archive_folder_that_is_not_there_and_creates_nothing(tmp_path: Path) -> None:
    from tillvault.errors import InvalidInput
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    with pytest.raises(InvalidInput, match=r"archive folder .*nas does not exist: mount the NAS"):
        Terminal.init(
            tmp_path / "t", terminal_id="TVARCH01", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9",
            archive=tmp_path / "nas",
        )  # fmt: skip
    assert not (tmp_path / "t").exists() and not (tmp_path / "nas").exists()


def test_the_transaction_list_reaches_batches_that_left_for_the_archive_when_asked(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    import json

    archive = tmp_path / "nas"
    archive.mkdir()
    now = [datetime(2026, 11, 20, 12, 0).astimezone()]
    t = make_terminal(archive=archive, clock=lambda: now[0])
    old = _day(t, 6)  # 2026-11-20: settled, sealed, offloaded and evicted below
    sink = t.archive_sink()
    assert sink is not None and t.tiers.offload(sink).offloaded == 1
    assert t.tiers.evict(sink, keep_days=0, now_ms=int(time.time() * 1000) + 1).evicted == 1  # acked: wall time
    now[0] += timedelta(days=1)
    kept = _day(t, 3, start=300)  # 2026-11-21: sealed, still on the terminal
    now[0] += timedelta(days=1)
    hot = [t.sale(500, VISA, EXPIRY).invoice]  # 2026-11-22: the open batch
    listed = [r["invoice"] for r in t.transactions()]
    assert listed == sorted(hot + kept, reverse=True), "by default: what the terminal holds"
    unread: list[str] = []
    everything = [r["invoice"] for r in t.transactions(archived=True, unread=unread)]
    assert everything == sorted(hot + kept + old, reverse=True) and unread == []
    [gone] = [seg["name"] for seg in t.tiers.catalogue() if not seg["local"]]
    assert not t.tiers.segment_path(gone).exists(), "read where it lies: nothing copied back"
    day = t.transactions(archived=True, business_date="2026-11-20")
    assert [r["invoice"] for r in day] == sorted(old, reverse=True) and day[0]["masked_pan"].endswith("1111")
    assert len(t.transactions(archived=True, limit=4)) == 4
    # The archive unplugged: the rest is listed, and what could not be read is named.
    archive.rename(tmp_path / "nas-unplugged")
    unread = []
    assert [r["invoice"] for r in t.transactions(archived=True, unread=unread)] == listed
    assert len(unread) == 1 and unread[0].endswith("000001.tvs")
    unread = []
    assert [r["invoice"] for r in t.transactions(archived=True, business_date="2026-11-22", unread=unread)] == hot
    assert unread == [], "another day's segment is not even looked for (the catalogue's time span)"
    data = t.data_dir
    t.close()
    cli = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "--data", str(data), "tx", "list"]
    out = subprocess.run([*cli, "--archived", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and len(json.loads(out.stdout)) == len(listed)
    assert "could not be read from the archive" in out.stderr
    (tmp_path / "nas-unplugged").rename(archive)
    # A local segment damaged on this device is named as such, not as the archive's.
    [local] = [seg["name"] for seg in Terminal.open(data).tiers.catalogue() if seg["local"]]
    with open(data / "segments" / local, "r+b") as f:
        f.seek(200)
        f.write(b"\xff" * 64)
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60)
    assert "on this device cannot be read" in out.stderr and "from the archive" not in out.stderr
    out = subprocess.run(
        [*cli, "--archived", "--date", "2026-11-20", "--json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and [r["invoice"] for r in json.loads(out.stdout)] == sorted(old, reverse=True)
    compact = subprocess.run([*cli, "--archived", "--date", "20261120", "--json"], capture_output=True, text=True)
    assert json.loads(compact.stdout) == json.loads(out.stdout), "the same day, written without dashes"
    bad = subprocess.run([*cli, "--date", "20-11-2026"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--date must be YYYY-MM-DD" in bad.stderr + bad.stdout


def test_the_list_is_newest_first_across_tiers_and_reads_no_segment_it_does_not_need(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    batches = [_day(t, 3, start=100 * (b + 1)) for b in range(3)]
    sink = t.archive_sink()
    assert sink is not None and t.tiers.offload(sink).offloaded == 3
    first, second, _ = (seg["name"] for seg in t.tiers.catalogue())
    with open(archive / first, "r+b") as f:  # the oldest batch's archive copy rots: it stays on the terminal
        f.seek(40)
        f.write(b"\x00\x01\x02")
    assert t.tiers.evict(sink, keep_days=0, now_ms=t.now_ms() + 1).evicted == 2
    assert [seg["local"] for seg in t.tiers.catalogue()] == [1, 0, 0]
    unread: list[str] = []
    newest = t.transactions(archived=True, limit=3, unread=unread)
    assert [r["invoice"] for r in newest] == sorted(batches[2], reverse=True), "newest first, whatever the tier"
    (archive / second).unlink()  # the next segment is gone from the archive, but the list never needed it
    unread = []
    assert [r["invoice"] for r in t.transactions(archived=True, limit=3, unread=unread)] == sorted(
        batches[2], reverse=True
    )
    assert unread == []
    unread = []
    rows = t.transactions(archived=True, unread=unread)
    assert [r["invoice"] for r in rows] == sorted(batches[2] + batches[0], reverse=True) and unread == [second]


def test_what_a_killed_seal_fetch_or_eviction_left_is_removed_by_the_next_cleanup(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    assert t.sale(1_000, VISA, EXPIRY).status == "approved"
    assert t.settle().ok
    t.retention.transactions_local_days = 0
    t.cleanup()
    [seg] = t.tiers.catalogue()
    assert not seg["local"]
    folder = t.tiers.folder
    leftovers = [
        folder / f".{seg['name']}.x1y2.tmp",  # a seal killed before its rename
        folder / f".fetch-{seg['name']}",  # a fetch killed half-way
        folder / seg["name"],  # an eviction killed between the catalogue and the unlink
    ]
    for path in leftovers:
        path.write_bytes(b"\\0" * 50_000)
    report = t.cleanup()
    assert not any(p.exists() for p in leftovers), [p.name for p in leftovers if p.exists()]
    assert "segment leftovers" in " ".join(report.actions)
    assert (archive / seg["name"]).exists(), "the archive's copy is untouched"


def test_the_ladder_copies_sealed_segments_to_the_archive_at_any_pressure_and_evicts_nothing(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    _day(t, 5)
    assert t.status()["pressure"] == "normal"
    [seg] = t.tiers.catalogue()
    assert seg["acked_ms"] is None
    report = t.relieve_pressure().to_dict()
    assert any("offloaded 1 segment(s)" in a and "nothing evicted" in a for a in report["actions"]), report
    [seg] = t.tiers.catalogue()
    assert seg["acked_ms"] is not None and seg["local"]  # a second copy; the terminal keeps its own
    assert file_sha256(archive / seg["name"]) == seg["digest"]
    assert t.relieve_pressure().to_dict()["actions"] == []  # nothing left to copy: nothing said
    archive.rename(tmp_path / "nas-unplugged")  # the archive away: said, nothing lost
    _day(t, 3, start=400)
    report = t.relieve_pressure().to_dict()
    assert any(a.startswith("offload stopped") for a in report["actions"]), report
    assert len(t.tiers.catalogue()) == 2
