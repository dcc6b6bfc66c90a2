"""The pressure ladder (S5 made precise): normal → watch → high → critical → exhausted.

Each level acts before the next, and every message names the device and the way out, in
English and Simplified Chinese (the seed's users):

| level | trigger | action |
|---|---|---|
| any | the archive is reachable | send it the sealed segments it has not acknowledged (a copy) |
| watch | free < 30% or runway < 14 days | clean caches; seal settled batches |
| high | free < 15% or runway < 3 days | offload sealed segments, evict acknowledged ones; prompt |
| critical | only the reserve (and a little) is left | spill to device B; release the ballast; settle |
| exhausted | no sale fits above the reserve | refuse new sales before authorization; settlement works |
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tillvault.errors import SettlementError, StorageError

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

LEVELS = ("normal", "watch", "high", "critical", "exhausted")
WATCH_RUNWAY_DAYS = 14
HIGH_RUNWAY_DAYS = 3


def rank(level: str) -> int:
    """Position of ``level`` on the ladder (0 = normal)."""
    return LEVELS.index(level)


def level_with_runway(space_level: str, runway_days: float | None) -> str:
    """Raise the space level by the runway forecast (never lowers it)."""
    level = space_level
    if runway_days is not None:
        if runway_days < HIGH_RUNWAY_DAYS and rank(level) < rank("high"):
            level = "high"
        elif runway_days < WATCH_RUNWAY_DAYS and rank(level) < rank("watch"):
            level = "watch"
    return level


def messages(level: str, device: str, st: dict[str, Any]) -> tuple[str, str]:
    """The merchant's prompt for ``level`` (English, Simplified Chinese)."""
    runway = st.get("runway_days")
    runway_en = f"about {runway:.0f} days of space left" if runway is not None else "space is getting short"
    runway_zh = f"剩余空间约可用{runway:.0f}天" if runway is not None else "存储空间紧张"
    if level == "exhausted":
        ways_en, ways_zh = _ways_out(st)
        return (
            f"Storage device {device} is full: 0 sales can be taken. {ways_en} Settlement still works.",
            f"存储设备{device}已满:无法进行新交易。{ways_zh}结算功能仍可使用。",
        )
    if level == "critical":
        return (
            f"Storage device {device} is almost full: only the settlement reserve is left. Settle now and "
            "connect the archive or back office.",
            f"存储设备{device}即将写满:仅剩结算预留空间。请立即结算并连接归档或后台。",
        )
    if level == "high":
        return (
            f"Storage device {device}: {runway_en}. Connect the archive or back office so settled transactions can "
            "be offloaded (tillvault cleanup).",
            f"存储设备{device}:{runway_zh}。请连接归档或后台以转存已结算的交易(tillvault cleanup)。",
        )
    if level == "watch":
        return (
            f"Storage device {device}: {runway_en}; caches are being cleaned and settled batches sealed.",
            f"存储设备{device}:{runway_zh};正在清理缓存并压缩已结算批次。",
        )
    return (f"Storage device {device}: normal.", f"存储设备{device}:正常。")


def _ways_out(st: dict[str, Any]) -> tuple[str, str]:
    """What can free space now, from what the terminal holds (English, Chinese): settling only
    when there is an open batch, offloading only when sealed batches are still on the device,
    and otherwise the other files that fill it."""
    en: list[str] = []
    zh: list[str] = []
    if st.get("open_batch_count"):
        en.append(f"settle now (tillvault settle: {st['open_batch_count']:,} transactions in the open batch)")
        zh.append("请立即结算")
    local_sealed = int(st.get("sealed_segments", 0)) - int(st.get("evicted_segments", 0))
    if "offloaded_segments" in st:  # those already in the archive leave by themselves under pressure
        local_sealed = min(local_sealed, int(st.get("sealed_segments", 0)) - int(st["offloaded_segments"]))
    if local_sealed > 0 and st.get("archive", True):
        en.append(f"connect the archive so {local_sealed:,} sealed batch(es) can leave the device (tillvault cleanup)")
        zh.append("连接归档以转存已结算的批次")
    elif local_sealed > 0:  # no archive set up: say how to give it one
        en.append(
            f"give the terminal an archive (tillvault archive set FOLDER or the back office's URL) so "
            f"{local_sealed:,} sealed batch(es) can leave the device"
        )
        zh.append("设置归档(tillvault archive set)以转存已结算的批次")
    if not en:
        en.append("free space on the device: other files fill it, TillVault has nothing more to move")
        zh.append("请清理设备上的其他文件")
    text_en = "; ".join(en)
    return text_en[0].upper() + text_en[1:] + ".", "、".join(zh) + "。"


@dataclass
class LadderReport:
    """What one run of the ladder did."""

    level_before: str
    level_after: str = ""
    actions: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    message: str = ""
    message_zh: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "level_before": self.level_before,
            "level_after": self.level_after,
            "actions": self.actions,
            "freed_bytes": self.freed_bytes,
            "message": self.message,
            "message_zh": self.message_zh,
        }


#: The fewest transactions worth a forced settlement at critical (each sealed segment costs ~1.4 KB
#: of header and key; a hot row ~0.6 KB, a sealed one ~30 B).
MIN_FORCED_SETTLE = 20


def _back_up(t: Terminal, report: LadderReport) -> None:
    """Send the archive the sealed segments it has not acknowledged yet, whatever the pressure:
    settled data has a second copy as soon as the archive can take it (against a failing device),
    and nothing leaves the terminal (eviction waits for pressure or retention)."""
    if not any(seg["local"] and seg["acked_ms"] is None for seg in t.tiers.catalogue()):
        return
    sink = t.archive_sink()
    if sink is None:
        return
    try:
        _offload(t, sink, report, " (a second copy; nothing evicted)")
    except StorageError as exc:
        report.actions.append(f"offload stopped: {exc}")


def _offload(t: Terminal, sink: Any, report: LadderReport, note: str = "") -> None:
    """Send ``sink`` the sealed segments it has not acknowledged; say what was sent and what stopped."""
    off = t.tiers.offload(sink)
    if off.offloaded:
        report.actions.append(f"offloaded {off.offloaded} segment(s) to {sink.name}{note}")
    for err in off.errors or []:
        report.actions.append(f"offload stopped: {err}")


def run_ladder(t: Terminal, *, force_level: str | None = None, allow_settle: bool = True) -> LadderReport:
    """Act for the current pressure level, lowest steps first; returns what was done.

    ``force_level`` runs the steps up to that level whatever the pressure (``cleanup``
    runs the safe steps: ``high``).
    """
    st = t.status()  # exact measurement
    level = force_level or st["pressure"]
    report = LadderReport(level_before=st["pressure"])
    used_before = t.space.status().used_bytes
    if rank(level) >= rank("watch"):
        freed = t.caches.clean(aggressive=rank(level) >= rank("high"))
        with contextlib.suppress(OSError):
            freed["update leftovers"] = t.updates.remove_leftovers()  # a package write that was killed
            freed["segment leftovers"] = t.tiers.remove_leftovers()  # a seal, fetch or eviction killed
        if sum(freed.values()):
            report.actions.append(f"cleaned caches: {sum(freed.values()):,} B ({freed})")
        try:
            sealed = t.tiers.seal_closed()
        except StorageError as exc:
            report.actions.append(f"could not seal: {exc}")
            sealed = None
        if sealed is not None and sealed.sealed:
            report.actions.append(f"sealed {sealed.sealed} batch(es), {sealed.sealed_records} transactions")
        for err in (sealed.errors or []) if sealed is not None else []:
            report.actions.append(f"could not seal: {err}")
        try:
            purged = t.purge()
            if purged["total"]:
                report.actions.append(f"retention purge: {purged}")
        except (StorageError, SettlementError) as exc:
            report.actions.append(f"retention purge not possible now: {exc}")
    if rank(level) < rank("high"):
        _back_up(t, report)
    if rank(level) >= rank("high"):
        sink = t.archive_sink()
        if sink is None:
            report.actions.append("no archive configured: settled transactions cannot be offloaded")
        else:
            try:
                _offload(t, sink, report)
                # Under pressure, acknowledged segments leave even inside the local retention window.
                keep = 0 if force_level is None else t.retention.transactions_local_days
                ev = t.tiers.evict(sink, keep_days=keep, now_ms=t.now_ms())
                if ev.evicted:
                    report.actions.append(f"evicted {ev.evicted} acknowledged segment(s), {ev.freed_bytes:,} B")
            except StorageError as exc:
                report.actions.append(f"offload or eviction stopped: {exc}")
    critical = rank(level) >= rank("critical") and force_level is None
    spilled = t.devices.spill() if critical else None
    if spilled:
        report.actions.append(f"spilled to the other device: {spilled}")
    if critical and not spilled:
        released = t.space.release_ballast()
        if released:
            report.actions.append(f"released the ballast: {released:,} B")
        open_count = t.records.open_batch_count()
        if open_count and open_count < MIN_FORCED_SETTLE and not t.batch_full():
            # A segment has a fixed cost (~1.4 KB): settling a handful of sales at every refused
            # sale would spend more than it frees (and leave the merchant a batch per sale).
            report.actions.append(
                f"no forced settlement: the open batch has {open_count} transaction(s), fewer than "
                f"{MIN_FORCED_SETTLE} (sealing them would free less than it costs)"
            )
        elif allow_settle and open_count and t.host_client().reachable():
            try:
                rep = t.settle()
                report.actions.append(f"forced settlement of batch {rep.batch}: {rep.reason}")
                sealed = t.tiers.seal_closed()
                if sealed.sealed:
                    report.actions.append(f"sealed {sealed.sealed} batch(es) after settlement")
            except (SettlementError, StorageError) as exc:
                report.actions.append(f"forced settlement not possible now: {exc}")
    after = t.status()
    t.space.forget_sizes()
    report.level_after = after["pressure"]
    report.freed_bytes = max(0, used_before - t.space.status().used_bytes)
    report.message, report.message_zh = messages(report.level_after, t.space.device, after)
    if rank(report.level_after) < rank("critical") and t.space.ballast_would_fit():
        t.space.ensure_ballast()  # space came back: rebuild the emergency margin
    return report
