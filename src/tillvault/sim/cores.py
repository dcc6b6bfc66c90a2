"""Keep the simulation's threads on one CPU: the least busy one, looked at again every few seconds.

The simulated terminal and its host hand every request back and forth (the 0200 out, the 0210
back): two threads of one interpreter that never run at once (they take turns on the interpreter
lock) but touch the same objects. Left to the scheduler they land on different cores, and every
hand-off wakes a thread on the other core, whose caches must then fetch what the first one just
wrote. On a 2-core VM the simulation ran 1.27× faster on one core (``python bench/demo_speed.py
--against-any-core``, BENCHMARKS.md); a bare socket round trip between two processes costs only
about 10 µs more across cores there, so most of the gain is the shared objects staying in one
core's caches.

Pinned, the process can no longer move away from a core that something else starts to use, so the
pin is re-chosen every :data:`RECHOOSE_SECONDS`: the core whose other users took the least time
since the last look (``/proc/stat``, less this process's own time on the core it was pinned to).
Where the platform has no CPU affinity (not Linux), only one CPU is allowed, or ``/proc/stat`` is
unreadable, nothing is pinned. Nothing here changes what the simulation computes: only where it runs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: Seconds between two looks at the CPUs' load.
RECHOOSE_SECONDS = 2.0
#: Move only when another core was idler by this share of the interval (no hopping on noise).
HYSTERESIS = 0.10

_PROC_STAT = Path("/proc/stat")


def cpu_busy_ticks(stat_text: str) -> dict[int, tuple[int, int]]:
    """Per CPU: (busy ticks, total ticks) from the text of ``/proc/stat``."""
    out: dict[int, tuple[int, int]] = {}
    for line in stat_text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            cpu = int(name[3:])
            ticks = [int(f) for f in fields]
        except ValueError:
            continue
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
        total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
        out[cpu] = (total - idle, total)
    return out


def choose_cpu(
    before: dict[int, tuple[int, int]],
    after: dict[int, tuple[int, int]],
    allowed: Iterable[int],
    current: int | None,
    own_ticks: int,
) -> int:
    """The allowed CPU whose other users were busy the least between the two readings.

    ``own_ticks`` (this process's CPU time in the same ticks) is taken off ``current``'s busy time.
    ``current`` is kept unless another CPU was idler by :data:`HYSTERESIS` of the interval.
    """
    others: dict[int, float] = {}
    span = 1
    for cpu in allowed:
        if cpu not in before or cpu not in after:
            continue
        busy = after[cpu][0] - before[cpu][0]
        span = max(span, after[cpu][1] - before[cpu][1])
        if cpu == current:
            busy -= own_ticks
        others[cpu] = max(0, busy)
    if not others:
        return current if current is not None else min(allowed)
    best = min(others, key=lambda c: (others[c], c))
    if current in others and others[current] - others[best] <= HYSTERESIS * span:
        return current
    return best


class CorePin:
    """Pins this process's threads (and any added process) to one CPU; :meth:`release` undoes it.

    Use :meth:`pin` before starting the threads (new threads inherit the pin), call :meth:`check`
    often (it re-chooses at most every :data:`RECHOOSE_SECONDS`), and :meth:`release` at the end.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._allowed: set[int] = set()
        self._current: int | None = None
        self._pids: list[int] = []
        self._last_stat: dict[int, tuple[int, int]] = {}
        self._last_own = 0.0
        self._last_at = 0.0
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        if hasattr(os, "sched_getaffinity") and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                self._allowed = set(os.sched_getaffinity(0))

    @property
    def cpu(self) -> int | None:
        """The CPU pinned to, or None when nothing is pinned."""
        return self._current

    def pin(self) -> int | None:
        """Pin to the idlest allowed CPU (a 50 ms look); returns it, or None where pinning does not apply."""
        if len(self._allowed) < 2:
            return None
        first = self._read()
        if not first:
            return None
        time.sleep(0.05)
        second = self._read()
        cpu = choose_cpu(first, second, self._allowed, None, 0)
        self._apply(cpu)
        self._remember(second)
        return self._current

    def add_process(self, pid: int) -> None:
        """Keep another process (the host in its own process) and every thread of it on the same
        CPU from now on."""
        self._pids.append(pid)
        if self._current is not None:
            self._apply(self._current)

    def check(self) -> None:
        """Move to an idler CPU if the current one has become busy with other work."""
        if self._current is None or self._clock() - self._last_at < RECHOOSE_SECONDS:
            return
        stat = self._read()
        if not stat:
            return
        own = self._own_seconds()
        own_ticks = int((own - self._last_own) * self._tick)
        cpu = choose_cpu(self._last_stat, stat, self._allowed, self._current, own_ticks)
        if cpu != self._current:
            self._apply(cpu)
        self._remember(stat, own)

    def release(self) -> None:
        """Give every thread (and added process) back the CPUs it was allowed before."""
        if self._current is None:
            return
        for tid in self._targets():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, self._allowed)
        self._current = None

    # -- inside ---------------------------------------------------------------------------------
    def _targets(self) -> list[int]:
        """This process's threads, and every thread of the added processes (an affinity is a
        thread's own: setting a process's moves its main thread only)."""
        tids = [t.native_id for t in threading.enumerate() if t.native_id is not None]
        for pid in self._pids:
            try:
                tids.extend(int(task.name) for task in Path(f"/proc/{pid}/task").iterdir())
            except (OSError, ValueError):
                tids.append(pid)  # no /proc: its main thread at least
        return tids

    def _apply(self, cpu: int) -> None:
        for tid in self._targets():
            with contextlib.suppress(OSError):  # a thread that just ended
                os.sched_setaffinity(tid, {cpu})
        self._current = cpu

    def _read(self) -> dict[int, tuple[int, int]]:
        try:
            return cpu_busy_ticks(_PROC_STAT.read_text())
        except OSError:
            return {}

    def _own_seconds(self) -> float:
        """CPU seconds of this process and of the added processes (they share the pinned CPU)."""
        t = os.times()
        seconds = t.user + t.system
        for pid in self._pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                seconds += (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime
            except (OSError, IndexError, ValueError):
                continue
        return seconds

    def _remember(self, stat: dict[int, tuple[int, int]], own: float | None = None) -> None:
        self._last_stat = stat
        self._last_own = self._own_seconds() if own is None else own
        self._last_at = self._clock()
