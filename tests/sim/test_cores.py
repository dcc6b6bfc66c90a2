"""Keeping the simulation on one CPU: reading the CPUs' load, choosing a core, pinning and giving it back."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tillvault.sim import cores
from tillvault.sim.cores import CorePin, choose_cpu, cpu_busy_ticks

STAT = """cpu  300 0 100 1000 10 0 5 2 0 0
cpu0 200 0 50 400 5 0 3 1 0 0
cpu1 100 0 50 600 5 0 2 1 0 0
intr 12345
"""

needs_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning needs CPU affinity and at least two allowed CPUs",
)


def test_cpu_busy_ticks_reads_each_cpu_not_the_total() -> None:
    ticks = cpu_busy_ticks(STAT)
    assert set(ticks) == {0, 1}
    # busy = user + nice + system + irq + softirq + steal; total adds idle and iowait
    assert ticks[0] == (200 + 50 + 3 + 1, 200 + 50 + 400 + 5 + 3 + 1)
    assert ticks[1] == (100 + 50 + 2 + 1, 100 + 50 + 600 + 5 + 2 + 1)


def test_cpu_busy_ticks_skips_lines_it_cannot_read() -> None:
    assert cpu_busy_ticks("cpuX 1 2 3 4\ncpu0 a b c d\nnonsense\n") == {}


def test_choose_cpu_prefers_the_idler_core() -> None:
    before = {0: (0, 0), 1: (0, 0)}
    after = {0: (80, 100), 1: (10, 100)}
    assert choose_cpu(before, after, {0, 1}, None, 0) == 1


def test_choose_cpu_does_not_count_its_own_time_against_its_core() -> None:
    """Pinned to cpu0 and busy there itself: cpu0 is not 'busy with others', so it stays."""
    before = {0: (0, 0), 1: (0, 0)}
    after = {0: (95, 100), 1: (5, 100)}
    assert choose_cpu(before, after, {0, 1}, 0, own_ticks=93) == 0


def test_choose_cpu_moves_when_others_crowd_its_core() -> None:
    before = {0: (0, 0), 1: (0, 0)}
    after = {0: (100, 100), 1: (5, 100)}
    assert choose_cpu(before, after, {0, 1}, 0, own_ticks=50) == 1


def test_choose_cpu_stays_within_the_hysteresis() -> None:
    before = {0: (0, 0), 1: (0, 0)}
    after = {0: (58, 100), 1: (50, 100)}
    assert choose_cpu(before, after, {0, 1}, 0, own_ticks=0) == 0  # 8 ticks apart: under 10% of 100


def test_choose_cpu_only_among_allowed_cpus() -> None:
    before = {0: (0, 0), 1: (0, 0), 2: (0, 0)}
    after = {0: (90, 100), 1: (0, 100), 2: (40, 100)}
    assert choose_cpu(before, after, {0, 2}, None, 0) == 2


def _pin_over_fake_stat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[CorePin, list[float], Path, tuple[int, int]]:
    """A CorePin on a clock the test moves, reading a /proc/stat the test writes (two idle CPUs)."""
    allowed = sorted(os.sched_getaffinity(0))
    a, b = allowed[0], allowed[1]
    fake = tmp_path / "stat"
    fake.write_text(f"cpu{a} 0 0 0 100 0 0 0 0\ncpu{b} 50 0 0 50 0 0 0 0\n")
    monkeypatch.setattr(cores, "_PROC_STAT", fake)
    now = [0.0]
    return CorePin(clock=lambda: now[0]), now, fake, (a, b)


def _crowd(fake: Path, a: int, b: int) -> None:
    """Since the last look, CPU ``a`` was fully busy with other work and CPU ``b`` idle."""
    fake.write_text(f"cpu{a} 10000 0 0 100 0 0 0 0\ncpu{b} 50 0 0 10050 0 0 0 0\n")


@needs_two_cpus
def test_pin_keeps_every_thread_on_one_cpu_and_release_gives_them_back() -> None:
    allowed = os.sched_getaffinity(0)
    stop = threading.Event()
    started_before = threading.Thread(target=stop.wait, daemon=True)
    started_before.start()
    pin = CorePin()
    try:
        cpu = pin.pin()
        assert cpu in allowed
        started_after = threading.Thread(target=stop.wait, daemon=True)
        started_after.start()
        for t in (threading.main_thread(), started_before, started_after):
            assert t.native_id is not None
            assert os.sched_getaffinity(t.native_id) == {cpu}, t.name
    finally:
        pin.release()
    try:
        for t in (threading.main_thread(), started_before):
            assert t.native_id is not None
            assert os.sched_getaffinity(t.native_id) == allowed
        assert pin.cpu is None
    finally:
        stop.set()


@needs_two_cpus
def test_check_moves_off_a_crowded_core(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """/proc/stat says the pinned core filled with other work: the next check moves every thread."""
    pin, now, fake, (a, b) = _pin_over_fake_stat(monkeypatch, tmp_path)
    allowed = sorted(os.sched_getaffinity(0))
    try:
        assert pin.pin() == a  # both idle in the 50 ms look: the lower number
        # the next 2 s: cpu a was fully busy, cpu b idle, and this process used (almost) nothing
        _crowd(fake, a, b)
        now[0] = cores.RECHOOSE_SECONDS - 0.5
        pin.check()
        assert pin.cpu == a  # not yet: checks are at most every RECHOOSE_SECONDS
        now[0] = cores.RECHOOSE_SECONDS + 0.1
        pin.check()
        assert pin.cpu == b
        assert os.sched_getaffinity(0) == {b}
    finally:
        pin.release()
    assert os.sched_getaffinity(0) == set(allowed)


def test_nothing_pinned_with_one_cpu_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    pin = CorePin()
    assert pin.pin() is None
    pin.check()
    pin.release()
    assert pin.cpu is None


@needs_two_cpus
def test_every_thread_of_an_added_process_moves_and_is_released(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The host in its own process serves from threads of its own: they move with the pin, not just its main thread."""
    import subprocess
    import sys
    import time

    pin, now, fake, (a, b) = _pin_over_fake_stat(monkeypatch, tmp_path)
    allowed = sorted(os.sched_getaffinity(0))
    assert pin.pin() == a
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
            "print('up', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )

    def child_affinities() -> list[set[int]]:
        tasks = list(Path(f"/proc/{child.pid}/task").iterdir())
        return [os.sched_getaffinity(int(t.name)) for t in tasks]

    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        pin.add_process(child.pid)
        assert len(child_affinities()) == 2 and all(x == {a} for x in child_affinities())
        _crowd(fake, a, b)
        now[0] = cores.RECHOOSE_SECONDS + 0.1
        time.sleep(0.01)
        pin.check()
        assert pin.cpu == b
        assert all(x == {b} for x in child_affinities()), "before: the child's serving thread stayed behind"
        pin.release()
        assert all(x == set(allowed) for x in child_affinities())
    finally:
        pin.release()
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
