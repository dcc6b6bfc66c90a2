"""Backup while sales run, restore elsewhere, verify; damaged backups and wrong passphrases are refused."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tillvault.domain.cards import luhn_check_digit
from tillvault.errors import KeyRingError, StorageFull
from tillvault.store.backup import BackupCorrupt, create_backup, restore_backup
from tillvault.terminal.terminal import Terminal

PANS = [p + luhn_check_digit(p) for p in (f"62284800{i:07d}" for i in range(100))]


def test_backup_during_a_stream_of_sales_restores_every_acknowledged_sale(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    t = make_terminal()
    for i in range(30):
        assert t.sale(100 + i, PANS[i], "3012").status == "approved"
    t.settle()  # a sealed segment too
    acknowledged: list[int] = []
    stop = threading.Event()

    def sell() -> None:
        i = 0
        while not stop.is_set() and i < 400:
            r = t.sale(500 + i, PANS[i % len(PANS)], "3012")
            if r.status == "approved":
                acknowledged.append(r.invoice)
            i += 1

    seller = threading.Thread(target=sell)
    seller.start()
    try:
        while len(acknowledged) < 20:
            pass
        before = list(acknowledged)
        manifest = create_backup(t, tmp_path / "backup", "correct horse battery staple")
    finally:
        stop.set()
        seller.join()
    assert manifest["segments"] and manifest["journal_tip_seq"] > 0
    raw = b"".join(p.read_bytes() for p in (tmp_path / "backup").rglob("*") if p.is_file())
    assert all(pan.encode() not in raw for pan in PANS)
    result = restore_backup(
        tmp_path / "backup", tmp_path / "new-device", "correct horse battery staple", tmp_path / "new-ring"
    )
    assert result["ok"], result["scrub"]["problems"]
    with Terminal.open(tmp_path / "new-device") as restored:
        assert restored.scrub()["ok"]
        for invoice in before:
            assert restored.find_transaction(invoice)["status"] == "approved"
        assert len(restored.tiers.catalogue()) == 1
        assert restored.find_transaction(1)["amount"] == 100  # from the sealed segment


def test_a_restore_in_the_afternoon_does_not_repeat_the_mornings_stans(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    """The original started its day at 00:05 and sold on after the backup; the restore is at 15:00."""
    from datetime import datetime, time, timedelta

    today = datetime.now().date()
    clock = [datetime.combine(today, time(0, 5)).astimezone()]
    t = make_terminal(clock=lambda: clock[0])
    assert t.sale(100, PANS[0], "3012").stan == 5 * 60 * 10 + 1
    create_backup(t, tmp_path / "backup", "correct horse battery staple")
    for i in range(3):  # after the backup: the host has these, the backup does not
        clock[0] += timedelta(hours=4)
        assert t.sale(200 + i, PANS[i], "3012").status == "approved"
    restore_backup(
        tmp_path / "backup",
        tmp_path / "new-device",
        "correct horse battery staple",
        tmp_path / "new-ring",
        now=datetime.combine(today, time(15, 0)).astimezone(),
    )
    with Terminal.open(tmp_path / "new-device", clock=lambda: datetime.combine(today, time(15, 0)).astimezone()) as r:
        assert r.journal.counter(f"stan:{today.isoformat()}") == 15 * 3600 * 10  # before: 3,001 + 10,000
        sold = r.sale(300, PANS[5], "3012")
        assert sold.status == "approved", sold.reason
        assert sold.stan == 15 * 3600 * 10 + 1


def test_wrong_passphrase_and_damage_are_refused(make_terminal: Callable[..., Terminal], tmp_path: Path) -> None:
    t = make_terminal()
    t.sale(100, PANS[0], "3012")
    create_backup(t, tmp_path / "b", "secret")
    with pytest.raises(KeyRingError, match="passphrase"):
        restore_backup(tmp_path / "b", tmp_path / "x", "not-the-secret", tmp_path / "ring")
    journal = tmp_path / "b" / "journal.tvb"
    data = bytearray(journal.read_bytes())
    data[40] ^= 1
    journal.write_bytes(bytes(data))
    with pytest.raises(BackupCorrupt, match="damaged"):
        restore_backup(tmp_path / "b", tmp_path / "y", "secret", tmp_path / "ring")
    (tmp_path / "b" / "manifest.json").unlink()
    with pytest.raises(BackupCorrupt, match="manifest"):
        restore_backup(tmp_path / "b", tmp_path / "z", "secret", tmp_path / "ring")
    with pytest.raises(Exception, match="not empty"):
        create_backup(t, tmp_path / "b", "secret")


def test_a_full_backup_medium_gets_one_reason_and_no_half_backup(
    make_terminal: Callable[..., Terminal],
    tmpfs_factory,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    t = make_terminal()
    for i in range(20):
        assert t.sale(100 + i, PANS[i], "3012").status == "approved"
    medium = tmpfs_factory("1m")
    medium.fill()
    with pytest.raises(StorageFull, match="backup medium is full") as caught:
        create_backup(t, medium.path / "backup", "secret")
    assert "partial backup was removed" in str(caught.value)
    assert not (medium.path / "backup").exists()
    assert t.scrub()["ok"] and t.sale(5, PANS[0], "3012").status == "approved"  # the terminal is unchanged


def test_a_terminal_whose_disk_is_full_can_still_be_backed_up(
    tmpfs,
    host,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    t = Terminal.init(tmpfs.path / "data", terminal_id="TVBKFULL", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    try:
        for i in range(10):
            assert t.sale(100 + i, PANS[i], "3012").status == "approved"
        tmpfs.fill()
        manifest = create_backup(t, tmp_path / "backup", "secret")
        assert manifest["transactions_hot"] == 10
    finally:
        t.close()
    result = restore_backup(tmp_path / "backup", tmp_path / "restored", "secret", tmp_path / "ring")
    assert result["ok"], result["scrub"]["problems"]


def test_a_key_ring_is_never_put_beside_the_data_or_in_a_backup(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    from tillvault.errors import ConfigError
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    t = make_terminal()
    assert t.sale(1000, "4111111111111111", "3012").status == "approved"
    create_backup(t, tmp_path / "b", "secret")
    for folder, ring in ((tmp_path / "new", tmp_path / "new" / "keys"), (tmp_path / "new", tmp_path / "b" / "keys")):
        with pytest.raises(ConfigError, match=r"must not be inside the (data folder|backup)"):
            restore_backup(tmp_path / "b", folder, "secret", ring)
        assert not folder.exists() and not ring.exists(), "nothing written before the refusal"
    # init: not inside device B either (the mirror is a copy of the data).
    with pytest.raises(ConfigError, match="inside the device B folder"):
        Terminal.init(
            tmp_path / "a",
            terminal_id="TVKEYB01",
            merchant_qr=DEMO_MERCHANT_QR,
            host="127.0.0.1:9",
            device_b=tmp_path / "b2",
            keyring_dir=tmp_path / "b2" / "keys",
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b2").exists()


def test_an_interrupted_init_can_be_run_again_and_a_journal_with_sales_is_never_cleared(
    make_terminal: Callable[..., Terminal], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tillvault.errors import ConfigError
    from tillvault.store.space import SpaceManager
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    def dies(self: SpaceManager) -> None:
        raise KeyboardInterrupt  # as if killed after the journal was made, before the end

    args = {
        "terminal_id": "TVREINIT",
        "merchant_qr": DEMO_MERCHANT_QR,
        "host": "127.0.0.1:9",
        "device_b": tmp_path / "b",
    }
    with monkeypatch.context() as m:
        m.setattr(SpaceManager, "ensure_ballast", dies)
        with pytest.raises(KeyboardInterrupt):
            Terminal.init(tmp_path / "a", **args)
    assert (tmp_path / "a" / "journal.db").exists() and not (tmp_path / "a" / "terminal.json").exists()
    t = Terminal.init(tmp_path / "a", **args)  # not "already holds a terminal"
    try:
        assert t.status()["ballast_bytes"] > 0
    finally:
        t.close()
    # A journal with sales and no terminal.json (a restore cut short) is refused, never cleared.
    sold = make_terminal()
    assert sold.sale(1000, "4111111111111111", "3012").status == "approved"
    sold.close()
    (sold.data_dir / "terminal.json").unlink()
    with pytest.raises(ConfigError, match=r"holds a terminal's data \(1 transactions, 1 invoices issued\)"):
        Terminal.init(sold.data_dir, terminal_id="TVREINI2", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    assert (sold.data_dir / "journal.db").exists()
    # Nor one whose sales were all settled, sealed and purged from the hot tier (0 transactions there):
    # a new journal would restart the invoices and seal over the old segments.
    settled = make_terminal("settled")
    for i in range(3):
        assert settled.sale(1000 + i, PANS[i], "3012").status == "approved"
    assert settled.settle().ok and settled.records.list() == []
    settled.close()
    (settled.data_dir / "terminal.json").unlink()
    segments = sorted((settled.data_dir / "segments").glob("*.tvs"))
    before = [p.read_bytes() for p in segments]
    with pytest.raises(ConfigError, match="1 sealed batches, 3 invoices issued, 1 sealed segment file"):
        Terminal.init(settled.data_dir, terminal_id="TVREINI3", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    assert [p.read_bytes() for p in segments] == before and (settled.data_dir / "journal.db").exists()


def test_a_restore_cut_short_leaves_no_terminal_and_can_be_run_again(
    make_terminal: Callable[..., Terminal], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    t = make_terminal()
    for i in range(10):
        assert t.sale(100 + i, PANS[i], "3012").status == "approved"
    t.settle()  # a sealed segment to copy
    create_backup(t, tmp_path / "backup", "correct horse battery staple")
    real_copy = shutil.copyfile

    def killed(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt  # as if killed while the segments were copied

    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", killed)
        with pytest.raises(KeyboardInterrupt):
            restore_backup(tmp_path / "backup", tmp_path / "new", "correct horse battery staple", tmp_path / "ring")
    assert shutil.copyfile is real_copy
    # Not a terminal that looks healthy with its segments missing and its counters not skipped ahead.
    assert not (tmp_path / "new" / "terminal.json").exists()
    result = restore_backup(tmp_path / "backup", tmp_path / "new", "correct horse battery staple", tmp_path / "ring")
    assert result["ok"] and result["segments"] == 1
    with Terminal.open(tmp_path / "new") as restored:
        assert restored.find_transaction(1)["amount"] == 100


def test_a_backup_inside_the_terminals_own_folder_is_refused_and_nothing_is_written(
    make_terminal: Callable[..., Terminal],
) -> None:
    from tillvault.errors import InvalidInput

    t = make_terminal()
    t.sale(100, PANS[0], "3012")
    for inside in (t.data_dir / "bk", t.data_dir):
        with pytest.raises(InvalidInput, match="inside the terminal's data folder"):
            create_backup(t, inside, "secret")
    assert not (t.data_dir / "bk").exists()
