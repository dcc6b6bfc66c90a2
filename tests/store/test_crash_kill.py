"""SIGKILL at random moments: every acknowledged record survives (short version of bench/crash_journal.py)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "crash_journal.py"


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("crash_journal", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fifty_sigkills_lose_no_acknowledged_record_and_report_pending_intents() -> None:
    result = _bench().run_trials(50, seed=7, max_wait=0.25)
    assert result["problems"] == []
    assert result["kills"] == 50
    assert result["acknowledged_intents"] > 100  # a loaded machine writes fewer before each kill
    assert result["ok"]


@pytest.mark.parametrize(
    "fault",
    [
        "enable_random name=posix/io/rw/pwrite,probability=0.02,failinfo=28",  # ENOSPC on write
        "enable_random name=posix/io/rw/pwrite,probability=0.02,failinfo=5",  # EIO on write
        "enable_random name=posix/io/sync/fdatasync,probability=0.05,failinfo=5",  # EIO on fsync
    ],
)
def test_injected_enospc_and_eio_lose_no_acknowledged_record(fault: str) -> None:
    if shutil.which("fiu-run") is None:
        pytest.skip("fiu-run (Debian package fiu-utils) is not installed")
    result = _bench().run_trials(8, seed=3, fiu=fault)
    assert result["problems"] == []
    assert result["injected_failures"] > 0, "the fault should have fired"
    assert result["ok"]
