"""Storage devices: identity markers, availability, and media health (S2.3, S8).

Each device folder holds a marker file naming the terminal and the device, so a device
that was swapped, unmounted (the mount point is then an empty folder) or replaced is
recognised instead of silently written to. Health combines what the platform offers
(eMMC ``life_time``/``pre_eol_info`` in sysfs, ext4 ``errors_count`` and
``lifetime_write_kbytes``, ``/sys/block/*/stat``) with what the store observes itself (I/O
errors, checksum failures, fsync latency, shrinking capacity).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tillvault.store.fsutil import write_atomic

MARKER = "tillvault-device.json"


def write_marker(root: Path, *, terminal_uuid: str, device: str, generation: int = 0) -> None:
    """Create or update the device's marker (durably).

    ``generation`` rises each time the primary role moves: the device holding the highest
    generation holds the newest journal, and only it may be copied onto the other.
    """
    doc = {"terminal_uuid": terminal_uuid, "device": device, "generation": generation}
    write_atomic(root / MARKER, json.dumps(doc).encode("utf-8"))


def marker_generation(root: Path) -> int | None:
    """The generation a device's marker records (None when unreadable or absent)."""
    try:
        return int(json.loads((root / MARKER).read_text("utf-8")).get("generation", 0))
    except (OSError, ValueError, TypeError):
        return None


def check_marker(root: Path, *, terminal_uuid: str, device: str) -> str:
    """Why ``root`` is not this terminal's device ``device`` now, or ``""`` when it is."""
    try:
        data = json.loads((root / MARKER).read_text("utf-8"))
    except FileNotFoundError:
        return f"storage device {device} is gone ({root} holds no TillVault device: unmounted or replaced)"
    except (OSError, ValueError) as exc:
        return f"storage device {device} is unreadable ({exc})"
    if data.get("terminal_uuid") != terminal_uuid or data.get("device") != device:
        return f"storage device {device} at {root} belongs to another terminal or slot"
    if not os.access(root, os.W_OK):
        return f"storage device {device} at {root} is read-only"
    return ""


@dataclass
class Observed:
    """What the store saw of a device itself."""

    io_errors: int = 0
    checksum_failures: int = 0
    last_error: str = ""
    commit_ms_ewma: float = 0.0
    first_capacity_bytes: int = 0

    def note_commit(self, ms: float) -> None:
        """Fold one commit's duration into the moving average (trend of fsync latency)."""
        self.commit_ms_ewma = ms if not self.commit_ms_ewma else 0.95 * self.commit_ms_ewma + 0.05 * ms


@dataclass
class Health:
    """A device's health report."""

    state: str
    reasons: list[str] = field(default_factory=list)
    platform: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _read(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        return path.read_text().strip()
    return None


def block_device(path: Path) -> tuple[str | None, str | None]:
    """(partition, whole disk) names of the block device holding ``path``, where sysfs says."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    sys_dev = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if not sys_dev.exists():
        return None, None
    real = sys_dev.resolve()
    part = real.name
    disk = real.parent.name if (real / "partition").exists() else part
    return part, disk


def platform_health(path: Path) -> dict[str, Any]:
    """Whatever the platform reports about the medium under ``path`` (absent keys: not offered)."""
    out: dict[str, Any] = {}
    part, disk = block_device(path)
    if part is None:
        return out
    out["block_device"] = part
    dev = Path(f"/sys/block/{disk}")
    life = _read(dev / "device" / "life_time")
    if life:
        out["emmc_life_time"] = life  # two hex values: 0x01 (0-10% used) .. 0x0B (exceeded)
    eol = _read(dev / "device" / "pre_eol_info")
    if eol:
        out["emmc_pre_eol_info"] = eol  # 0x01 normal, 0x02 warning, 0x03 urgent
    stat = _read(dev / "stat")
    if stat:
        fields = stat.split()
        if len(fields) >= 11:
            out["reads_completed"], out["writes_completed"] = int(fields[0]), int(fields[4])
            out["io_ticks_ms"] = int(fields[9])
    ext4 = Path(f"/sys/fs/ext4/{part}")
    for name in ("errors_count", "lifetime_write_kbytes"):
        value = _read(ext4 / name)
        if value is not None and value.isdigit():
            out[f"ext4_{name}"] = int(value)
    return out


def assess(path: Path, observed: Observed, capacity_bytes: int) -> Health:
    """Combine platform and observed facts into a state: ``ok``, ``worn`` or ``failing``."""
    plat = platform_health(path)
    reasons: list[str] = []
    state = "ok"
    eol = plat.get("emmc_pre_eol_info", "")
    if eol.endswith("3"):
        state, reasons = "failing", [*reasons, "eMMC pre-EOL: urgent"]
    elif eol.endswith("2"):
        state, reasons = "worn", [*reasons, "eMMC pre-EOL: warning"]
    life = plat.get("emmc_life_time", "")
    if life and any(int(v, 16) >= 0x09 for v in life.split() if v.startswith("0x")):
        state = "worn" if state == "ok" else state
        reasons.append(f"eMMC life time used: {life}")
    if plat.get("ext4_errors_count"):
        state = "failing"
        reasons.append(f"filesystem reports {plat['ext4_errors_count']} errors")
    if observed.io_errors:
        state = "failing"
        reasons.append(f"{observed.io_errors} I/O error(s) seen ({observed.last_error})")
    if observed.checksum_failures:
        state = "failing"
        reasons.append(f"{observed.checksum_failures} checksum failure(s) found by scrub")
    if observed.first_capacity_bytes and capacity_bytes < 0.9 * observed.first_capacity_bytes:
        state = "worn" if state == "ok" else state
        reasons.append(f"usable capacity shrank from {observed.first_capacity_bytes:,} to {capacity_bytes:,} B")
    obs = asdict(observed)
    obs["checked_at"] = int(time.time())
    return Health(state=state, reasons=reasons, platform=plat, observed=obs)
