"""The terminal's two storage devices: mirroring, degraded mode, failover, resilver, repair.

Device A is the data folder; device B (optional) is a folder on another filesystem (an SD
card beside internal flash, say). While both are healthy every journal write is applied to
both before it is acknowledged, and sealed segments are kept on both. When one fills,
fails (EIO) or disappears, the terminal keeps selling and settling on the other, degraded,
with an alert naming the device; when it returns it is resilvered (re-copied and verified)
between two sales. ``scrub`` verifies both copies and repairs a bad one from the good one.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tillvault.errors import TillVaultError
from tillvault.store.devices import MARKER, Observed, assess, check_marker, write_marker
from tillvault.store.journal import Journal

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

JOURNAL_NAME = "journal.db"


@dataclass
class DeviceState:
    """One device as the terminal sees it now."""

    name: str
    root: Path
    state: str = "ok"  # ok | full | failed | gone
    reason: str = ""
    since_ms: int = 0
    observed: Observed = field(default_factory=Observed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (health is measured on demand)."""
        return {"name": self.name, "path": str(self.root), "state": self.state, "reason": self.reason,
                "since_ms": self.since_ms or None}


def alert_texts(device: str, state: str, other: str) -> tuple[str, str]:
    """The merchant's alert for a degraded device (English, Simplified Chinese)."""
    if state == "full":
        return (f"storage device {device} is full: running on {other} only; free space on {device} or replace it",
                f"存储设备{device}已满:仅使用设备{other}运行;请清理或更换设备{device}")
    if state == "gone":
        return (f"storage device {device} is gone: running on {other} only; reconnect or replace {device}",
                f"存储设备{device}已断开:仅使用设备{other}运行;请重新连接或更换设备{device}")
    return (f"storage device {device} failed: running on {other} only; replace {device}",
            f"存储设备{device}故障:仅使用设备{other}运行;请更换设备{device}")


class DeviceSet:
    """Devices A and B of one terminal and what is done when one of them fails."""

    def __init__(self, t: Terminal) -> None:
        self.t = t
        self.a = DeviceState("A", t.data_dir)
        self.b = DeviceState("B", Path(t.config.device_b)) if t.config.device_b else None
        self.primary = "A"
        self.b_journal: Journal | None = None
        self.events: list[dict[str, Any]] = []
        t.journal.on_mirror_failure = self._mirror_failed
        t.journal.on_failover = self._failed_over
        t.tiers.on_mirror_failure = lambda reason: self._mirror_failed("B", reason)
        if self.b is not None:
            self._marker_dev: int | None = None
            self.attach_b()

    # -- attaching and resilvering -----------------------------------------------------------
    def _check_b(self) -> str:
        assert self.b is not None
        try:
            st = os.stat(self.b.root / MARKER)
        except OSError:
            return f"storage device B is gone ({self.b.root} holds no TillVault device: unmounted or removed)"
        if self._marker_dev is not None and st.st_dev != self._marker_dev:
            return "storage device B was replaced by another filesystem"
        return ""

    def attach_b(self, *, initial: bool = False) -> bool:
        """Open device B, resilver it from A if it differs, and mirror to it. False: B degraded."""
        b = self.b
        if b is None:
            return False
        t = self.t
        try:
            if initial and not (b.root / MARKER).exists():
                write_marker(b.root, terminal_uuid=t.config.terminal_uuid, device="B")
            why = check_marker(b.root, terminal_uuid=t.config.terminal_uuid, device="B")
            if why:
                self._degrade("B", "gone" if "gone" in why else "failed", why)
                return False
            self._marker_dev = os.stat(b.root / MARKER).st_dev
            journal = Journal(b.root / JOURNAL_NAME, device="B").open()
            if journal.tip != t.journal.tip:
                t.journal.resilver(journal)  # re-copy A onto B and verify the tip
            t.journal.mirror = journal
            t.journal.mirror_check = self._check_b
            self.b_journal = journal
            t.tiers.mirror_folder = b.root / "segments"
            t.tiers.mirror_all()
        except (TillVaultError, OSError) as exc:
            self._degrade("B", _state_of(str(exc)), f"storage device B could not be attached: {exc}")
            return False
        if b.state != "ok":
            self._note("B", "restored", "storage device B is back and resilvered; mirroring to A and B again")
        b.state, b.reason, b.since_ms = "ok", "", 0
        return True

    def maintain(self) -> None:
        """Between sales: bring a returned device B back (resilver), keep its physical reserve."""
        if self.b is None or self.primary != "A":
            return
        if self.b.state != "ok" and not check_marker(self.b.root, terminal_uuid=self.t.config.terminal_uuid,
                                                      device="B"):
            # Only when B has room for the journal and its reserve again.
            st = os.statvfs(self.b.root)
            if st.f_bavail * st.f_frsize > self.t.journal.file_bytes() + self.t.space.reserve_bytes():
                self.attach_b()
        if self.b_journal is not None and self.t.journal.mirror is self.b_journal:
            with contextlib.suppress(TillVaultError):
                target = self.t.space.reserve_bytes() + self.t.space.policy.headroom_bytes
                if self.b_journal.free_page_bytes() < target // 2:
                    self.b_journal.grow_free_pages(target)

    # -- failures ----------------------------------------------------------------------------
    def _mirror_failed(self, device: str, reason: str) -> None:
        self.t.journal.mirror = None
        self.t.tiers.mirror_folder = None
        self.b_journal = None
        self._degrade(device, _state_of(reason), reason)

    def _failed_over(self, failed: str, reason: str) -> None:
        self.primary = "B"
        self.t.tiers.folder, self.t.tiers.mirror_folder = (self.b.root / "segments") if self.b else None, None
        self.b_journal = None
        self._degrade(failed, "failed", reason)

    def _degrade(self, device: str, state: str, reason: str) -> None:
        dev = self.a if device == "A" else self.b
        if dev is None:
            return
        if dev.state == "ok":
            dev.since_ms = int(time.time() * 1000)
        dev.state, dev.reason = state, reason
        if "I/O" in reason or "EIO" in reason or state == "failed":
            dev.observed.io_errors += 1
            dev.observed.last_error = reason[:200]
        other = "B" if device == "A" else "A"
        self._note(device, state, alert_texts(device, state, other)[0])

    def _note(self, device: str, kind: str, message: str) -> None:
        self.events.append({"device": device, "kind": kind, "message": message, "at_ms": int(time.time() * 1000)})

    # -- reports -----------------------------------------------------------------------------
    def alerts(self) -> list[dict[str, str]]:
        """Current alerts, one per degraded device."""
        out = []
        for dev in (self.a, self.b):
            if dev is not None and dev.state != "ok":
                en, zh = alert_texts(dev.name, dev.state, "B" if dev.name == "A" else "A")
                out.append({"device": dev.name, "state": dev.state, "message": en, "message_zh": zh,
                            "reason": dev.reason})
        return out

    def status(self) -> list[dict[str, Any]]:
        """Each device: state, role, health."""
        out = []
        for dev in (self.a, self.b):
            if dev is None:
                continue
            d = dev.to_dict()
            d["role"] = "primary" if dev.name == self.primary else ("mirror" if dev.state == "ok" else "none")
            try:
                st = os.statvfs(dev.root)
                capacity = st.f_blocks * st.f_frsize
                if not dev.observed.first_capacity_bytes:
                    dev.observed.first_capacity_bytes = capacity
                d["fs_free_bytes"] = st.f_bavail * st.f_frsize
            except OSError:
                capacity = 0
            d["health"] = assess(dev.root, dev.observed, capacity).to_dict()
            out.append(d)
        return out

    def failing(self) -> list[str]:
        """Devices whose health says failing (the ladder treats them like full ones)."""
        return [d["name"] for d in self.status() if d["health"]["state"] == "failing"]

    # -- scrub and repair --------------------------------------------------------------------
    def scrub(self) -> dict[str, Any]:
        """Verify both journals and every segment copy; repair a bad copy from the good one."""
        t = self.t
        report: dict[str, Any] = {"ok": True, "checked": 0, "problems": [], "repaired": []}
        primary_report = t.journal.verify()
        report["checked"] += primary_report.checked
        b = self.b_journal
        b_report = b.verify() if b is not None else None
        bad_primary = not primary_report.ok
        bad_b = b_report is not None and (not b_report.ok or b.tip != t.journal.tip)
        for where, rep in (("A", primary_report), ("B", b_report)):
            if rep is not None:
                for p in rep.problems:
                    report["problems"].append({**p, "device": where})
        if b is not None and bad_b and not bad_primary:
            t.journal.resilver(b)
            report["repaired"].append({"device": "B", "what": "journal", "how": "re-copied from device A"})
            bad_b = False
        elif b is not None and bad_primary and not bad_b:
            b.resilver(t.journal)  # copy B onto A, then A is the primary again with B as its mirror
            b.mirror = None
            t.journal.mirror = b
            report["repaired"].append({"device": "A", "what": "journal", "how": "re-copied from device B"})
            bad_primary = False
        if bad_primary:
            self.a.observed.checksum_failures += 1
        if bad_b:
            assert self.b is not None
            self.b.observed.checksum_failures += 1
        segs = t.tiers.verify(repair=True)
        report["checked"] += len(t.tiers.catalogue())
        for p in segs:
            report["problems"].append(p)
            if "repaired" in p:
                report["repaired"].append({"device": p["device"], "what": p["segment"], "how": p["repaired"]})
        unrepaired = [p for p in segs if "repaired" not in p]
        report["ok"] = not bad_primary and not bad_b and not unrepaired
        return report


def _state_of(reason: str) -> str:
    text = reason.lower()
    if "full" in text or "no space" in text:
        return "full"
    if "gone" in text or "unmounted" in text or "no such file" in text:
        return "gone"
    return "failed"
