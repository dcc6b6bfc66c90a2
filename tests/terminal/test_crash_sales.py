"""SIGKILL in the middle of sales, voids and settlements against a real host: the host charges
exactly what the terminal recorded (short version of bench/crash_sales.py)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType


def test_killed_sellers_lose_nothing_acknowledged_and_the_host_charges_only_recorded_sales(
    load_bench: Callable[[str], ModuleType],
) -> None:
    result = load_bench("crash_sales").run_trials(8, seed=11)
    assert result["problems"] == []
    assert result["kills"] == 8
    assert result["acknowledged_approved"] > 10  # a loaded machine sells fewer before each kill
    assert result["ok"]
