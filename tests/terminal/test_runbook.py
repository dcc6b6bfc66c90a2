"""The emergency runbook (S14): each condition is found on a real terminal, with a real host,
archive and filesystem, and the steps name the way out; nothing is changed by looking."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tillvault.terminal.runbook import assess, render
from tillvault.terminal.terminal import Terminal

VISA = "4111111111111111"
EXPIRY = "3012"


@pytest.fixture
def dead_address() -> Iterator[str]:
    """A local port where nothing listens (bound, never listening: connections are refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _codes(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {f["code"]: f["severity"] for f in report["findings"]}


def test_a_healthy_terminal_needs_nothing_and_the_host_answers_the_echo(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal()
    assert t.sale(1_000, VISA, EXPIRY).status == "approved"
    tip = t.journal.tip
    report = assess(t)
    assert report["ok"] and report["findings"] == []
    assert report["host"]["reachable"] is True and report["host"]["ms"] >= 0
    assert "Nothing needs doing." in render(report)
    assert t.journal.tip == tip, "looking changes nothing"


def test_an_unreachable_host_is_soon_until_the_offline_cap_makes_it_urgent(
    make_terminal: Callable[..., Terminal], dead_address: str
) -> None:
    t = make_terminal(host_address=dead_address, offline={"floor_limit": 5_000, "max_count": 2, "max_amount": 100_000})
    report = assess(t)
    assert _codes(report) == {"host_unreachable": "soon"} and report["ok"]
    [finding] = report["findings"]
    assert dead_address in finding["what"]
    assert "up to 50.00 CNY are approved offline: 2 more" in " ".join(finding["steps"])
    assert "tillvault acquirer set HOST:PORT" in finding["steps"][-1]  # a wrong address can be mended
    for _ in range(2):
        assert t.sale(1_000, VISA, EXPIRY).status == "offline_approved"
    report = assess(t)
    assert _codes(report) == {"host_unreachable": "urgent"} and not report["ok"]
    assert "0 more" in " ".join(report["findings"][0]["steps"])
    # Without the probe, nothing is sent: the waiting advices are named instead.
    quiet = assess(t, probe_host=False)
    assert quiet["host"] == {"checked": False} and _codes(quiet) == {"outbox_waiting": "info"}
    assert "2 message(s)" in quiet["findings"][0]["what"]


def test_a_sale_stopped_between_request_and_answer_is_urgent_until_recovered(
    make_terminal: Callable[..., Terminal],
) -> None:
    t = make_terminal()
    ten_minutes_ago = t.now_ms() - 600_000
    t.records.record_intent(
        kind="sale", amount=2_500, currency="CNY", business_date=t.business_date(), ts_ms=ten_minutes_ago
    )
    report = assess(t)
    assert _codes(report) == {"unknown_outcome": "urgent"} and not report["ok"]
    assert "25.00 CNY" in report["findings"][0]["what"] and "tillvault flush" in report["findings"][0]["steps"][1]
    t.recover()
    t.drain_outbox(force=True)
    assert assess(t)["ok"] and assess(t)["findings"] == []


def test_a_batch_open_for_more_than_a_day_asks_for_settlement(make_terminal: Callable[..., Terminal]) -> None:
    now = [datetime(2026, 11, 30, 9, 0).astimezone()]
    t = make_terminal(clock=lambda: now[0])
    assert t.sale(1_000, VISA, EXPIRY).status == "approved"
    now[0] += timedelta(hours=30)
    report = assess(t, probe_host=False)
    assert _codes(report) == {"batch_open_too_long": "soon"}
    assert "tillvault settle" in report["findings"][0]["steps"][0]
    assert t.settle().ok
    assert _codes(assess(t, probe_host=False)) == {"no_archive": "info"}  # the sealed batch's only copy


def test_sealed_batches_that_cannot_leave_name_the_archive_to_plug_in(
    make_terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    archive = tmp_path / "nas"
    archive.mkdir()
    t = make_terminal(archive=archive)
    assert t.sale(1_000, VISA, EXPIRY).status == "approved"
    archive.rename(tmp_path / "nas-unplugged")
    assert t.settle().ok
    report = assess(t, probe_host=False)
    assert _codes(report) == {"archive_unreachable": "info"}
    assert str(archive) in report["findings"][0]["steps"][0]
    (tmp_path / "nas-unplugged").rename(archive)
    t.cleanup()
    assert assess(t, probe_host=False)["findings"] == []


def test_a_full_disk_is_found_with_its_way_out(tmpfs, host) -> None:  # type: ignore[no-untyped-def]
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    t = Terminal.init(tmpfs.path / "data", terminal_id="TVRUNBK1", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    try:
        assert t.sale(1_000, VISA, EXPIRY).status == "approved"
        tmpfs.fill()
        report = assess(t, probe_host=False)
        storage = [f for f in report["findings"] if f["code"].startswith("storage_")]
        assert storage and storage[0]["severity"] in ("urgent", "soon")
        assert any("tillvault cleanup" in step for step in storage[0]["steps"])
        assert any("settle now" in step.lower() for step in storage[0]["steps"]), "an open batch: settling frees space"
    finally:
        t.close()


def test_the_command_line_prints_the_plan_and_exits_3_when_something_is_urgent(
    make_terminal: Callable[..., Terminal], dead_address: str
) -> None:
    t = make_terminal(host_address=dead_address, offline={"max_count": 1})
    assert t.sale(1_000, VISA, EXPIRY).status == "offline_approved"
    data = t.data_dir
    t.close()
    cmd = [sys.executable, "-c", "from tillvault.cli.main import main; main()", "--data", str(data), "runbook"]
    out = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    report = json.loads(out.stdout)
    assert report["findings"][0]["code"] == "host_unreachable" and report["findings"][0]["severity"] == "urgent"
    assert VISA not in out.stdout
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert text.returncode == 3 and "[URGENT]" in text.stdout and "technical support" in text.stdout


def test_advices_too_old_are_urgent_even_while_the_host_is_down(
    make_terminal: Callable[..., Terminal], dead_address: str
) -> None:
    now = [datetime(2026, 11, 30, 9, 0).astimezone()]
    t = make_terminal(host_address=dead_address, clock=lambda: now[0])
    assert t.sale(1_000, VISA, EXPIRY).status == "offline_approved"
    assert "outbox_waiting" not in _codes(assess(t))  # fresh: part of "host unreachable"
    now[0] += timedelta(days=4)  # past the 72 h acquirers allow for an advice
    codes = _codes(assess(t))
    assert codes.get("outbox_waiting") == "urgent" and "host_unreachable" in codes


def test_a_settlement_that_began_and_did_not_finish_is_named(make_terminal: Callable[..., Terminal], host) -> None:  # type: ignore[no-untyped-def]
    from tillvault.errors import SettlementError

    t = make_terminal()
    assert t.sale(1_000, VISA, EXPIRY).status == "approved"
    host.set_faults({"decline": {"mtis": ["0500"]}})  # the host's settlement is down
    try:
        with pytest.raises(SettlementError):
            t.settle()
    finally:
        host.set_faults(None)
    status = t.journal.conn.execute("SELECT status FROM batches ORDER BY batch DESC LIMIT 1").fetchone()[0]
    report = assess(t, probe_host=False)
    assert status == "closing", status
    assert _codes(report).get("batch_settlement_unfinished") == "soon"
    assert "tillvault settle" in report["findings"][0]["steps"][0]
    assert t.settle().ok
    assert "batch_settlement_unfinished" not in _codes(assess(t, probe_host=False))


def test_no_archive_names_the_command_that_sets_one(make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    assert t.sale(1_000, VISA, EXPIRY).status == "approved"
    assert t.settle().ok
    [finding] = assess(t, probe_host=False)["findings"]
    assert finding["code"] == "no_archive" and "tillvault archive set" in finding["steps"][0]


def test_a_damaged_journal_is_urgent_and_names_scrub_and_restore(make_terminal: Callable[..., Terminal]) -> None:
    import os

    t = make_terminal()
    for i in range(150):
        assert t.sale(1_000 + i, VISA, EXPIRY).status == "approved"
    # A page of an index of the transactions, overwritten (a bad flash block).
    page = t.journal.conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transactions' "
        "AND sql IS NOT NULL ORDER BY rootpage LIMIT 1"
    ).fetchone()[0]
    t.journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path, data_dir = t.journal.path, t.data_dir
    t.close()
    with open(path, "r+b") as f:
        f.seek((page - 1) * 4096)
        f.write(os.urandom(4096))
    damaged = Terminal.open(data_dir)
    try:
        report = assess(damaged, probe_host=False)
        assert _codes(report).get("journal_damaged") == "urgent" and not report["ok"]
        finding = next(f for f in report["findings"] if f["code"] == "journal_damaged")
        assert "tillvault scrub" in finding["steps"][0] and "tillvault restore" in finding["steps"][1]
    finally:
        damaged.close()
