"""The simulator's accelerated clock, shared with a host running in another process.

The terminal takes any callable returning an aware ``datetime`` as its clock; the host takes a
callable returning today's ``date``. :class:`SimClock` is both: the simulator sets it to each
customer's arrival time, so a month of business passes in a minute, and every figure that
depends on time (batches, business dates, runway forecast, retention) depends on simulated
time only, never on the wall clock.

A host in another process reads the same time from a small memory-mapped file
(:class:`SharedClockReader`): eight bytes, the simulated epoch seconds as a double.
"""

from __future__ import annotations

import mmap
import os
import struct
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

_FORMAT = "<d"
_SIZE = struct.calcsize(_FORMAT)


class SimClock:
    """Simulated local time (aware), moved forward by the simulator; never moves backwards.

    ``shared`` is a file the time is mirrored to, for a host process (see
    :class:`SharedClockReader`).
    """

    def __init__(self, start: datetime, *, shared: Path | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs an aware start time")
        self._now = start
        self.tz: tzinfo = start.tzinfo
        self._map: mmap.mmap | None = None
        self._fd: int | None = None
        if shared is not None:
            self._fd = os.open(shared, os.O_RDWR | os.O_CREAT, 0o600)
            os.ftruncate(self._fd, _SIZE)
            self._map = mmap.mmap(self._fd, _SIZE)
        self._publish()

    def __call__(self) -> datetime:
        """The current simulated time (the terminal's clock)."""
        return self._now

    def today(self) -> date:
        """The current simulated local date (the host's ``today``)."""
        return self._now.date()

    def set(self, when: datetime) -> datetime:
        """Move to ``when`` (ignored if it is earlier than now); returns the new time."""
        if when > self._now:
            self._now = when.astimezone(self.tz)
            self._publish()
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta``."""
        return self.set(self._now + delta)

    def timestamp(self) -> float:
        """Simulated seconds since the epoch."""
        return self._now.timestamp()

    def _publish(self) -> None:
        if self._map is not None:
            struct.pack_into(_FORMAT, self._map, 0, self._now.timestamp())

    def close(self) -> None:
        """Release the shared mapping."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SharedClockReader:
    """The host side of a shared :class:`SimClock`: today's simulated date in zone ``tz``."""

    def __init__(self, path: Path, tz: tzinfo) -> None:
        self.tz = tz
        fd = os.open(path, os.O_RDONLY)
        try:
            self._map = mmap.mmap(fd, _SIZE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)

    def now(self) -> datetime:
        """The simulated time."""
        return datetime.fromtimestamp(struct.unpack_from(_FORMAT, self._map, 0)[0], self.tz)

    def today(self) -> date:
        """The simulated local date."""
        return self.now().date()
