"""Space admission: where the decision "may this sale start?" is made.

The store's capacity is the smaller of a configured quota and what the filesystem can
give (``statvfs``) plus what the store already holds. The **settlement reserve** is sized
for the open batch's close and upload bookkeeping (a fixed base plus a share per open
transaction) and exists physically as pre-grown free pages inside the journal file, so that
settlement can still commit on a filesystem that is 100% full. A **ballast** file holds a
further emergency margin that only the critical pressure level may release.

A sale is admitted only if its whole life (intent, outcome, its share of settlement and
upload) fits above the reserve; otherwise :class:`StorageFull` is raised *before* anything is
written or sent.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tillvault.errors import StorageFull
from tillvault.store.journal import Journal

KIB = 1024
MIB = 1024 * 1024
BALLAST_NAME = "ballast.bin"

LEVELS = ("normal", "watch", "high", "critical", "exhausted")
#: Seconds a walk of the data folder (other than the journal) is reused.
WALK_TTL_S = 2.0
#: Unexplained change of the disk's free space that forces a new walk.
WALK_DRIFT_BYTES = 128 * 1024


#: The largest size a capacity or a policy figure may have (an exbibyte: larger than any disk).
MAX_SIZE = 1 << 60


def parse_size(text: str | int) -> int:
    """Parse ``"64MiB"``, ``"4m"``, ``"600KiB"``, ``"1.5G"`` or a plain byte count into bytes.

    :raises ValueError: if the text is not a size.
    """
    if isinstance(text, int):
        return text
    s = text.strip().lower().replace(" ", "")
    units = {
        "": 1,
        "b": 1,
        "k": KIB,
        "kb": 1000,
        "kib": KIB,
        "m": MIB,
        "mb": 1000**2,
        "mib": MIB,
        "g": 1024**3,
        "gb": 1000**3,
        "gib": 1024**3,
    }
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num) :]
    if not num or unit not in units:
        raise ValueError(f"not a size: {text!r} (use e.g. 64MiB, 600KiB, 4m)")
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", num):  # no 1e400, inf or nan: a size is written out
        raise ValueError(f"not a size: {text!r} (use e.g. 64MiB, 600KiB, 4m)")
    if num.startswith("-"):
        raise ValueError(f"size must not be negative: {text!r}")
    size = int(Decimal(num) * units[unit])  # exact: 999999999999 is not rounded through a float
    if size > MAX_SIZE:
        raise ValueError(f"size {text!r} is larger than any disk ({MAX_SIZE:,} B at most)")
    return size


@dataclass
class SpacePolicy:
    """Sizes that govern admission (bytes). Every figure is configurable in the terminal's config."""

    quota_bytes: int | None = None
    #: Fixed part of the settlement reserve (batch close, report, outbox drain).
    reserve_base_bytes: int = 192 * KIB
    #: Settlement and upload bookkeeping per open-batch transaction.
    settle_share_bytes: int = 1 * KIB
    #: Whole life of one sale in the hot tier (intent, outcome, outbox, indexes), measured.
    sale_life_bytes: int = 4 * KIB
    #: Free pages kept above the reserve for sales, when the filesystem has room.
    headroom_bytes: int = 128 * KIB
    #: Emergency ballast file, released only at the critical level.
    ballast_bytes: int = 256 * KIB
    #: Fractions of capacity below which pressure rises.
    watch_free_fraction: float = 0.30
    high_free_fraction: float = 0.15
    #: Free space above the reserve below which pressure is critical, in sales.
    critical_sales: int = 50

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpacePolicy:
        """Build from a config dict, ignoring unknown keys."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class SpaceStatus:
    """A snapshot of the store's space (bytes)."""

    device: str
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    reserve_bytes: int
    in_flight_bytes: int
    journal_free_page_bytes: int
    ballast_bytes: int
    fs_free_bytes: int
    available_for_sales_bytes: int
    sales_possible: int
    pressure: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class SpaceManager:
    """Decides admission and keeps the physical reserve for one storage device."""

    def __init__(
        self,
        root: Path,
        journal: Journal,
        policy: SpacePolicy,
        *,
        device: str = "A",
        open_batch_count: Callable[[], int] = lambda: 0,
    ) -> None:
        self.root = Path(root)
        self.journal = journal
        journal.on_external_change.append(self.forget_sizes)  # another process sealed or cleaned
        self.policy = policy
        self.device = device
        self._open_batch_count = open_batch_count
        self._lock = threading.Lock()
        self._in_flight = 0
        self._walk_cache: tuple[float, int, int, int] | None = None

    # -- measurement --------------------------------------------------------------------------
    def fs_free_bytes(self) -> int:
        """Bytes the filesystem gives an unprivileged writer (``f_bavail``)."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def store_bytes(self) -> int:
        """Bytes held on disk by every file under the data folder.

        The journal's files are measured every time; the rest of the folder (segments, caches,
        ballast) is walked at most every ``WALK_TTL_S`` seconds, since ``statvfs`` (read live)
        already bounds free space by what the disk really has.
        """
        return self._measure()[0]

    def _measure(self) -> tuple[int, int]:
        """(bytes held by the store, bytes free on the filesystem), from one ``statvfs``."""
        now = time.monotonic()
        journal = self.journal.file_bytes()
        fs_free = self.fs_free_bytes()
        cache = self._walk_cache
        # Walk again when stale, or when the disk's free space moved by more than the journal did
        # (another file grew or shrank: an update download, a segment, a cleaned cache).
        if (
            cache is None
            or now - cache[0] > WALK_TTL_S
            or abs((cache[2] - fs_free) - (journal - cache[3])) > WALK_DRIFT_BYTES
        ):
            cache = (now, self._walk_others(), fs_free, journal)
            self._walk_cache = cache
        return cache[1] + journal, fs_free

    def forget_sizes(self) -> None:
        """Walk the folder again at the next measurement (after sealing, eviction, cleaning)."""
        self._walk_cache = None

    def _walk_others(self) -> int:
        journal_files = {str(self.journal.path) + sfx for sfx in ("", "-wal", "-shm")}
        total = 0
        stack = [self.root]
        while stack:
            folder = stack.pop()
            with contextlib.suppress(FileNotFoundError), os.scandir(folder) as it:
                for entry in it:
                    with contextlib.suppress(FileNotFoundError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False) and entry.path not in journal_files:
                            total += entry.stat(follow_symlinks=False).st_size
        return total

    def reserve_bytes(self) -> int:
        """The settlement reserve now: base plus a share per open-batch transaction."""
        return self.policy.reserve_base_bytes + self.policy.settle_share_bytes * max(0, self._open_batch_count())

    @property
    def root(self) -> Path:
        """The device folder measured (changes when the terminal fails over to device B)."""
        return self._root

    @root.setter
    def root(self, value: Path) -> None:
        self._root = Path(value)
        self._ballast = str(self._root / BALLAST_NAME)  # stat'ed at every admission

    def ballast_path(self) -> Path:
        """Path of the ballast file."""
        return self.root / BALLAST_NAME

    def status(self, *, exact: bool = False) -> SpaceStatus:
        """Measure capacity, use, reserve and pressure now (``exact``: walk the whole folder again)."""
        if exact:
            self.forget_sizes()
        held, fs_free = self._measure()
        capacity = held + fs_free
        if self.policy.quota_bytes:
            capacity = min(capacity, self.policy.quota_bytes)
        db_free = self.journal.free_page_bytes()
        used = max(0, held - db_free)
        # Free is what the quota leaves (free pages inside the journal count as free), but never
        # more than the disk can give plus those free pages.
        free = max(0, min(capacity - used, fs_free + db_free))
        reserve = self.reserve_bytes()
        with self._lock:
            in_flight = self._in_flight
        available = free - reserve - in_flight
        sales = max(0, available // self.policy.sale_life_bytes)
        ballast = self._ballast_size()
        return SpaceStatus(
            device=self.device,
            capacity_bytes=capacity,
            used_bytes=used,
            free_bytes=free,
            reserve_bytes=reserve,
            in_flight_bytes=in_flight,
            journal_free_page_bytes=db_free,
            ballast_bytes=ballast,
            fs_free_bytes=fs_free,
            available_for_sales_bytes=max(0, available),
            sales_possible=int(sales),
            pressure=self._level(capacity, free, available, fs_free),
        )

    def _level(self, capacity: int, free: int, available: int, fs_free: int | None = None) -> str:
        p = self.policy
        if available < p.sale_life_bytes:
            return "exhausted"
        if available < p.critical_sales * p.sale_life_bytes:
            return "critical"
        fraction = free / capacity if capacity else 0.0
        if fraction < p.high_free_fraction:
            return "high"
        if fs_free is not None and fs_free < p.critical_sales * p.sale_life_bytes:
            # The filesystem itself is (nearly) full, whatever filled it: what is left is the journal's
            # own free pages. Capacity shrank with the other file, so the fraction alone looks fine.
            return "high"
        if fraction < p.watch_free_fraction:
            return "watch"
        return "normal"

    def _ballast_size(self) -> int:
        try:
            return os.stat(self._ballast).st_size
        except FileNotFoundError:
            return 0

    # -- admission ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def reserve_for_sale(self, count: int = 1) -> Iterator[int]:
        """Admit ``count`` sales: hold their whole-life bytes until the block ends.

        :raises StorageFull: the sales do not fit above the settlement reserve. Raised before
            anything is written, naming the device, the figures and the way out.
        """
        need = self.policy.sale_life_bytes * count
        st = self.status()
        with self._lock:
            available = st.free_bytes - st.reserve_bytes - self._in_flight
            if available < need:
                raise self.full_error(st, need)
            self._in_flight += need
        try:
            yield need
        finally:
            with self._lock:
                self._in_flight -= need

    def full_error(self, st: SpaceStatus, need: int) -> StorageFull:
        """The refusal a merchant sees, in English and Simplified Chinese (settling is advised only
        when the open batch holds something to settle)."""
        d = self.device
        open_count = self._open_batch_count()
        settle_en = f"Settle now (tillvault settle: {open_count:,} in the open batch), free" if open_count else "Free"
        settle_zh = "请立即结算,或清理空间" if open_count else "请清理空间"
        return StorageFull(
            f"storage device {d} is full: 0 sales can be taken ({_fmt(st.free_bytes)} free of "
            f"{_fmt(st.capacity_bytes)}, {_fmt(st.reserve_bytes)} kept for settlement, a sale needs "
            f"{_fmt(need)}). {settle_en} space (tillvault cleanup) or connect the back office to offload "
            "settled transactions. No card was charged.",
            device=d,
            needed_bytes=need,
            available_bytes=max(0, st.free_bytes - st.reserve_bytes),
            message_zh=f"存储设备{d}已满:无法进行新交易(未扣款)。{settle_zh},或连接后台以转存已结算的交易。",
        )

    # -- the physical reserve -----------------------------------------------------------------
    def top_up_bounds(self) -> tuple[int, int]:
        """(low, target) free-page bytes for the physical reserve: top up to ``target`` once below ``low``.

        A top-up writes filler over the free pages it finds before the file grows (SQLite reuses
        free pages first), so it costs about ``target`` bytes of writes, whatever was missing.
        The headroom above the reserve therefore grows with the reserve (half of it, at least
        ``headroom_bytes``): a top-up then comes every few hundred sales, not every twenty, and
        writes about four bytes per byte the sales used instead of thirty.
        """
        reserve = self.reserve_bytes()
        headroom = max(self.policy.headroom_bytes, reserve // 2)
        return reserve + headroom // 4, reserve + headroom

    def maintain(self) -> bool:
        """Keep the physical reserve: pre-grow free pages up to reserve + headroom if the disk allows.

        Cheap when nothing is needed (one pragma); see :meth:`top_up_bounds` for how often it
        grows. Returns True if it grew.
        """
        low, target = self.top_up_bounds()
        if self.journal.free_page_bytes() >= low:
            return False
        self.journal.grow_free_pages(target)
        return True

    def ensure_ballast(self) -> int:
        """Create the ballast file at its configured size if missing; returns its size."""
        self.forget_sizes()
        path = self.ballast_path()
        size = self.policy.ballast_bytes
        if size <= 0 or self._ballast_size() >= size:
            return self._ballast_size()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                chunk = b"\0" * (64 * KIB)
                written = os.fstat(fd).st_size
                os.lseek(fd, written, os.SEEK_SET)
                while written < size:
                    written += os.write(fd, chunk[: min(len(chunk), size - written)])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass  # a partial ballast is still ballast; a full disk is the ladder's business
        return self._ballast_size()

    def ballast_would_fit(self) -> bool:
        """True when rebuilding the ballast would still leave the pressure at ``normal`` or ``watch``:
        space really came back. (Right after a release the freed bytes themselves look like room;
        rebuilding then would take back exactly the space the sales were given.)"""
        st = self.status()
        missing = max(0, self.policy.ballast_bytes - st.ballast_bytes)
        level = self._level(
            st.capacity_bytes,
            st.free_bytes - missing,
            st.available_for_sales_bytes - missing,
            st.fs_free_bytes - missing,
        )
        return level in ("normal", "watch")

    def release_ballast(self) -> int:
        """Delete the ballast (critical level only); returns the bytes released."""
        self.forget_sizes()
        size = self._ballast_size()
        with contextlib.suppress(FileNotFoundError):
            self.ballast_path().unlink()
        return size


def _fmt(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    if n >= KIB:
        return f"{n / KIB:.0f} KiB"
    return f"{n} B"
