"""The terminal's two storage devices: mirroring, degraded mode, failover, resilver, repair.

Device A is the data folder; device B (optional) is a folder on another filesystem (an SD
card beside internal flash, say). While both are healthy every journal write is applied to
both before it is acknowledged, and sealed segments are kept on both. When one fills,
fails (EIO) or disappears, the terminal keeps selling and settling on the other, degraded,
with an alert naming the device.

Which device is *primary* is durable: each device's marker holds a generation, raised on
the surviving device (and fsynced) before the first write it takes alone is acknowledged.
At start the device with the highest readable generation is primary, so a device that
missed writes is never mistaken for the newer one. A device that returns is resilvered
(re-copied from the primary and verified) only by the process holding the terminal's lock,
between two sales. ``scrub`` verifies both copies and repairs a bad one from the good one.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tillvault.errors import TillVaultError
from tillvault.store.devices import MARKER, Observed, assess, check_marker, marker_generation, write_marker
from tillvault.store.journal import Journal

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

JOURNAL_NAME = "journal.db"


@dataclass
class DeviceState:
    """One device as the terminal sees it now."""

    name: str
    root: Path
    state: str = "ok"  # ok | full | failed | gone | stale
    reason: str = ""
    since_ms: int = 0
    observed: Observed = field(default_factory=Observed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (health is measured on demand)."""
        return {
            "name": self.name,
            "path": str(self.root),
            "state": self.state,
            "reason": self.reason,
            "since_ms": self.since_ms or None,
        }


def alert_texts(device: str, state: str, other: str) -> tuple[str, str]:
    """The merchant's alert for a degraded device (English, Simplified Chinese)."""
    if state == "full":
        return (
            f"storage device {device} is full: running on {other} only; free space on {device} or replace it",
            f"存储设备{device}已满:仅使用设备{other}运行;请清理或更换设备{device}",
        )
    if state == "gone":
        return (
            f"storage device {device} is gone: running on {other} only; reconnect or replace {device}",
            f"存储设备{device}已断开:仅使用设备{other}运行;请重新连接或更换设备{device}",
        )
    if state == "stale":
        return (
            f"storage device {device} is behind {other}: it will be re-copied by the next sale or settlement",
            f"存储设备{device}数据落后于设备{other}:下次交易或结算时将自动重新同步",
        )
    return (
        f"storage device {device} failed: running on {other} only; replace {device}",
        f"存储设备{device}故障:仅使用设备{other}运行;请更换设备{device}",
    )


def choose_primary(data_dir: Path, device_b: str | None) -> tuple[str, Path]:
    """The device to open as primary: the highest readable generation (A on a tie), and never
    one whose journal is missing while the other's is there."""
    if not device_b:
        return "A", data_dir
    gen_a = marker_generation(data_dir)
    gen_b = marker_generation(Path(device_b))
    b_has = (Path(device_b) / JOURNAL_NAME).exists()
    if b_has and not (data_dir / JOURNAL_NAME).exists():
        return "B", Path(device_b)  # A's journal was lost: B holds the transactions
    if b_has and _journal_ahead(Path(device_b) / JOURNAL_NAME, data_dir / JOURNAL_NAME):
        return "B", Path(device_b)  # A lost its last writes (its WAL cut short): B holds them
    if gen_b is not None and (gen_a is None or gen_b > gen_a) and b_has:
        if _journal_ahead(data_dir / JOURNAL_NAME, Path(device_b) / JOURNAL_NAME):
            return "A", data_dir  # B's generation is higher, but A holds all B has and more
        return "B", Path(device_b)
    return "A", data_dir


def _journal_ahead(other: Path, primary: Path) -> bool:
    """True when the journal at ``other`` provably holds all of ``primary``'s and more."""
    if not other.exists() or not primary.exists():
        return False
    a = b = None
    try:
        a, b = Journal(primary).open(), Journal(other).open()
        return _strictly_ahead(b, a) is True
    except (TillVaultError, OSError, sqlite3.Error):
        return False
    finally:
        for j in (a, b):
            if j is not None:
                j.close()


class _PrimaryBehind(TillVaultError):
    """The primary misses writes another device holds and cannot be made whole now."""

    exit_code = 3


def missing_journal(data_dir: Path, device_b: str | None) -> str | None:
    """Why an existing terminal's journal cannot be opened (no copy on any device), or None.

    Opening would make a new, empty journal: invoice numbers and STANs would start again,
    and the host has seen them (duplicates), while the transactions are gone from sight.
    """
    places = [data_dir] + ([Path(device_b)] if device_b else [])
    if any((p / JOURNAL_NAME).exists() for p in places):
        return None
    where = " or ".join(str(p) for p in places)
    return (
        f"the terminal's journal ({JOURNAL_NAME}) is missing from {where}: its transactions are not there. "
        "Restore the last backup into an empty folder (tillvault restore); a new journal here would start "
        "invoice numbers again that the host has already seen"
    )


class DeviceSet:
    """Devices A and B of one terminal and what is done when one of them fails."""

    def __init__(self, t: Terminal, primary: str) -> None:
        self.t = t
        self.devs: dict[str, DeviceState] = {"A": DeviceState("A", t.data_dir)}
        if t.config.device_b:
            self.devs["B"] = DeviceState("B", Path(t.config.device_b))
        self.primary = primary
        self.secondary_journal: Journal | None = None
        self.events: list[dict[str, Any]] = []
        self._marker_dev: int | None = None
        t.journal.on_mirror_failure = self._mirror_failed
        t.journal.on_failover = self._failed_over
        t.tiers.on_mirror_failure = lambda reason: self._mirror_failed(self.secondary or "B", reason)

    @property
    def secondary(self) -> str | None:
        """The other device's name (None with one device)."""
        others = [n for n in self.devs if n != self.primary]
        return others[0] if others else None

    @property
    def b_journal(self) -> Journal | None:
        """The mirror's journal while mirroring (kept for callers that know it as device B's)."""
        return self.secondary_journal

    def generation(self) -> int:
        """The primary's generation."""
        return marker_generation(self.devs[self.primary].root) or 0

    # -- attaching and resilvering -----------------------------------------------------------
    def _check_secondary(self) -> str:
        name = self.secondary
        if name is None:
            return ""
        dev = self.devs[name]
        try:
            st = os.stat(dev.root / MARKER)
        except OSError:
            return f"storage device {name} is gone ({dev.root} holds no TillVault device: unmounted or removed)"
        if self._marker_dev is not None and st.st_dev != self._marker_dev:
            return f"storage device {name} was replaced by another filesystem"
        return ""

    def attach(self, *, may_resilver: bool) -> bool:
        """Mirror to the secondary device; re-copy it from the primary first if it is behind.

        ``may_resilver`` is true only for the process holding the terminal's lock: a reader must
        never overwrite a device another process is writing. Returns True when mirroring.
        """
        name = self.secondary
        if name is None or self.t.journal.mirror is not None:
            return self.t.journal.mirror is not None
        dev, t = self.devs[name], self.t
        try:
            why = check_marker(dev.root, terminal_uuid=t.config.terminal_uuid, device=name)
            if why:
                self._degrade(name, "gone" if "gone" in why else "failed", why)
                return False
            self._marker_dev = os.stat(dev.root / MARKER).st_dev
            journal = Journal(dev.root / JOURNAL_NAME, device=name).open()
            ahead = _strictly_ahead(journal, t.journal)
            if ahead is None:
                journal.close()
                why = (
                    f"storage devices {self.primary} and {name} hold different transactions (neither copy "
                    "provably contains the other): nothing was overwritten; run tillvault scrub and call support"
                )
                if may_resilver:  # never sell on a copy that may lack approved sales
                    raise _PrimaryBehind(why)
                self._degrade(name, "failed", why)
                return False
            if ahead:
                # The primary lost writes the other still has (its journal deleted, or its WAL cut
                # short): the other is the good copy. Copying the primary over it would lose them.
                if not may_resilver:
                    journal.close()
                    self._degrade(self.primary, "stale", f"storage device {self.primary} is behind {name}")
                    return False
                try:
                    journal.resilver(t.journal)
                except (TillVaultError, OSError, sqlite3.Error) as exc:
                    raise _PrimaryBehind(
                        f"storage device {self.primary} misses transactions that {name} holds and could not "
                        f"take {name}'s copy ({exc}): free space on {self.primary}, then open the terminal again "
                        "(nothing was overwritten; no sale is taken on the copy that is behind)"
                    ) from exc
                first = self.devs[self.primary]
                first.state, first.reason, first.since_ms = "ok", "", 0
                self._note(
                    self.primary,
                    "repaired",
                    f"storage device {self.primary} had lost transactions that {name} still held: "
                    f"re-copied from {name}",
                )
                journal.mirror = None
            elif journal.tip != t.journal.tip or (marker_generation(dev.root) or 0) < self.generation():
                if not may_resilver:
                    journal.close()
                    if not self._room_for_copy(dev):  # maintain would not re-copy it: say so, not "soon"
                        why = f"storage device {name} is full: it cannot take a copy of {self.primary}"
                        self._degrade(name, "full", why)
                    else:
                        self._degrade(name, "stale", f"storage device {name} is behind {self.primary}")
                    return False
                t.journal.resilver(journal)  # re-copy the primary onto it and verify the tip
                write_marker(dev.root, terminal_uuid=t.config.terminal_uuid, device=name, generation=self.generation())
            t.journal.mirror = journal
            t.journal.mirror_check = self._check_secondary
            self.secondary_journal = journal
            t.tiers.mirror_folder = dev.root / "segments"
            t.tiers.mirror_all()
        except _PrimaryBehind:
            raise
        except (TillVaultError, OSError) as exc:
            self._degrade(name, _state_of(str(exc)), f"storage device {name} could not be attached: {exc}")
            return False
        if dev.state != "ok":
            self._note(name, "restored", f"storage device {name} is back and resilvered; mirroring again")
        dev.state, dev.reason, dev.since_ms = "ok", "", 0
        return True

    def _room_for_copy(self, dev: DeviceState) -> bool:
        """Whether ``dev``'s filesystem can take a copy of the primary's journal and its reserve."""
        try:
            st = os.statvfs(dev.root)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize > self.t.journal.file_bytes() + self.t.space.reserve_bytes()

    def maintain(self) -> None:
        """Between sales (lock held): bring a returned device back, keep its physical reserve."""
        name = self.secondary
        if name is None or self.t._lock_fd is None:
            return
        dev = self.devs[name]
        uuid = self.t.config.terminal_uuid
        if (  # (the marker is read only while there is no mirror: not between every two sales)
            self.t.journal.mirror is None
            and not check_marker(dev.root, terminal_uuid=uuid, device=name)
            and self._room_for_copy(dev)
        ):
            self.attach(may_resilver=True)
        journal = self.secondary_journal
        if journal is not None and self.t.journal.mirror is journal:
            with contextlib.suppress(TillVaultError):
                low, target = self.t.space.top_up_bounds()
                if journal.free_page_bytes() < low:
                    journal.grow_free_pages(target)

    def spill(self) -> str | None:
        """Go on on the other device when this one's filesystem is full and the other has room
        (the ladder's critical step; lock held): the mirror becomes primary, as on a failure, and
        this device is degraded as full, re-copied and mirrored again once it has room. Returns
        what was done, or None (one device, no mirror, or no device with more room)."""
        t = self.t
        name = self.secondary
        if name is None or t.journal.mirror is None or t._lock_fd is None:
            return None
        policy = t.space.policy
        need = t.space.reserve_bytes() + policy.critical_sales * policy.sale_life_bytes
        try:
            here, there = os.statvfs(self.devs[self.primary].root), os.statvfs(self.devs[name].root)
        except OSError:
            return None
        free_here, free_there = here.f_bavail * here.f_frsize, there.f_bavail * there.f_frsize
        if free_here >= need or free_there < free_here + need:
            return None
        full = self.primary
        reason = (
            f"storage device {full} is full ({free_here:,} B free on its filesystem): sales and settlement "
            f"go on on device {name} ({free_there:,} B free)"
        )
        if not t.journal._fail_over(reason):
            return None
        t.space.forget_sizes()
        return reason

    def follow_primary(self) -> bool:
        """Make the device the markers name primary this process's primary too, and reopen a
        journal file re-copied under this process (True if anything changed).

        Another process may have failed over (raising the survivor's generation) or re-copied this
        device after this one opened: writing on to the old device or the unlinked file would fork
        the journal or lose the sale, and re-copying the other device from it would lose the
        survivor's sales. Called with the terminal's lock held.
        """
        t = self.t
        if self.secondary is None:
            return False
        name, root = choose_primary(t.data_dir, t.config.device_b)
        if name == self.primary:
            if not t.journal.file_replaced():
                return False
            # Same device, but the file was re-copied under this process (resilvered from the other).
            self.release_mirror()
            t.journal.reopen(t.journal.path, device=name)
            return True
        self.release_mirror()
        t.journal.reopen(root / JOURNAL_NAME, device=name)
        self.primary = name
        t.tiers.folder, t.tiers.mirror_folder = root / "segments", None
        t.space.root, t.space.device = root, name
        self._note(name, "primary", f"storage device {name} is the primary (another process failed over to it)")
        return True

    def release_mirror(self) -> None:
        """Stop mirroring without calling the device faulty, so :meth:`attach` checks it afresh
        (another process wrote: the mirror may lack what it wrote, or was re-copied under it)."""
        journal = self.secondary_journal
        self.t.journal.mirror = None
        self.t.tiers.mirror_folder = None
        self.secondary_journal = None
        if journal is not None:
            with contextlib.suppress(Exception):
                journal.close()

    # -- failures ----------------------------------------------------------------------------
    def _mirror_failed(self, device: str, reason: str) -> None:
        was_mirroring = self.t.journal.mirror is not None or self.secondary_journal is not None
        self.t.journal.mirror = None
        self.t.tiers.mirror_folder = None
        if self.secondary_journal is not None:
            with contextlib.suppress(Exception):
                self.secondary_journal.close()
        self.secondary_journal = None
        if was_mirroring:
            # The primary goes on alone: raise its generation before the write it takes alone is
            # acknowledged, so the next process never prefers the other device (a tie goes to A,
            # which may be the one left behind) and re-copies it over this one's sales.
            with contextlib.suppress(OSError, TillVaultError):
                write_marker(
                    self.devs[self.primary].root,
                    terminal_uuid=self.t.config.terminal_uuid,
                    device=self.primary,
                    generation=self.generation() + 1,
                )
        self._degrade(device, _state_of(reason), reason)

    def _failed_over(self, failed: str, reason: str) -> None:
        """The primary failed and the mirror took over: make that durable before going on."""
        t = self.t
        survivor = next(n for n in self.devs if n != failed)
        generation = self.generation() + 1
        self.primary = survivor
        root = self.devs[survivor].root
        # Raised before the first write the survivor takes alone is acknowledged.
        write_marker(root, terminal_uuid=t.config.terminal_uuid, device=survivor, generation=generation)
        t.tiers.folder, t.tiers.mirror_folder = root / "segments", None
        t.space.root, t.space.device = root, survivor
        self.secondary_journal = None
        self._degrade(failed, "full" if _state_of(reason) == "full" else "failed", reason)

    def _degrade(self, device: str, state: str, reason: str) -> None:
        dev = self.devs.get(device)
        if dev is None:
            return
        if dev.state == "ok":
            dev.since_ms = int(time.time() * 1000)
        dev.state, dev.reason = state, reason
        if state == "failed" or "I/O" in reason:
            dev.observed.io_errors += 1
            dev.observed.last_error = reason[:200]
        other = next((n for n in self.devs if n != device), "A")
        self._note(device, state, alert_texts(device, state, other)[0])

    def _note(self, device: str, kind: str, message: str) -> None:
        self.events.append({"device": device, "kind": kind, "message": message, "at_ms": int(time.time() * 1000)})

    # -- reports -----------------------------------------------------------------------------
    def alerts(self) -> list[dict[str, str]]:
        """Current alerts, one per degraded device."""
        out = []
        for dev in self.devs.values():
            if dev.state != "ok":
                other = next((n for n in self.devs if n != dev.name), "A")
                en, zh = alert_texts(dev.name, dev.state, other)
                out.append(
                    {"device": dev.name, "state": dev.state, "message": en, "message_zh": zh, "reason": dev.reason}
                )
        return out

    def status(self) -> list[dict[str, Any]]:
        """Each device: state, role, health."""
        out = []
        for dev in self.devs.values():
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
    def scrub(self, *, repair: bool) -> dict[str, Any]:
        """Verify both journals, every segment copy and the archive's copies; with ``repair`` (lock
        held) fix a bad copy from a good one."""
        t = self.t
        report: dict[str, Any] = {"ok": True, "checked": 0, "problems": [], "repaired": []}
        primary_report = t.journal.verify()
        report["checked"] += primary_report.checked
        second = self.secondary_journal
        second_report = second.verify() if second is not None else None
        bad_primary = not primary_report.ok
        bad_second = (
            second is not None and second_report is not None and (not second_report.ok or second.tip != t.journal.tip)
        )
        for where, rep in ((self.primary, primary_report), (self.secondary, second_report)):
            if rep is not None:
                for p in rep.problems:
                    report["problems"].append({**p, "device": where})
        if second is not None and bad_second and not bad_primary and repair:
            t.journal.resilver(second)
            report["repaired"].append(
                {"device": self.secondary, "what": "journal", "how": f"re-copied from device {self.primary}"}
            )
            bad_second = False
        elif second is not None and bad_primary and not bad_second and repair:
            second.resilver(t.journal)  # copy the good one back; the primary keeps its role
            second.mirror = None
            t.journal.mirror = second
            report["repaired"].append(
                {"device": self.primary, "what": "journal", "how": f"re-copied from device {self.secondary}"}
            )
            bad_primary = False
        if bad_primary:
            self.devs[self.primary].observed.checksum_failures += 1
        if bad_second and self.secondary:
            self.devs[self.secondary].observed.checksum_failures += 1
        sink = t.archive_sink()
        segs = t.tiers.verify(repair=repair, sink=sink)
        report["checked"] += len(t.tiers.catalogue())
        for p in segs:
            report["problems"].append(p)
            if "repaired" in p:
                report["repaired"].append({"device": p["device"], "what": p["segment"], "how": p["repaired"]})
        # The cold tier: what the archive acknowledged must still be there, intact.
        archive, lost = t.tiers.verify_archive(sink, repair=repair)
        report["archive"] = archive
        report["checked"] += archive["checked"]
        for p in lost:
            report["problems"].append(p)
            if "repaired" in p:
                report["repaired"].append({"device": "archive", "what": p["segment"], "how": p["repaired"]})
        unrepaired = [p for p in (*segs, *lost) if "repaired" not in p]
        report["ok"] = not bad_primary and not bad_second and not unrepaired
        return report


def _strictly_ahead(other: Journal, primary: Journal) -> bool | None:
    """True when ``other`` holds every event of ``primary`` and more (the primary is a prefix of
    it); False when it does not lead (same tip, or behind); None when the two diverged."""
    seq, chain = primary.tip
    other_seq, _ = other.tip
    if other_seq <= seq:
        return False
    if seq == 0:
        return True  # an empty journal is a prefix of any
    row = other.conn.execute("SELECT chain FROM events WHERE seq = ?", (seq,)).fetchone()
    if row is None:  # sealed away on the other device: provable only where its anchor stands
        row = other.conn.execute("SELECT chain FROM chain_anchor WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return None
    return None if bytes(row[0]) != chain else True


def _state_of(reason: str) -> str:
    text = reason.lower()
    if "is behind" in text:
        return "stale"
    if "full" in text or "no space" in text:
        return "full"
    if "gone" in text or "unmounted" in text or "no such file" in text:
        return "gone"
    return "failed"
