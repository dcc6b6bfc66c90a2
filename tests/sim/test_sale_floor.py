"""The short version of bench/sale_floor.py: a bare loop of real sales, and the simulation's request."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType


def test_the_floor_bench_times_bare_sales_and_a_simulated_day(load_bench: Callable[[str], ModuleType]) -> None:
    bench = load_bench("sale_floor")
    bare = bench.bare_loop(200)
    assert 0 < bare < 100, "every one of the sales was approved and timed"
    request = bench.simulation(1)
    assert request > 0
