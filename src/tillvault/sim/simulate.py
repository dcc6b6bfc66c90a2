"""Months of a busy shop in minutes: the reference workload through the real terminal, host and archive.

:class:`Simulation` drives a real :class:`~tillvault.terminal.terminal.Terminal` on a
capacity-limited store (its space quota is the scenario's capacity) against the real
reference host (:mod:`tillvault.sim.hostlink`, on 127.0.0.1, in a thread or its own process)
and a real archive folder (:class:`~tillvault.store.archive.DirectorySink`), with an
accelerated clock (:class:`~tillvault.sim.clock.SimClock`). Nothing in the pipeline is
mocked: every sale goes through card checks, limits, space admission, the durable intent,
an ISO 8583 round trip and the durable outcome.

What the simulator adds is the world around the terminal, from the scenario:

* **customers**: :func:`~tillvault.sim.workload.generate_day` (daily profile, weekly cycle,
  surge days, card mix, repeat customers, members, refunds, voids, duplicate submissions);
  every request carries an idempotency key (the ECR's order number, or the POS screen's
  request id), so a repeated submission returns the first result;
* **the issuer's declines**: a request the workload says the issuer declines is presented
  with the card's account at the host set to no credit (51) or blocked (62) for that request;
  the acquirer's settlement system can be down too (every 0500 answered "91");
* **the network**: short host gaps from the workload and the scenario's outages (hours or
  days: the terminal is pointed at a port where nothing listens, and the archive folder is
  unplugged); when the network returns, the outbox is drained and a deferred settlement is
  retried;
* **the shop's routine**: the pressure ladder every hour (:meth:`Terminal.relieve_pressure`),
  settlement at closing time (23:10), an update download that lands in the cache (S2.4) and
  is installed at closing, an ageing device whose capacity shrinks and whose archive link
  grows flaky, device B pulled out on a given day (with the two-device feature);
* **the naive baseline** (:mod:`tillvault.sim.baseline`): the same requests, with the same
  authorization outcomes, stored the browser-POS way on the same quota.

Figures depend on the simulated clock and the seed only, so the same seed gives the same
numbers: the host's authorization codes, the simulated terminal's keys (card tokens shape the
indexes) and the ports whose addresses end up in journalled reasons all derive from the seed.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import shutil
import tempfile
import time as wall
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from tillvault.domain import iso8583 as iso
from tillvault.domain.cards import mask_pan
from tillvault.errors import InvalidInput, SettlementError, StorageError, TillVaultError
from tillvault.sim.baseline import NaiveStore
from tillvault.sim.clock import SimClock
from tillvault.sim.cores import CorePin
from tillvault.sim.hostlink import DeadPort, open_ledger, start_host
from tillvault.sim.workload import (
    REFERENCE_SEED,
    REFERENCE_START,
    SHOP_TZ,
    SaleIntent,
    ShopProfile,
    bench_token,
    day_volume,
    generate_day,
)
from tillvault.store.archive import DirectorySink
from tillvault.store.segments import read_segment
from tillvault.store.space import MIB, parse_size
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.terminal import Terminal

#: Capacity of ``tillvault simulate`` when none is given.
DEFAULT_CAPACITY = "24MiB"
#: The update download of ``WORKLOAD.md``: 20 MB on a 64 MiB store, scaled to the capacity.
UPDATE_BYTES_AT_64MIB = 20_000_000
#: When the shop closes its day with the host (local time).
CLOSING = time(23, 10)
#: Host secret of simulations (a simulation's host is private to it).
SIM_HOST_SECRET = b"tillvault-simulation-host-secret"
LEVELS = ("normal", "watch", "high", "critical", "exhausted")
DAY_S = 86_400
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([dhm])$")
_OUTAGE = re.compile(r"^(\d+)(?:@(\d{1,2})(?::(\d{2}))?)?(?:\+(.+))?$")


# -- the scenario ---------------------------------------------------------------------------------
#: Bounds of a run: ten years, a hypermarket's day, a hundredfold surge.
MAX_DAYS = 3650
MAX_PER_DAY = 100_000
MAX_SURGE = 100.0


@dataclass(frozen=True)
class Outage:
    """The network is down from ``day`` (index, 0 = first day) at ``start_hour`` for ``hours``."""

    day: int
    start_hour: float = 0.0
    hours: float = 24.0

    @classmethod
    def parse(cls, text: str) -> Outage:
        """``DAY[@HH[:MM]][+DURATION]``, duration ``2d``, ``6h`` or ``90m`` (default a whole day).

        ``12`` is day 12 (0-based) from midnight for 24 hours; ``12@10:30+6h`` six hours from
        10:30; ``20+2d`` two days from midnight of day 20.

        :raises ValueError: not of that form.
        """
        m = _OUTAGE.match(text.strip())
        if not m:
            raise ValueError(f"outage {text!r} must be DAY[@HH[:MM]][+DURATION], e.g. 12+2d or 5@11:00+6h")
        day, hh, mm, dur = m.groups()
        if len(day) > 5:
            raise ValueError(f"outage {text!r}: day {day} is beyond any run ({MAX_DAYS:,} days at most)")
        if int(hh or 0) >= 24:
            raise ValueError(f"outage {text!r}: the hour must be below 24")
        if int(mm or 0) >= 60:
            raise ValueError(f"outage {text!r}: the minute must be below 60")
        start = int(hh or 0) + int(mm or 0) / 60
        hours = 24.0
        if dur:
            d = _DURATION.match(dur.strip())
            if not d:
                raise ValueError(f"outage {text!r}: duration must be like 2d, 6h or 90m")
            value, unit = float(d.group(1)), d.group(2)
            hours = value * {"d": 24.0, "h": 1.0, "m": 1 / 60}[unit]
        if not 0 < hours <= MAX_DAYS * 24:
            raise ValueError(f"outage {text!r}: the duration must be positive and at most {MAX_DAYS:,} days")
        return cls(int(day), start, hours)

    def window(self, start: date) -> tuple[datetime, datetime]:
        """(from, to) in the shop's time."""
        begin = datetime.combine(start + timedelta(days=self.day), time(0), tzinfo=SHOP_TZ)
        begin += timedelta(hours=self.start_hour)
        return begin, begin + timedelta(hours=self.hours)

    def label(self) -> str:
        """``day 12 10:30 for 6 h``."""
        hh, mm = int(self.start_hour), round((self.start_hour % 1) * 60)
        span = f"{self.hours / 24:g} d" if self.hours >= 24 and self.hours % 24 == 0 else f"{self.hours:g} h"
        return f"day {self.day} {hh:02d}:{mm:02d} for {span}"


@dataclass(frozen=True)
class Scenario:
    """Everything a simulation run is decided by (with the seed, the whole of it)."""

    days: int = 30
    per_day: int = 2000
    #: Volume factor of surge days (1: no surge).
    surge: float = 10.0
    #: Surge day indexes; ``None``: one, a third into the run.
    surge_days: tuple[int, ...] | None = None
    capacity: str | int = DEFAULT_CAPACITY
    outages: tuple[Outage, ...] = ()
    #: The acquirer's settlement system is down (authorizations still work): the host answers
    #: every 0500 with "91"; batches cannot close.
    settlement_outages: tuple[Outage, ...] = ()
    #: The workload's short host gaps (about 2% of opening hours).
    host_gaps: bool = True
    #: False: the archive (back office) is unreachable for the whole run: nothing can be offloaded.
    archive_reachable: bool = True
    #: Share of capacity the ageing device has lost by the last day (0.10: 10%).
    ageing: float = 0.0
    #: Chance that the archive link fails during an offload attempt, reached on the last day
    #: (rising linearly from 0).
    archive_error_rate: float = 0.0
    #: The ageing device's rising error rate: the chance, reached on the last day (rising linearly
    #: from 0), that a sector of the device goes bad that day under a sealed segment (a real byte
    #: of the file flips). The shop's weekly scrub and the one at the end of the run find it and
    #: repair it from the other device or the archive's acknowledged copy where they can.
    media_error_rate: float = 0.0
    #: Update download size in bytes (``None``: 20 MB scaled to the capacity; 0: none).
    update_bytes: int | None = None
    #: Day of the update download (``None``: halfway through the run).
    update_day: int | None = None
    #: Local hour the download starts, and how long it takes (a file being written is never cleaned).
    update_hour: float = 3.0
    update_hours: float = 1.0
    #: Day device B is pulled out at noon (the terminal gets a device B only then; not applicable
    #: on a terminal without the two-device feature).
    device_b_fails_on: int | None = None
    seed: int = REFERENCE_SEED
    start: date = REFERENCE_START
    #: The terminal settles a batch that reaches this many transactions (its forced settlement).
    #: The shop's setting: above a busy day, so a one-day outage does not stop sales (the
    #: terminal's own default is 1,500, PAX-like).
    batch_max: int = 3000
    #: Offline approval: floor limit (minor units), cap on count and amount awaiting upload.
    offline_floor: int = 30_000
    offline_max_count: int = 3000
    offline_max_amount: int = 30_000_000
    #: Minutes between runs of the pressure ladder.
    ladder_minutes: int = 60
    #: ``"thread"`` (the host in a thread: no cross-process wake-ups, measured faster) or ``"process"``.
    host_mode: str = "thread"
    #: Run the naive baseline beside TillVault.
    baseline: bool = True
    #: Keep the simulation's threads on one CPU, the idlest (:mod:`tillvault.sim.cores`): where it
    #: runs, never what it computes.
    pin_core: bool = True

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidInput("; ".join(problems))

    def problems(self) -> list[str]:
        """What makes this scenario impossible to run as asked (each names its option), or []."""
        out = []
        if not 1 <= self.days <= MAX_DAYS:
            out.append(f"--days must be 1 to {MAX_DAYS:,}, got {self.days}")
        if not 0 <= self.per_day <= MAX_PER_DAY:
            out.append(f"--per-day must be 0 to {MAX_PER_DAY:,} (sales a weekday), got {self.per_day}")
        try:
            capacity = parse_size(self.capacity)
        except ValueError as exc:
            out.append(f"--capacity: {exc}")
        else:
            from tillvault.store.space import SpacePolicy
            from tillvault.terminal.terminal import minimum_capacity

            need = minimum_capacity(SpacePolicy.from_dict({}))
            if capacity < need:
                out.append(f"--capacity {self.capacity} is below the {need:,} B a terminal needs")
        if not (math.isfinite(self.surge) and 1 <= self.surge <= MAX_SURGE):
            out.append(f"--surge must be 1 (no surge) to {MAX_SURGE:g}, got {self.surge:g}")
        last = f"0 to {self.days - 1} (days count from 0 in a {self.days}-day run)"
        for d in self.surge_days or ():
            if not 0 <= d < self.days:
                out.append(f"--surge-day must be {last}, got {d}")
        for option, windows in (("--outage", self.outages), ("--settlement-outage", self.settlement_outages)):
            for o in windows:
                if not 0 <= o.day < self.days:
                    out.append(f"{option} starts on day {o.day}; it must start on day {last}")
        if self.device_b_fails_on is not None and not 0 <= self.device_b_fails_on < self.days:
            out.append(f"--device-b-fails-on must be {last}, got {self.device_b_fails_on}")
        for option, rate in (("--archive-errors", self.archive_error_rate), ("--media-errors", self.media_error_rate)):
            if not (math.isfinite(rate) and 0 <= rate <= 1):
                out.append(f"{option} must be a chance from 0 to 1, got {rate:g}")
        return out

    def surge_indexes(self) -> tuple[int, ...]:
        """The surge days in force."""
        if self.surge <= 1:
            return ()
        if self.surge_days is not None:
            return tuple(d for d in self.surge_days if 0 <= d < self.days)
        return (min(self.days - 1, max(0, self.days // 3)),) if self.days >= 1 else ()

    def capacity_bytes(self) -> int:
        """The capacity in bytes."""
        return parse_size(self.capacity)

    def update_size(self) -> int:
        """Bytes of the update download."""
        if self.update_bytes is not None:
            return self.update_bytes
        return int(UPDATE_BYTES_AT_64MIB * self.capacity_bytes() / (64 * MIB))

    def update_index(self) -> int | None:
        """Day of the update download, or None."""
        if self.update_size() <= 0:
            return None
        day = self.days // 2 if self.update_day is None else self.update_day
        return day if 0 <= day < self.days else None

    def profile(self) -> ShopProfile:
        """The shop of ``WORKLOAD.md`` with this scenario's volume, surges and seed."""
        return ShopProfile(
            seed=self.seed,
            per_day=self.per_day,
            surge_days=self.surge_indexes(),
            surge_factor=max(1.0, self.surge),
            host_gap_share=0.02 if self.host_gaps else 0.0,
            floor_limit_minor=self.offline_floor,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["capacity_bytes"] = self.capacity_bytes()
        out["surge_days"] = list(self.surge_indexes())
        out["outages"] = [o.label() for o in self.outages]
        out["settlement_outages"] = [o.label() for o in self.settlement_outages]
        out["update_bytes"] = self.update_size()
        out["update_day"] = self.update_index()
        return out


@dataclass
class Progress:
    """What a progress callback is told."""

    day: int
    days: int
    requests_done: int
    requests_expected: int
    phase: str
    elapsed_s: float


@dataclass
class SimResult:
    """The figures (``--json``) and the timeline the report draws."""

    figures: dict[str, Any]
    timeline: dict[str, Any]
    workdir: Path


# -- the run --------------------------------------------------------------------------------------
def ram_dir() -> Path | None:
    """A RAM-backed folder for simulation data (``/dev/shm`` where it exists and is writable)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return None


_WORKDIR_PREFIX = "tillvault-sim-"
_OWNER_FILE = "owner.pid"


def remove_abandoned_workdirs(parent: Path) -> list[Path]:
    """Remove the temporary folders of simulations that were killed (SIGKILL leaves no chance
    to clean up): those whose owner process is gone. Returns what was removed.

    A run's folder holds its synthetic cards, encrypted, and the key ring of the run beside
    them: it must not outlive the run.
    """
    removed: list[Path] = []
    for folder in parent.glob(_WORKDIR_PREFIX + "*"):
        try:
            pid = int((folder / _OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours to judge (no owner file: kept with --keep, or being created)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except PermissionError:
            pass  # alive, another user's
    return removed


@dataclass
class _Counts:
    tv: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)


class Simulation:
    """One scenario through the real pipeline. Use :meth:`run` once."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        workdir: Path | None = None,
        progress: Callable[[Progress], None] | None = None,
        keep: bool = False,
        stop: Callable[[Simulation], bool] | None = None,
    ) -> None:
        self.sc = scenario
        self.stop = stop
        self.keep = keep or workdir is not None
        if workdir:
            self.base = Path(workdir)
        else:
            parent = ram_dir() or Path(tempfile.gettempdir())
            remove_abandoned_workdirs(parent)
            self.base = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX, dir=parent))
            (self.base / _OWNER_FILE).write_text(f"{os.getpid()}\n")  # until the run ends (see below)
        self.base.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.profile = scenario.profile()
        self.capacity = scenario.capacity_bytes()
        self.start = scenario.start
        self.t0 = datetime.combine(self.start, time(0), tzinfo=SHOP_TZ)
        self.windows = [o.window(self.start) for o in scenario.outages]
        self.settle_windows = [o.window(self.start) for o in scenario.settlement_outages]
        self.settlement_down = False
        self.rng = random.Random(f"{scenario.seed}:simulation")
        self.counts = _Counts()
        self.points: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.runway: list[list[Any]] = []
        self.peak_used = 0
        self.first_space_refusal: datetime | None = None
        self.ok_invoices: dict[int, int] = {}
        self.sent_online = 0
        self.link_down = False
        self.archive_down = False
        self.settle_pending = False
        self.settlements_deferred = 0
        self.settlement_failures: list[dict[str, Any]] = []
        self.offload_failures = 0
        self.requests_done = 0
        self.requests_expected = int(sum(day_volume(self.profile, d, self.start) for d in range(scenario.days)) * 1.0)
        self.notes: list[str] = []
        self.t: Terminal
        self.naive: NaiveStore | None = None
        self._day = 0
        self._update_name: str | None = None
        self._gap_open = False
        self.device_b_failed_at: datetime | None = None
        self._started = 0.0
        self.days_run = 0
        self.naive_seconds = 0.0
        self._cores = CorePin()
        #: Used bytes after each day's closing (settled, sealed): the day-over-day growth.
        self.closing_used: list[int] = []
        #: The ageing device's bad sectors (its own random stream: the other figures do not move).
        self.media_rng = random.Random(f"{scenario.seed}:media")
        self.media = {"errors": 0, "scrubs": 0, "repaired": 0, "unrepaired": 0}

    # -- set-up ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        sc = self.sc
        self.clock = SimClock(self.t0, shared=self.base / "clock.bin")
        self.host = start_host(
            self.base / "host",
            clock_file=self.base / "clock.bin",
            today=self.clock.today,
            secret=SIM_HOST_SECRET,
            seed=sc.seed,
            mode=sc.host_mode,
        )
        self.ledger = open_ledger(self.host, SIM_HOST_SECRET)
        self.dead = DeadPort(sc.seed)
        self.archive = self.base / "archive"
        self.archive_unplugged = self.base / "archive.unplugged"
        self.archive.mkdir(exist_ok=True)
        self.device_b = self.base / "device-b" if self._device_b_supported() else None
        self.t = Terminal.init(
            self.base / "terminal",
            terminal_id=self.profile.terminal_id,
            merchant_qr=DEMO_MERCHANT_QR,
            host=self.host.address,
            capacity=self.capacity,
            keyring_dir=self.base / "keyring",
            offline={
                "floor_limit": sc.offline_floor,
                "max_count": sc.offline_max_count,
                "max_amount": sc.offline_max_amount,
            },
            device_b=self.device_b,
            clock=self.clock,
        )
        self.t.config.archive = str(self.archive)
        DirectorySink(self.archive).mark()  # as init does: the archive is told apart from an empty mount point
        self.t.config.batch_max_count = sc.batch_max
        self.t.config.host_timeout_s = 5.0
        self.t.config.save(self.t.data_dir)
        # Same seed, same bytes: card tokens decide how the indexes split, so the simulated
        # terminal's keys derive from the seed (never do this on a real terminal).
        seeded_keyring(Path(self.t.config.keyring), sc.seed)
        self.t.close()
        self.t = Terminal.open(self.base / "terminal", clock=self.clock)
        self.t.backoff_rng = random.Random(f"{sc.seed}:backoff")
        # The backlog a sale sends is bounded by count only: wall time is not the simulated clock's
        # (same seed, same numbers, however busy the machine).
        self.t.sale_drain_budget_s = None
        self.tid_field = iso.terminal_id_field(self.t.config.terminal_id)
        if sc.baseline:
            self.naive = NaiveStore(self.base / "naive", self.capacity)
        if sc.device_b_fails_on is not None and self.device_b is None:
            self.notes.append(
                f"--device-b-fails-on {sc.device_b_fails_on}: not applicable (this terminal has no device B); "
                "the run has one device"
            )

    def _device_b_supported(self) -> bool:
        """True when the scenario asks for device B and the terminal has the two-device feature."""
        if self.sc.device_b_fails_on is None:
            return False
        try:
            from tillvault.terminal import devices  # noqa: F401
        except ImportError:
            return False
        return True

    def _fail_device_b(self, when: datetime) -> None:
        """Device B disappears (the SD card is pulled): its folder is gone from under the terminal."""
        assert self.device_b is not None
        self.clock.set(when)
        if self.device_b.exists():
            self.device_b.rename(self.device_b.with_name("device-b.pulled"))
        self.device_b_failed_at = when
        self._event(when, "device_b_failed", "device B pulled out (failed)")

    def _teardown(self) -> None:
        """Close whatever set-up got as far as opening (it may have stopped half-way)."""
        for name, method in (("t", "close"), ("ledger", "close"), ("host", "stop"), ("dead", "close")):
            thing = getattr(self, name, None)
            if thing is not None:
                with contextlib.suppress(Exception):
                    getattr(thing, method)()
        clock = getattr(self, "clock", None)
        if clock is not None:
            clock.close()

    # -- helpers --------------------------------------------------------------------------------
    def _hours(self, when: datetime) -> float:
        return (when - self.t0).total_seconds() / 3600

    def _in_outage(self, when: datetime) -> bool:
        return any(a <= when < b for a, b in self.windows)

    def _link(self, when: datetime, gap: bool = False) -> None:
        """Plug or unplug the network and the archive for the moment ``when``."""
        settle_down = any(a <= when < b for a, b in self.settle_windows)
        if settle_down != self.settlement_down:
            self.settlement_down = settle_down
            self.host.set_faults({"decline": {"mtis": ["0500"]}} if settle_down else None)
        outage = self._in_outage(when)
        down = outage or gap
        archive_down = outage or not self.sc.archive_reachable
        if archive_down != self.archive_down:
            self._plug_archive(not archive_down)
        if down == self.link_down:
            return
        self.link_down = down
        self.t.use_host(self.dead.address if down else self.host.address)
        if not down:
            with contextlib.suppress(TillVaultError):
                self.t.drain_outbox(force=True)
            if self.settle_pending:
                self._settle(when, "retry")

    def _plug_archive(self, plugged: bool) -> None:
        if plugged and self.archive_unplugged.exists():
            self.archive_unplugged.rename(self.archive)
        elif not plugged and self.archive.exists():
            self.archive.rename(self.archive_unplugged)
        self.archive_down = not plugged

    def _observe(self, when: datetime, level: str | None = None) -> int:
        st = self.t.space.status()
        used = st.used_bytes
        self.peak_used = max(self.peak_used, used)
        self.points.append(
            {
                "h": round(self._hours(when), 3),
                "used": used,
                "capacity": st.capacity_bytes,
                "reserve": st.reserve_bytes,
                "level": level or st.pressure,
                "naive": self.naive.used_bytes() if self.naive else None,
                "naive_capacity": self.naive.capacity_bytes if self.naive else None,
            }
        )
        return used

    def _event(self, when: datetime, kind: str, label: str) -> None:
        self.events.append({"h": round(self._hours(when), 3), "kind": kind, "label": label})

    # -- the ladder, settlement -----------------------------------------------------------------
    def _tick(self, when: datetime) -> None:
        """The terminal's periodic housekeeping: the pressure ladder; then a chart point."""
        self._cores.check()
        self.clock.set(when)
        self._link(when, self._gap_open)
        flaky = False
        if self.sc.archive_error_rate and not self.archive_down:
            p = self.sc.archive_error_rate * self._day / max(1, self.sc.days - 1)
            if self.rng.random() < p:
                flaky = True
                self._plug_archive(False)
        before = self.t.tiers.counts()
        try:
            report = self.t.relieve_pressure()
            level = report.level_before
            if any("offload stopped" in a for a in report.actions):
                self.offload_failures += 1
        except TillVaultError as exc:
            level = "exhausted"
            self.notes.append(f"{when:%Y-%m-%d %H:%M}: the pressure ladder stopped: {exc}")
        if flaky:
            self._plug_archive(True)
        self._offload_events(when, before)
        self.t.sample_usage()
        self._observe(when, level)
        if self.settle_pending and not self.link_down:
            self._settle(when, "retry")

    def _settle(self, when: datetime, why: str) -> None:
        self._observe(when)
        try:
            report = self.t.settle()
        except SettlementError as exc:
            self.settlements_deferred += 1
            if not self.settle_pending:
                self._event(when, "settlement_deferred", f"settlement deferred: {str(exc)[:90]}")
            self.settle_pending = True
            return
        except StorageError as exc:  # invariant 3 broken: settlement must never fail for space
            self.settlement_failures.append({"at": when.isoformat(), "reason": str(exc)})
            self._event(when, "settlement_failed", str(exc)[:120])
            return
        self.settle_pending = False
        if report.closed_ms is not None:
            self._observe(when)

    # -- requests -------------------------------------------------------------------------------
    def _key(self, day: date, intent: SaleIntent, index: int) -> str:
        if intent.ecr_order:
            return f"ecr-{day:%Y%m%d}-{intent.ecr_order:05d}"
        return f"pos-{day:%Y%m%d}-{index:05d}"

    def _request(self, day: date, intent: SaleIntent, results: list[Any]) -> None:
        dup = intent.duplicate_of is not None
        key = self._key(day, intent, intent.duplicate_of if dup else intent.index)  # type: ignore[arg-type]
        operator = ("01", "02")[intent.index % 2] if intent.time.hour < 15 else ("03", "04")[intent.index % 2]
        original = results[intent.original_of] if intent.original_of is not None else None
        kind = intent.kind
        if kind in ("refund", "void") and not (
            original is not None and original.ok and original.kind == "sale" and original.invoice is not None
        ):
            kind = "sale"  # nothing to refer to: the customer buys instead
        declining = intent.will_decline and kind == "sale" and not dup and not self.link_down
        if declining:
            self._issuer_declines(intent, True)
        try:
            # The terminal runs its pressure ladder itself before it refuses a sale for space.
            kind, res = self._attempt(kind, intent, original, key, operator)
        finally:
            if declining:
                self._issuer_declines(intent, False)
        absorbed = res.reason.startswith("repeated request")
        self._count(kind, res, absorbed, intent)
        if results[intent.index] is None:
            results[intent.index] = res
        if self.naive is not None:
            began = wall.perf_counter()
            self._naive(day, intent, kind, res, absorbed, key)
            self.naive_seconds += wall.perf_counter() - began

    def _attempt(self, kind: str, intent: SaleIntent, original: Any, key: str, operator: str) -> tuple[str, Any]:
        """One presentation of the request at the terminal; returns (kind as done, result)."""
        t = self.t
        if kind == "sale":
            return kind, t.sale(
                intent.amount_minor,
                intent.pan,
                intent.expiry,
                entry_mode=intent.entry_mode,
                operator_id=operator,
                customer_phone=intent.member_phone,
                idem_key=key,
            )
        if kind == "refund":
            return kind, t.refund(
                intent.amount_minor,
                intent.pan,
                intent.expiry,
                original_invoice=original.invoice,
                entry_mode=intent.entry_mode,
                operator_id="00",
                idem_key=key,
            )
        res = t.void(original.invoice, operator_id="00", idem_key=key)
        if res.status == "refused" and not _space_refusal(res.reason):
            # Settled or offline meanwhile: the cashier refunds instead.
            return "refund", t.refund(
                original.amount,
                intent.pan,
                intent.expiry,
                original_invoice=original.invoice,
                entry_mode=intent.entry_mode,
                operator_id="00",
                idem_key=key + "-r",
            )
        return kind, res

    def _offload_events(self, when: datetime, before: dict[str, int]) -> None:
        after = self.t.tiers.counts()
        off = after["offloaded_segments"] - before["offloaded_segments"]
        ev = after["evicted_segments"] - before["evicted_segments"]
        if off:
            self._event(when, "offload", f"{off} segment(s) offloaded to the archive")
        if ev:
            self._event(when, "evict", f"{ev} acknowledged segment(s) evicted")

    def _issuer_declines(self, intent: SaleIntent, on: bool) -> None:
        """Set the card's account at the issuer so that it declines (51: no credit; 62: blocked), or restore it."""
        from tillvault.sim.hostlink import SIM_CREDIT_LIMIT

        if intent.decline_code in ("51", "61", None):
            self.ledger.set_card(intent.pan, credit_limit=0 if on else SIM_CREDIT_LIMIT)
        else:
            self.ledger.set_card(intent.pan, blocked=on)

    def _count(self, kind: str, res: Any, absorbed: bool, intent: SaleIntent) -> None:
        c = self.counts.tv
        self.requests_done += 1
        if absorbed:
            c["duplicates_absorbed"] += 1
            return
        c[f"{kind}:{res.status}"] += 1
        if res.status in ("approved", "offline_approved") and res.invoice is not None:
            self.ok_invoices[res.invoice] = res.amount
        if res.status == "approved" or (res.status == "declined" and res.response_code not in ("91", "30", None)):
            self.sent_online += 1
        elif res.status == "not_completed":
            c["not_completed_sent"] += 1
        if res.status == "refused":
            # Top-level refusal counts are of sales (as sales_attempted); refunds and voids are in
            # their own breakdowns. Every refusal for space is checked for "nothing journalled".
            refusals = self.counts.refusals if kind == "sale" else Counter()
            if _space_refusal(res.reason):
                refusals["space"] += 1
                if res.invoice is not None:
                    self.counts.refusals["space_after_journal"] += 1
                if self.first_space_refusal is None:
                    self.first_space_refusal = self.clock()
                    self._event(self.clock(), "refusal", f"first {kind} refused for space, before authorization")
            elif res.reason.startswith("the batch is full"):
                refusals["batch_full_settlement_impossible"] += 1  # host, or its settlement, down
            elif "limit" in res.reason:
                refusals["limits"] += 1
            else:
                refusals["card_or_request"] += 1

    def _naive(self, day: date, intent: SaleIntent, kind: str, res: Any, absorbed: bool, key: str) -> None:
        """The same request through the naive store, with the authorization outcome it would get."""
        assert self.naive is not None
        if absorbed:
            outcome = res.status  # no idempotency key there: the retry is charged again
        elif res.status == "refused":
            if not _space_refusal(res.reason) and not res.reason.startswith("the batch is full"):
                outcome = "declined"  # the payment device rejects an invalid card or a limit alike
            elif self.link_down:
                outcome = (
                    "offline_approved"
                    if kind == "sale" and intent.amount_minor <= self.sc.offline_floor
                    else "declined"
                )
            else:
                outcome = "declined" if intent.will_decline and kind == "sale" else "approved"
        else:
            outcome = res.status
        if (
            self.naive.record(
                outcome=outcome,
                kind=kind,
                when=intent.time.isoformat(timespec="milliseconds"),
                amount=res.amount or intent.amount_minor,
                currency=intent.currency,
                masked_pan=mask_pan(intent.pan),
                card_token=bench_token(intent.pan),
                brand=intent.brand,
                card_type=intent.card_type,
                entry_mode=intent.entry_mode,
                merchant_id=self.profile.merchant_id,
                terminal_id=self.profile.terminal_id,
                batch=self._day + 1,
                operator_id="00" if kind != "sale" else "01",
                customer_ref=("C" + bench_token(intent.member_phone)[:15]) if intent.member_phone else None,
                order_id=key,
                rrn=res.rrn or f"{400_000_000_000 + self.requests_done:012d}",
                auth_code=res.auth_code or f"{(self.requests_done * 7919) % 1_000_000:06d}",
                response_code=res.response_code or ("00" if outcome == "approved" else "Y1"),
                duplicate=absorbed,
            )
            is False
            and self.naive.figures.lost == 1
        ):
            self._event(intent.time, "naive_lost", "naive store: first order lost (card charged, no record)")

    # -- a day ------------------------------------------------------------------------------------
    def _run_day(self, d: int) -> None:
        sc = self.sc
        self._day = d
        day = self.start + timedelta(days=d)
        midnight = datetime.combine(day, time(0), tzinfo=SHOP_TZ)
        self.clock.set(midnight + timedelta(minutes=1))
        self._gap_open = False
        self._link(self.clock())
        if sc.ageing:
            quota = int(self.capacity * (1 - sc.ageing * d / max(1, sc.days - 1)))
            self.t.space.policy.quota_bytes = quota
            if self.naive is not None:
                self.naive.set_capacity(quota)
        closing = datetime.combine(day, CLOSING, tzinfo=SHOP_TZ)
        # What happens at set times, besides the customers: the ladder, the update download.
        schedule: list[tuple[datetime, int, Callable[[datetime], None]]] = []
        tick = midnight + timedelta(hours=self.profile.open_hour)
        while tick <= closing:
            schedule.append((tick, 1, self._tick))
            tick += timedelta(minutes=sc.ladder_minutes)
        if self.device_b is not None and d == sc.device_b_fails_on:
            schedule.append((midnight + timedelta(hours=12), 0, self._fail_device_b))
        if d == sc.update_index():
            begin = midnight + timedelta(hours=sc.update_hour)
            schedule.append((begin, 0, self._update_starts))
            schedule.append((begin + timedelta(hours=sc.update_hours), 0, self._update_finishes))
        schedule.sort(key=lambda item: (item[0], item[1]))
        due = 0
        intents = generate_day(self.profile, d, self.start)
        results: list[Any] = [None] * len(intents)
        for n, intent in enumerate(intents):
            while due < len(schedule) and schedule[due][0] <= intent.time:
                schedule[due][2](schedule[due][0])
                due += 1
            self.clock.set(intent.time)
            self._gap_open = intent.host_down
            self._link(intent.time, intent.host_down)
            self._request(day, intent, results)
            if n % 250 == 0:
                self._report_progress("selling")
        self._gap_open = False
        for when, _, action in schedule[due:]:
            action(when)
        self.clock.set(closing)
        self._link(closing)
        self._cores.check()
        self._settle(closing, "closing")
        if self.naive is not None:
            self.naive.close_day(day.isoformat(), closing.isoformat())
        if d == sc.update_index():
            self._update_installed(f"update-{midnight + timedelta(hours=sc.update_hour):%Y%m%d}.pkg")
        self._tick(closing + timedelta(minutes=20))
        if sc.media_error_rate:
            self._media_ages(closing + timedelta(minutes=30))
            if d % 7 == 6:
                self._scrub(closing + timedelta(minutes=40))
        self.closing_used.append(self.t.space.status().used_bytes)
        fc = self.t.forecast()
        self.runway.append(
            [d + 1, None if fc.runway_days is None else round(fc.runway_days, 1), self.clock().timestamp()]
        )
        self._report_progress("closing")

    def _media_ages(self, when: datetime) -> None:
        """The ageing device may grow a bad sector today, under one of its sealed segments."""
        p = self.sc.media_error_rate * self._day / max(1, self.sc.days - 1)
        if self.media_rng.random() >= p:
            return
        local = sorted(s["name"] for s in self.t.tiers.catalogue() if s["local"])
        if not local:
            return
        name = self.media_rng.choice(local)
        path = self.t.tiers.segment_path(name)
        with contextlib.suppress(FileNotFoundError), open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                return
            at = self.media_rng.randrange(size)
            fh.seek(at)
            byte = fh.read(1)
            fh.seek(at)
            fh.write(bytes([byte[0] ^ (1 << self.media_rng.randrange(8))]))
            self.media["errors"] += 1
            self._event(when, "media_error", f"ageing device: a bad sector under segment {name}")

    def _scrub(self, when: datetime) -> None:
        """The shop's scrub: every record and segment checked, a bad copy repaired where a good one exists."""
        self.clock.set(when)
        if self.archive_down:
            return  # the archive is out of reach: the next scrub
        report = self.t.scrub()
        self.media["scrubs"] += 1
        for r in report["repaired"]:
            self.media["repaired"] += 1
            self._event(when, "repaired", f"scrub: {r['what']} on {r['device']} {r['how']}")
        for p in report["problems"]:
            if "repaired" not in p:
                self.media["unrepaired"] += 1
                self._event(when, "unrepaired", f"scrub: {p.get('segment') or p.get('where')}: {p['problem']}"[:120])

    def _update_starts(self, when: datetime) -> None:
        """An update download begins: its file takes its full size at once (preallocated) where it fits.

        The downloader is not TillVault's: it takes whatever the file system has free (the
        journal's pre-grown pages and the ballast are files already, out of its reach) and fails
        when the download does not fit, on either device.
        """
        self.clock.set(when)
        size = self.sc.update_size()
        name = f"update-{when:%Y%m%d}.pkg"
        quota = self.t.space.policy.quota_bytes or self.capacity
        if quota - self.t.space.store_bytes() >= size:
            path = self.t.caches.path("updates") / f"{name}.part"
            with open(path, "wb") as fh:
                fh.truncate(size)  # sparse in RAM; the space manager counts its size, as a quota does
            self._update_name = name
            self._event(when, "update", f"update download of {size / MIB:.1f} MiB starts")
        else:
            self._event(when, "update_failed", f"update download of {size / MIB:.1f} MiB does not fit: not started")
        if self.naive is not None:
            if self.naive.capacity_bytes - self.naive.used_bytes() >= size:
                self.naive.put_file(name, size)
            else:
                self.notes.append(f"{when:%Y-%m-%d}: the update download did not fit on the naive store's device")
        self._observe(when)

    def _update_finishes(self, when: datetime) -> None:
        """The download is complete: a finished download in the cache, which the ladder may clean."""
        self.clock.set(when)
        if self._update_name is None:
            return
        folder = self.t.caches.path("updates")
        part, done = folder / f"{self._update_name}.part", folder / self._update_name
        with contextlib.suppress(FileNotFoundError):
            part.rename(done)
            os.utime(done, (when.timestamp(), when.timestamp()))  # finished now, in simulated time
        self._event(when, "update_done", "update download finished (cleanable)")

    def _update_installed(self, name: str) -> None:
        """At closing the update is installed and its download removed (on both devices)."""
        folder = self.t.caches.path("updates")
        for file in (name, f"{name}.part"):
            with contextlib.suppress(FileNotFoundError):
                (folder / file).unlink()
        if self.naive is not None:
            self.naive.remove_file(name)
        self._update_name = None

    def _report_progress(self, phase: str) -> None:
        self._cores.check()  # every 250 requests, and between the phases of a day
        if self.progress is not None:
            self.progress(
                Progress(
                    day=self._day + 1,
                    days=self.sc.days,
                    requests_done=self.requests_done,
                    requests_expected=self.requests_expected,
                    phase=phase,
                    elapsed_s=wall.perf_counter() - self._started,
                )
            )

    # -- the audit at the end ---------------------------------------------------------------------
    def _audit(self) -> dict[str, Any]:
        """Lost transactions, reconciliation with the host, refusals before authorization."""
        from tillvault.terminal.settle import closed_batches

        t = self.t
        if self.archive_down:
            self._plug_archive(True)  # the auditor reads the archive
        found: dict[int, int] = {}
        for row in t.journal.conn.execute("SELECT invoice, amount FROM transactions"):
            found[int(row[0])] = int(row[1])
        unreadable = []
        for seg in t.tiers.catalogue():
            path = t.tiers.segment_path(seg["name"]) if seg["local"] else self.archive / seg["name"]
            try:
                for rec in read_segment(path, t.keyring):
                    found.setdefault(int(rec["invoice"]), int(rec["amount"]))
            except (OSError, TillVaultError) as exc:
                unreadable.append(f"{seg['name']}: {exc}")
        lost = [inv for inv, amount in self.ok_invoices.items() if found.get(inv) != amount]
        batches = sorted(closed_batches(t), key=lambda r: r["batch"])
        table = []
        reconciled = True
        for rep in batches:
            host = self.ledger.batch_totals(self.tid_field, rep["batch"] % 1_000_000)
            same = (
                host.sales_count == rep["sales_count"]
                and host.sales_amount == rep["sales_amount"]
                and host.refunds_count == rep["refunds_count"]
                and host.refunds_amount == rep["refunds_amount"]
            )
            reconciled = reconciled and same
            closed = datetime.fromtimestamp(rep["closed_ms"] / 1000, SHOP_TZ) if rep.get("closed_ms") else None
            if closed is not None:
                self._event(closed, "settlement", f"batch {rep['batch']} settled: {rep['sales_count']} sales")
            table.append(
                {
                    "batch": rep["batch"],
                    "closed": closed.isoformat(timespec="minutes") if closed else None,
                    "day": (closed.date() - self.start).days + 1 if closed else None,
                    "sales_count": rep["sales_count"],
                    "sales_amount": rep["sales_amount"],
                    "refunds_count": rep["refunds_count"],
                    "refunds_amount": rep["refunds_amount"],
                    "voided_count": rep.get("voided_count", 0),
                    "net_amount": rep.get("net_amount"),
                    "balanced": bool(rep.get("balanced")),
                    "uploaded": rep.get("uploaded", 0),
                    "host_sales_count": host.sales_count,
                    "host_sales_amount": host.sales_amount,
                    "host_refunds_count": host.refunds_count,
                    "host_refunds_amount": host.refunds_amount,
                    "reconciled": same,
                }
            )
        host_0200 = self.ledger.rows(
            "SELECT count(*) FROM authorizations WHERE terminal_id = ? AND mti = '0200'", (self.tid_field,)
        )[0][0]
        maybe = self.counts.tv["not_completed_sent"]
        return {
            "lost_invoices": lost,
            "unreadable_segments": unreadable,
            "settlement_table": table,
            "totals_reconcile": reconciled,
            "host_financial_requests": int(host_0200),
            "refusals_before_authorization": self.sent_online <= host_0200 <= self.sent_online + maybe
            and self.counts.refusals["space_after_journal"] == 0,
        }

    # -- the whole run ----------------------------------------------------------------------------
    def run(self) -> SimResult:
        """Run the scenario; returns the figures and the timeline."""
        self._started = wall.perf_counter()
        # Before set-up: the host's thread (or process) inherits the pin.
        self._one_core = self.sc.pin_core and self._cores.pin() is not None
        try:
            self._setup()
            popen = getattr(self.host, "popen", None)
            if popen is not None:
                self._cores.add_process(popen.pid)
            for d in range(self.sc.days):
                self._run_day(d)
                self.days_run = d + 1
                if self.stop is not None and self.stop(self):
                    break
            self._report_progress("audit")
            if self.sc.media_error_rate:
                self._scrub(self.clock() + timedelta(minutes=50))
            audit = self._audit()
            figures = self._figures(audit)
        finally:
            try:
                self._teardown()
            finally:
                self._cores.release()
            if not self.keep:
                shutil.rmtree(self.base, ignore_errors=True)
            else:  # kept on purpose: no longer a killed run's leftover
                (self.base / _OWNER_FILE).unlink(missing_ok=True)
        elapsed = wall.perf_counter() - self._started
        figures["timing"] = {
            "wall_seconds": round(elapsed, 2),
            "requests_per_second": round(self.requests_done / elapsed, 1) if elapsed else None,
            "simulated_days_per_second": round(self.days_run / elapsed, 3) if elapsed else None,
            "baseline_store_seconds": round(self.naive_seconds, 2),
            "host_mode": self.sc.host_mode,
            "one_core": self._one_core,
            "data_folder": str(self.base) if self.keep else None,
        }
        timeline = {
            "start": self.t0.isoformat(),
            "days": self.days_run,
            "points": self.points,
            "events": sorted(self.events, key=lambda e: e["h"]),
            "surges": [[d * 24.0, (d + 1) * 24.0] for d in self.sc.surge_indexes()],
            "outages": [[self._hours(a), self._hours(b)] for a, b in self.windows],
            "settlement_outages": [[self._hours(a), self._hours(b)] for a, b in self.settle_windows],
        }
        return SimResult(figures=figures, timeline=timeline, workdir=self.base)

    def _final_state(self) -> dict[str, Any]:
        """The store at the end of the run, and the terminal's own runway forecast then."""
        st = self.t.space.status()
        fc = self.t.forecast()
        return {
            "used_bytes": st.used_bytes,
            "free_bytes": st.free_bytes,
            "available_for_sales_bytes": st.available_for_sales_bytes,
            "pressure": st.pressure,
            "forecast": {
                "runway_days": None if fc.runway_days is None else round(fc.runway_days, 1),
                "bytes_per_day": None if fc.bytes_per_day is None else round(fc.bytes_per_day),
                "method": fc.method,
                "reason": fc.reason,
            },
        }

    def _device_b_figures(self) -> dict[str, Any]:
        """What became of device B (or why the question does not apply)."""
        if self.device_b is None:
            return {
                "fails_on": self.sc.device_b_fails_on,
                "applicable": False,
                "note": "no device B in this run"
                if self.sc.device_b_fails_on is None
                else "the terminal has no device B",
            }
        out: dict[str, Any] = {
            "fails_on": self.sc.device_b_fails_on,
            "applicable": True,
            "failed_at": self.device_b_failed_at.isoformat() if self.device_b_failed_at else None,
        }
        try:  # states and messages only: paths and wall-clock health figures would differ run to run
            status = self.t.status()
            out["devices"] = [{k: d.get(k) for k in ("name", "state", "role")} for d in status.get("devices") or []]
            out["alerts"] = [{k: a.get(k) for k in ("device", "state", "message")} for a in status.get("alerts") or []]
        except TillVaultError as exc:
            out["error"] = str(exc)
        return out

    def _figures(self, audit: dict[str, Any]) -> dict[str, Any]:
        c = self.counts.tv
        cat = self.t.tiers.catalogue()
        sealed_records = sum(int(s["records"]) for s in cat)
        sealed_bytes = sum(int(s["bytes"]) for s in cat)
        counts = self.t.tiers.counts()
        exhaust = self.first_space_refusal.timestamp() if self.first_space_refusal else None
        runway = []
        for day, forecast, at in self.runway:
            actual = round((exhaust - at) / DAY_S, 1) if exhaust is not None and exhaust >= at else None
            runway.append([day, forecast, actual])
        approved = c["sale:approved"] + c["sale:offline_approved"]
        attempted = sum(v for k, v in c.items() if k.startswith("sale:"))
        ok_kinds = ("approved", "offline_approved")
        figures: dict[str, Any] = {
            "scenario": self.sc.to_dict(),
            "days_simulated": self.days_run,
            "closing_used_bytes": self.closing_used,
            "sales_attempted": attempted,
            "approved": approved,
            "offline_approved": c["sale:offline_approved"],
            "declined": c["sale:declined"],
            "refused_for_space": self.counts.refusals["space"],
            "refused_other": {
                k: v for k, v in self.counts.refusals.items() if k not in ("space", "space_after_journal")
            },
            "not_completed": c["sale:not_completed"],
            "duplicates_absorbed": c["duplicates_absorbed"],
            "refunds": {s: c[f"refund:{s}"] for s in (*ok_kinds, "declined", "refused") if c[f"refund:{s}"]},
            "voids": {s: c[f"void:{s}"] for s in (*ok_kinds, "declined", "refused") if c[f"void:{s}"]},
            "lost": len(audit["lost_invoices"]),
            "lost_invoices": audit["lost_invoices"][:20],
            "settlements": len(audit["settlement_table"]),
            "settlement_failures": len(self.settlement_failures),
            "settlement_failure_reasons": self.settlement_failures[:5],
            "settlements_deferred": self.settlements_deferred,
            "settlement_pending_at_end": self.settle_pending,
            "totals_reconcile": audit["totals_reconcile"],
            "refusals_before_authorization": audit["refusals_before_authorization"],
            "host_financial_requests": audit["host_financial_requests"],
            "terminal_online_requests": self.sent_online,
            "bytes_per_transaction": round(sealed_bytes / sealed_records, 1) if sealed_records else None,
            "sealed_transactions": sealed_records,
            "peak_used_bytes": self.peak_used,
            "capacity_bytes": self.capacity,
            "final_capacity_bytes": self.t.space.policy.quota_bytes,
            "runway_forecast_days": runway,
            "first_refusal_for_space_at": self.first_space_refusal.isoformat() if self.first_space_refusal else None,
            "offload": {
                "sealed_segments": counts["sealed_segments"],
                "offloaded_segments": counts["offloaded_segments"],
                "evicted_segments": counts["evicted_segments"],
                "offload_attempts_failed": self.offload_failures,
            },
            "unreadable_segments": audit["unreadable_segments"],
            "settlement_table": audit["settlement_table"],
            "device_b": self._device_b_figures(),
            "media_errors": dict(self.media),
            "final": self._final_state(),
            "notes": self.notes,
        }
        if self.naive is not None:
            nfig = self.naive.finish()
            full = datetime.fromisoformat(nfig.full_at).timestamp() if nfig.full_at else None
            nfig.runway_forecast_days = [
                [day, None, round((full - at) / DAY_S, 1) if full is not None and full >= at else None]
                for day, _, at in self.runway
            ]
            nf = nfig.to_dict()
            figures["baseline"] = {"store": "naive JSON rows (browser POS pattern)", **nf}
        return figures


def seeded_keyring(path: Path, seed: int) -> None:
    """Replace a fresh, still unused key ring with keys derived from ``seed`` (simulations only)."""
    from tillvault.store.keys import PURPOSES, Key, KeyRing

    rng = random.Random(f"{seed}:keyring")
    keys = [Key(f"{p}-{rng.getrandbits(32):08x}", p, rng.getrandbits(256).to_bytes(32, "big")) for p in PURPOSES]
    KeyRing(path, keys).save()


def _space_refusal(reason: str) -> bool:
    """True when a refusal is space admission's (the StorageFull message)."""
    return "is full: 0 sales can be taken" in reason or ("storage device" in reason and " is full" in reason)


def run_scenario(
    scenario: Scenario,
    *,
    workdir: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    keep: bool = False,
) -> SimResult:
    """Run ``scenario`` (see :class:`Simulation`)."""
    return Simulation(scenario, workdir=workdir, progress=progress, keep=keep).run()
