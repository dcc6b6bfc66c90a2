"""SIGKILL at random moments: every acknowledged record survives (short version of bench/crash_journal.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from types import ModuleType

import pytest


def test_fifty_sigkills_lose_no_acknowledged_record_and_report_pending_intents(
    load_bench: Callable[[str], ModuleType],
) -> None:
    result = load_bench("crash_journal").run_trials(50, seed=7, max_wait=0.25)
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
def test_injected_enospc_and_eio_lose_no_acknowledged_record(
    fault: str, load_bench: Callable[[str], ModuleType]
) -> None:
    if shutil.which("fiu-run") is None:
        pytest.skip("fiu-run (Debian package fiu-utils) is not installed")
    result = load_bench("crash_journal").run_trials(8, seed=3, fiu=fault)
    assert result["problems"] == []
    assert result["injected_failures"] > 0, "the fault should have fired"
    assert result["ok"]
