"""Batch close against the reference host as a separate process: balanced, upload, host down, retry,
full disk, forced settlement."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tillvault.domain import iso8583 as iso
from tillvault.errors import SettlementError
from tillvault.host.client import HostClient
from tillvault.host.ledger import HostLedger
from tillvault.host.process import HostProcess
from tillvault.terminal.settle import batch_totals
from tillvault.terminal.terminal import Terminal

VISA = "4111111111111111"
UNIONPAY = "6212345678901235"
EXPIRY = "3012"


def _sell(t: Terminal, amounts: list[int], pan: str = VISA) -> list[int]:
    out = []
    for a in amounts:
        r = t.sale(a, pan, EXPIRY)
        assert r.status == "approved", r.reason
        out.append(r.invoice)
    return out


def test_balanced_close_reports_totals_and_advances_the_batch(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    invoices = _sell(t, [1000, 2000, 3000, 4550])
    assert t.void(invoices[1]).status == "approved"
    assert t.refund(500, VISA, EXPIRY, original_invoice=invoices[0]).status == "approved"
    report = t.settle().to_dict()
    assert report["ok"] and report["balanced"] and report["uploaded"] == 0
    assert (report["sales_count"], report["sales_amount"]) == (3, 8550)
    assert (report["refunds_count"], report["refunds_amount"]) == (1, 500)
    assert report["net_amount"] == 8050 and report["voided_count"] == 1
    assert report["batch"] == 1
    nxt = t.sale(100, VISA, EXPIRY)
    assert nxt.batch == 2
    # A closed batch is immutable: the void window has passed, the encrypted PANs are gone.
    assert t.void(invoices[0]).status == "refused"
    sealed = list(t.tiers.sealed_records(batch=1)[0])
    assert len(sealed) == 6, "the closed batch is sealed into a segment"
    assert all("pan_enc" not in (r["extra"] or "") for r in sealed)
    assert t.records.list(batch=1) == [], "hot rows leave once sealed"
    assert t.scrub()["ok"]


def test_out_of_balance_is_fixed_by_batch_upload(
    make_terminal: Callable[..., Terminal], host: HostProcess, host_ledger: HostLedger
) -> None:
    t = make_terminal()
    invoices = _sell(t, [1200, 3400, 5600])
    # The host loses one sale behind the terminal's back (a reversal the terminal never sent).
    lost = t.records.get(invoices[1])
    with HostClient(host.address) as rogue:
        assert rogue.exchange(iso.reversal_request(t._rebuild_request(lost)))["39"] == "00"
    report = t.settle().to_dict()
    assert report["balanced"], report
    assert report["uploaded"] == 3
    assert report["sales_amount"] == 10200
    host_totals = host_ledger.batch_totals(t.config.terminal_id, 1)
    assert (host_totals.sales_count, host_totals.sales_amount) == (3, 10200)


def test_host_down_at_close_loses_nothing_and_settles_later(
    make_terminal: Callable[..., Terminal], host: HostProcess
) -> None:
    t = make_terminal(timeout=0.3)
    _sell(t, [700, 800])
    host.set_faults({"close_before": {"mtis": ["0500"]}})
    with pytest.raises(SettlementError, match="nothing was lost"):
        t.settle()
    assert len(t.records.list(batch=1)) == 2
    host.set_faults(None)
    report = t.settle().to_dict()
    assert report["balanced"] and report["sales_amount"] == 1500


def test_lost_0500_reply_is_retried_with_the_same_stan(
    make_terminal: Callable[..., Terminal], host: HostProcess, host_ledger: HostLedger
) -> None:
    t = make_terminal(timeout=0.3)
    _sell(t, [999])
    host.set_faults({"drop": {"count": 1, "mtis": ["0500"]}})
    report = t.settle().to_dict()
    assert report["balanced"]
    rows = host_ledger._all(
        "SELECT stan, response FROM settlements WHERE terminal_id = ?", (iso.terminal_id_field(t.config.terminal_id),)
    )
    assert len({r["stan"] for r in rows}) == 1, "a retry must reuse the STAN"


def test_outbox_is_drained_before_the_close(make_terminal: Callable[..., Terminal], host: HostProcess) -> None:
    t = make_terminal(timeout=0.3)
    _sell(t, [100])
    host.set_faults({"drop": {"count": 1, "mtis": ["0200"]}})
    r = t.sale(4000, VISA, EXPIRY)
    assert r.status == "not_completed"
    report = t.settle().to_dict()
    assert report["drained"] == 1 and report["balanced"]
    assert report["sales_amount"] == 100
    assert t.find_transaction(r.invoice)["status"] == "reversed"


def test_forced_settlement_when_the_batch_is_full(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    t.config.batch_max_count = 5
    _sell(t, [100] * 5)
    r = t.sale(100, VISA, EXPIRY)
    assert r.status == "approved" and r.batch == 2
    assert t.journal.conn.execute("SELECT status FROM batches WHERE batch = 1").fetchone()[0] == "closed"


def test_full_batch_with_host_down_refuses_sales_and_keeps_every_record(
    make_terminal: Callable[..., Terminal], host: HostProcess
) -> None:
    t = make_terminal(timeout=0.3)
    t.config.batch_max_count = 3
    _sell(t, [100] * 3)
    host.set_faults({"close_before": True})
    r = t.sale(100, VISA, EXPIRY)
    assert r.status == "refused" and "must be settled" in r.reason
    assert len(t.records.list()) == 3


def test_settlement_succeeds_on_a_full_filesystem_while_sales_are_refused(
    tmpfs,
    host: HostProcess,
    host_ledger: HostLedger,  # type: ignore[no-untyped-def]
) -> None:
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    t = Terminal.init(tmpfs.path / "data", terminal_id="TVFULL01", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    t.auto_relieve = False  # here the reserve alone must carry the close (the ladder is tested elsewhere)
    try:
        sold = _sell(t, [1000 + i for i in range(20)], pan=UNIONPAY)
        filler = tmpfs.fill()
        refused = None
        for _ in range(2000):
            r = t.sale(50, UNIONPAY, EXPIRY)
            if r.status == "refused":
                refused = r
                break
            assert r.status == "approved"
            sold.append(r.invoice)
        assert refused is not None and "full" in refused.reason
        assert os.statvfs(tmpfs.path).f_bavail == 0
        # The host loses one, so the close needs a full batch upload too, on the full disk.
        lost = t.records.get(sold[3])
        with HostClient(host.address) as rogue:
            rogue.exchange(iso.reversal_request(t._rebuild_request(lost)))
        report = t.settle()
        assert report.balanced and report.uploaded == len(sold)
        assert report.totals.sales_count == len(sold)
        assert report.totals == batch_totals(t, report.batch)
        assert t.scrub()["ok"]
        # Still full: sales take only the free pages the close left above the new batch's reserve.
        for _ in range(200):
            r = t.sale(50, UNIONPAY, EXPIRY)
            if r.status == "refused":
                break
        assert r.status == "refused" and "full" in r.reason
        assert t.journal.free_page_bytes() >= t.space.reserve_bytes()  # the reserve is not for sales
        filler.unlink()
        assert t.sale(50, UNIONPAY, EXPIRY).status == "approved"
    finally:
        t.close()


def test_sales_during_an_interrupted_close_survive_sealing(
    make_terminal: Callable[..., Terminal], host: HostProcess
) -> None:
    t = make_terminal(timeout=0.3)
    _sell(t, [100, 200])
    host.set_faults({"drop": {"mtis": ["0500"]}})  # the 0500 leaves, its answer never comes back
    with pytest.raises(SettlementError):
        t.settle()
    host.set_faults(None)
    later = _sell(t, [300, 400])  # batch 1 is closing: these go into batch 2
    assert t.records.get(later[0])["batch"] == 2
    first = t.settle()  # closes batch 1 (same STAN), seals it
    assert first.batch == 1 and first.balanced
    assert t.scrub()["ok"]
    # Batch 2's events were not sealed away with batch 1: they are still in the hot chain.
    kinds = [e.kind for e in t.journal.events() if e.data().get("invoice") in later]
    assert kinds.count("intent") == 2 and kinds.count("outcome") == 2
    second = t.settle()
    assert second.batch == 2 and second.totals.sales_amount == 700
    assert t.scrub()["ok"]


def test_an_approval_whose_outcome_cannot_be_journalled_is_not_completed_and_reversed(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tillvault.errors import StorageFull
    from tillvault.store.records import Records

    t = make_terminal()
    real = Records.record_outcome

    def full(self, invoice, **kw):  # type: ignore[no-untyped-def]
        raise StorageFull("storage device A is full (injected after the host answered)")

    monkeypatch.setattr(Records, "record_outcome", full)
    r = t.sale(2500, VISA, EXPIRY)
    monkeypatch.setattr(Records, "record_outcome", real)
    assert r.status == "not_completed" and "reversed" in r.reason
    assert t.records.get(r.invoice)["status"] == "pending"
    assert t.recover() == [r.invoice]
    assert t.drain_outbox(force=True).delivered == 1
    assert t.records.get(r.invoice)["status"] == "reversed"
    live = [a for a in host_ledger.authorizations(t.config.terminal_id) if a.stan == f"{r.stan:06d}" and a.live]
    assert live == []


def test_refund_bounds_limits_and_retries_still_hold_after_the_batch_is_sealed(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal(limits={"max_per_card_per_day": 15_000, "currency": "CNY"})
    sale = t.sale(10_000, VISA, EXPIRY, idem_key="ecr-1")
    assert t.refund(10_000, VISA, EXPIRY, original_invoice=sale.invoice).status == "approved"
    t.settle()
    assert t.records.list() == [], "the batch is sealed"
    again = t.refund(10_000, VISA, EXPIRY, original_invoice=sale.invoice)
    assert again.status == "refused" and "exceeds" in again.reason
    over = t.sale(6_000, VISA, EXPIRY)
    assert over.status == "refused" and "per-card daily limit" in over.reason
    retry = t.sale(10_000, VISA, EXPIRY, idem_key="ecr-1")
    assert retry.invoice == sale.invoice and retry.status == "approved"


def test_on_a_disk_filled_by_something_else_the_released_ballast_is_not_taken_back(
    tmpfs,
    host: HostProcess,  # type: ignore[no-untyped-def]
) -> None:
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    t = Terminal.init(tmpfs.path / "data", terminal_id="TVFULL02", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    try:
        _sell(t, [1000 + i for i in range(4)], pan=UNIONPAY)
        ballast = t.space.status().ballast_bytes
        assert ballast > 0
        tmpfs.fill()  # another program takes every free byte
        assert t.status()["pressure"] != "normal", "a full filesystem is not normal, whoever filled it"
        report = t.relieve_pressure()
        assert any(a.startswith("released the ballast") for a in report.actions), report.actions
        assert t.space.status().ballast_bytes == 0, "the ladder released the ballast, then rebuilt it"
        # The released bytes carry sales: more than the reserve-only terminal could take.
        approved = 0
        for _ in range(400):
            r = t.sale(50, UNIONPAY, EXPIRY)
            if r.status != "approved":
                assert r.status == "refused" and "full" in r.reason
                break
            approved += 1
        assert approved * t.space.policy.sale_life_bytes >= ballast // 2
        assert t.space.status().ballast_bytes == 0
        assert t.settle().balanced  # and the day still closes
    finally:
        t.close()


def test_a_full_disk_does_not_settle_a_batch_per_sale(tmpfs, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR
    from tillvault.terminal.pressure import MIN_FORCED_SETTLE

    t = Terminal.init(tmpfs.path / "data", terminal_id="TVFULL03", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    try:
        _sell(t, [1000 + i for i in range(3)], pan=UNIONPAY)
        t.space.release_ballast()
        tmpfs.fill()
        sold = 0
        while sold < 400 and t.sale(50, UNIONPAY, EXPIRY).status == "approved":
            sold += 1  # the headroom above the reserve
        refused = [t.sale(50, UNIONPAY, EXPIRY) for _ in range(5)]  # each one runs the ladder
        assert all(r.status == "refused" for r in refused)
        # At most one forced settlement per MIN_FORCED_SETTLE sales, not one per sale once critical.
        settled = t.records.current_batch() - 1
        assert settled <= 1 + sold // MIN_FORCED_SETTLE, f"{settled} batches force-settled for {sold} sales"
        assert t.settle().balanced  # the merchant settles when they choose; the reserve carries it
    finally:
        t.close()


def test_no_copy_of_a_settled_batchs_encrypted_card_numbers_stays_in_any_file(
    make_terminal: Callable[..., Terminal], tmp_path: object
) -> None:
    from pathlib import Path

    device_b = Path(str(tmp_path)) / "device-b"
    t = make_terminal(device_b=device_b)
    # Enough sales that the WAL wraps several times: old frames would hold old page images.
    _sell(t, [100 + i for i in range(120)])
    _sell(t, [300 + i for i in range(40)], pan=UNIONPAY)
    folders = [t.data_dir, device_b]

    def copies() -> int:
        found = 0
        for folder in folders:
            for f in Path(folder).rglob("*"):
                if f.is_file():
                    found += f.read_bytes().count(b'"pan_enc"')
        return found

    assert copies() > 0, "the open batch keeps its encrypted card numbers until it closes"
    wal_before = (t.data_dir / "journal.db-wal").stat().st_size
    report = t.settle()
    assert report.ok and report.balanced
    assert copies() == 0, "a settled batch's encrypted card numbers must be gone from every file, WAL included"
    # The WAL keeps its size (a full disk later still finds it), and the terminal works on.
    assert (t.data_dir / "journal.db-wal").stat().st_size >= wal_before
    assert t.sale(555, VISA, EXPIRY).status == "approved"
    assert t.scrub()["ok"]
    t.close()
    again = Terminal.open(t.data_dir)
    try:
        assert again.sale(556, VISA, EXPIRY).status == "approved" and again.scrub()["ok"]
    finally:
        again.close()


def test_a_row_changed_on_disk_is_never_settled_uploaded_or_sealed(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger
) -> None:
    from tillvault.errors import JournalCorrupt

    t = make_terminal()
    invoices = _sell(t, [1_000, 2_000, 3_000])
    # A value changed under the journal (bad flash, a hand edit) that keeps the page valid.
    t.journal.conn.execute("UPDATE transactions SET amount = amount + 100000 WHERE invoice = ?", (invoices[1],))
    with pytest.raises(JournalCorrupt, match=rf"{invoices[1]:06d} changed on disk"):
        t.settle()
    assert host_ledger.batch_settled(t.config.terminal_id, 1) is False  # nothing was sent
    status = t.journal.conn.execute("SELECT status FROM batches WHERE batch = 1").fetchone()[0]
    assert status == "open"
    t.journal.conn.execute("UPDATE transactions SET amount = amount - 100000 WHERE invoice = ?", (invoices[1],))
    assert t.settle().ok  # repaired: it settles
    from tillvault.terminal.settle import settle as close_with_host

    later = _sell(t, [4_000])
    assert close_with_host(t).ok  # batch 2 closed with the host, not sealed yet
    t.journal.conn.execute("UPDATE transactions SET amount = amount + 1 WHERE invoice = ?", (later[0],))
    with pytest.raises(JournalCorrupt, match="is not sealed"):
        t.tiers.seal_batch(2)
    # A value of a type no written row holds (a float, a blob) is damage too, named as such.
    for bad in (4000.5, b"\x00\x01"):
        t.journal.conn.execute("UPDATE transactions SET amount = ? WHERE invoice = ?", (bad, later[0]))
        assert t.records.damaged_rows(2) == [later[0]]
        with pytest.raises(JournalCorrupt, match=rf"{later[0]:06d} changed on disk"):
            t.tiers.seal_batch(2)


def test_reconcile_reads_evicted_batches_from_the_archive_and_never_calls_them_missing(
    make_terminal: Callable[..., Terminal],
    host: HostProcess,
    tmp_path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from tillvault.terminal.reconcile import reconcile

    from .conftest import HOST_SECRET

    monkeypatch.setenv("TILLVAULT_HOST_SECRET", HOST_SECRET)
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    _sell(t, [1_000, 2_000])
    assert t.settle().ok
    t.retention.transactions_local_days = 0
    t.cleanup()  # offloaded, checked, evicted from the terminal
    assert [s["local"] for s in t.tiers.catalogue()] == [0]
    result = reconcile(t, host.data_dir)
    assert result["ok"], result["differences"]
    assert result["terminal_rows"] == result["host_rows"] == 2
    archive.rename(tmp_path / "nas-unplugged")  # the archive away: left out on both sides, said so
    result = reconcile(t, host.data_dir)
    assert [d["kind"] for d in result["differences"]] == ["not_compared"] and result["host_rows"] == 0
    # A mistyped host folder is named: never "every sale is missing on the host", nothing created there.
    from tillvault.errors import ConfigError

    with pytest.raises(ConfigError, match="no host ledger in"):
        reconcile(t, tmp_path / "hots")
    assert not (tmp_path / "hots").exists()


def test_a_disk_another_program_fills_to_the_last_byte_still_settles(tmpfs_factory, host: HostProcess) -> None:  # type: ignore[no-untyped-def]
    # The ballast released and the reserve topped up on a disk with nothing else free: the
    # top-up must leave the WAL room to checkpoint, or the settlement's own commit fails.
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    fs = tmpfs_factory("6m")
    t = Terminal.init(fs.path / "till", terminal_id="TVFULL61", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    cards = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000"]
    for i in range(50):
        assert t.sale(100 + i * 997 % 50_000, cards[i % 5], "3012", idem_key=f"k{i}").status == "approved"
    t.close()
    fs.fill()  # another program takes every free byte
    t = Terminal.open(fs.path / "till", exclusive=True)
    try:
        host.set_faults({"decline": {"mtis": ["0500"]}})  # and the host cannot settle for a while
        try:
            refused = None
            for i in range(600):
                r = t.sale(200 + i * 991 % 50_000, cards[i % 5], "3012", idem_key=f"f{i}")
                if r.status != "approved":
                    refused = r
                    break
        finally:
            host.set_faults(None)
        assert refused is not None and refused.status == "refused" and refused.invoice is None, refused
        assert "sales can be taken" in refused.reason or "full" in refused.reason
        report = t.settle()
        assert report.ok and report.balanced
    finally:
        t.close()


def test_a_device_that_replaces_another_under_its_terminal_id_settles_its_own_batch(
    make_terminal: Callable[..., Terminal], host_ledger: HostLedger
) -> None:
    import time

    old = make_terminal("old", terminal_id="TVREUSE1")
    _sell(old, [5_000, 7_000])
    assert old.settle().ok  # batch 1 settled at the host
    time.sleep(1.1)  # (the new device's STANs start from the time of its first message)
    new = make_terminal("new", terminal_id="TVREUSE1")  # a new device: its batches start at 1 again
    first, second = _sell(new, [1_000, 1_200])
    voided = new.void(second)
    assert voided.status == "approved", voided.reason  # not "12: the sale's batch is settled"
    report = new.settle()
    assert report.ok and report.balanced and report.totals.sales_count == 1 and report.totals.sales_amount == 1_000
    assert new.find_transaction(first)["status"] == "approved"


def test_a_full_disk_with_another_program_grabbing_every_freed_block_still_settles(
    tmpfs_factory, host: HostProcess
) -> None:  # type: ignore[no-untyped-def]
    # The settlement's WAL scrub must never give the WAL's blocks back to the filesystem, even for a
    # moment: a logger retrying its writes on the full disk takes whatever is freed.
    import subprocess
    import sys
    import time

    from tillvault.store.journal import SETTLEMENT
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    fs = tmpfs_factory("4m")
    t = Terminal.init(fs.path / "till", terminal_id="TVGREED1", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    greedy = None
    try:
        for i in range(30):
            assert t.sale(100 + i, "4111111111111111", "3012", idem_key=f"g{i}").status == "approved"
        t.space.release_ballast()
        fs.fill()
        greedy = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os\n"
                f"fd = os.open({str(fs.path / 'greedy.log')!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
                "while True:\n"
                "    try: os.write(fd, b'x' * 4096)\n"
                "    except OSError: pass\n",
            ]
        )
        time.sleep(0.3)
        wal = fs.path / "till" / "journal.db-wal"
        size = wal.stat().st_size
        for _ in range(5):  # the race is a matter of timing: five chances for it
            assert t.settle().ok
            assert wal.stat().st_size == size, "the WAL keeps its blocks"
            for i in range(300):  # settlement-class writes (a batch upload's bookkeeping) still fit
                t.journal.append("batch_upload_probe", {"i": i}, klass=SETTLEMENT)
            assert t.sale(150, "4111111111111111", "3012").status in ("approved", "refused")
    finally:
        if greedy is not None:
            greedy.kill()
            greedy.wait()
        t.close()
