"""The emergency runbook (S14): what is wrong with this terminal now, and what to do, in order.

``tillvault runbook`` reads the terminal's live state (it changes nothing): sales whose outcome
is unknown, storage pressure, the two devices, the link to the acquirer host (a 0800 echo),
store-and-forward messages waiting, a batch left open, sealed batches that cannot leave the
device, the runway forecast. Each finding has a stable ``code``, a ``severity`` (``urgent``:
money or sales are at risk now; ``soon``: within a day or so; ``info``) and numbered steps that
name the commands to run. ``docs/runbook.md`` is the same plan on paper.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tillvault.domain import iso8583 as iso
from tillvault.domain.money import format_amount
from tillvault.errors import HostProtocolError, HostTimeout, HostUnavailable, MessageError
from tillvault.terminal.pressure import _ways_out
from tillvault.terminal.terminal import _is_url

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

SEVERITIES = ("urgent", "soon", "info")
#: A pending intent older than this is not a sale in flight in another process: its outcome is unknown.
STALE_INTENT_MS = 120_000
#: An open batch or an undelivered message older than this needs attention (the offline policy's
#: ``max_age_hours`` makes an undelivered message urgent).
DAY_MS = 86_400_000
#: Seconds the host gets to answer the echo test.
ECHO_TIMEOUT_S = 3.0
SUPPORT = (
    "If a step does not help, call your acquirer's technical support and give them the output of "
    "`tillvault runbook --json`: it holds no card numbers."
)


@dataclass
class Finding:
    """One thing that is wrong, and the steps that put it right."""

    code: str
    severity: str
    what: str
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def assess(t: Terminal, *, probe_host: bool = True) -> dict[str, Any]:
    """The runbook for terminal ``t`` now: ``{"ok", "terminal_id", "checked_at", "host",
    "findings", "support"}``; ``ok`` is false when anything is urgent. Changes nothing."""
    status = t.status()
    now = t.now_ms()
    findings: list[Finding] = []
    findings += _journal(t)
    findings += _unknown_outcomes(t, now)
    findings += _storage(status)
    findings += _devices(status)
    host = _probe(t) if probe_host else {"checked": False}
    findings += _network(t, status, host, now)
    findings += _open_batch(t, status, now)
    findings += _archive(t, status)
    findings += _runway(status)
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    return {
        "ok": not any(f.severity == "urgent" for f in findings),
        "terminal_id": t.config.terminal_id,
        "checked_at": datetime.fromtimestamp(now / 1000).isoformat(timespec="seconds"),
        "pressure": status["pressure"],
        "operator_roles": t.operators.enabled(),
        "host": host,
        "findings": [f.to_dict() for f in findings],
        "support": SUPPORT,
    }


def _journal(t: Terminal) -> list[Finding]:
    """SQLite's own quick check of the journal (pages and indexes, not every checksum: that is
    ``tillvault scrub``'s work)."""
    try:
        rows = [str(r[0]) for r in t.journal.conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as exc:
        rows = [str(exc)]
    if rows == ["ok"]:
        return []
    two = len(t.devices.devs) > 1
    return [
        Finding(
            "journal_damaged",
            "urgent",
            f"The journal is damaged ({'; '.join(rows)[:300]}): transactions may be unreadable.",
            [
                "Run `tillvault scrub`: "
                + (
                    "with two devices it repairs the damaged copy from the good one."
                    if two
                    else "it lists every damaged record."
                ),
                "Keep selling only if `tillvault scrub` says the journal is whole; otherwise restore the last "
                "backup onto a new device (`tillvault restore`) and call support with the scrub output.",
            ],
        )
    ]


def _unknown_outcomes(t: Terminal, now: int) -> list[Finding]:
    stale = [r for r in t.records.pending() if now - int(r["created_ms"]) > STALE_INTENT_MS]
    if not stale:
        return []
    amounts = ", ".join(
        f"invoice {r['invoice']:06d} {format_amount(r['amount'], r['currency'])} {r['currency']}" for r in stale[:5]
    )
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return [
        Finding(
            "unknown_outcome",
            "urgent",
            f"{len(stale)} sale(s) stopped between the request and the answer ({amounts}{more}): the card "
            "may have been charged.",
            [
                "Do not take these payments again yet.",
                "Run `tillvault flush`: the terminal marks them not completed and sends a reversal for each, "
                "so no card stays charged.",
                "When `tillvault status` shows outbox_pending 0, the reversals are with the host: take the "
                "payments again.",
            ],
        )
    ]


def _storage(status: dict[str, Any]) -> list[Finding]:
    level = status["pressure"]
    if level == "normal":
        return []
    ways, _ = _ways_out(status)
    severity = {"exhausted": "urgent", "critical": "urgent", "high": "soon"}.get(level, "info")
    steps = []
    if level == "exhausted":
        steps.append("New sales are refused before the card is charged; settlement still works.")
    steps.append(ways)
    steps.append(
        "Run `tillvault cleanup`: it cleans caches, seals settled batches, applies retention and offloads "
        "to the archive."
    )
    steps.append("If it is still short, move other files off the device or give the terminal more storage.")
    return [Finding(f"storage_{level}", severity, status["message"], steps)]


def _devices(status: dict[str, Any]) -> list[Finding]:
    out = []
    for alert in status.get("alerts") or []:
        device, state = alert.get("device"), alert.get("state")
        steps = [
            f"Check storage device {device}: seated, powered, not full (`tillvault status --json` shows each "
            "device's state and health)."
        ]
        if state in ("failed", "gone"):
            steps.append(
                f"Replace device {device} if it keeps failing; TillVault copies the journal and segments onto "
                "it by itself at the next sale."
            )
        steps.append(
            "Until both devices are back, every record has one copy: make a backup now "
            "(`tillvault backup DIR --passphrase ...`, DIR on another medium)."
        )
        out.append(Finding(f"device_{device}_{state}", "urgent", alert.get("message", ""), steps))
    return out


def _probe(t: Terminal) -> dict[str, Any]:
    """A 0800 echo test to the host: ``{"checked", "reachable", "address", "ms", "error"}``."""
    address = t.config.host
    result: dict[str, Any] = {"checked": True, "address": address, "reachable": False}
    began = time.monotonic()
    try:
        # The same link as sales use (TLS when the terminal is set up for it), a shorter wait.
        client = t.new_host_client(timeout=ECHO_TIMEOUT_S, connect_timeout=ECHO_TIMEOUT_S)
        try:
            stan = int(time.time()) % 999_999 + 1
            reply = client.exchange(iso.echo_request(stan=stan, terminal_id=t.config.terminal_id))
        finally:
            client.close()
        result["reachable"] = reply.get("39") == "00"
        if not result["reachable"]:
            result["error"] = f"the host answered the echo test with {reply.get('39')!r}"
    except (HostUnavailable, HostTimeout, HostProtocolError, MessageError, OSError, ValueError) as exc:
        result["error"] = str(exc)
    result["ms"] = round((time.monotonic() - began) * 1000)
    return result


def _network(t: Terminal, status: dict[str, Any], host: dict[str, Any], now: int) -> list[Finding]:
    out = []
    pending = int(status.get("outbox_pending") or 0)
    oldest = t.records.outbox_pending(limit=1)
    age_ms = now - int(oldest[0]["created_ms"]) if oldest else 0
    if host.get("checked") and not host.get("reachable"):
        policy, cur = t.offline, t.merchant.currency
        count, amount = t.records.offline_exposure()
        left_count = max(0, policy.max_count - count)
        left_amount = max(0, policy.max_amount - amount)
        capped = left_count == 0 or left_amount == 0  # no sale at all can be taken offline
        out.append(
            Finding(
                "host_unreachable",
                "urgent" if capped else "soon",
                f"The acquirer host at {host['address']} does not answer ({host.get('error', 'no answer')}).",
                [
                    "Check the network: cable, Wi-Fi or SIM, router; then run `tillvault runbook` again.",
                    f"Meanwhile card sales up to {format_amount(policy.floor_limit, cur)} {cur} are approved "
                    f"offline: {left_count:,} more, or {format_amount(left_amount, cur)} {cur} in all, before the "
                    "offline cap; larger sales are declined. Ask for another way to pay above that.",
                    "Offline sales wait in the outbox as advices and are sent by themselves once the host answers.",
                    "If the network is up and the host still does not answer, call the acquirer: the host "
                    f"address configured is {host['address']}. If they give another address (or this one was "
                    "mistyped), a manager sets it with `tillvault acquirer set HOST:PORT`.",
                ],
            )
        )
    late = age_ms > t.offline.max_age_hours * 3_600_000
    # With the host down the waiting messages are part of that finding, until they grow old:
    # the acquirer refuses advices after a few days, whoever is to blame.
    if pending and (late or not host.get("checked") or host.get("reachable")):
        out.append(
            Finding(
                "outbox_waiting",
                "urgent" if late else "soon" if age_ms > DAY_MS else "info",
                f"{pending:,} message(s) (offline advices, reversals) wait for the host, the oldest for "
                f"{age_ms / 3_600_000:.1f} hours.",
                [
                    "Run `tillvault flush` to send them now.",
                    "Acquirers refuse offline advices after a few days: if they keep failing, call the acquirer "
                    "with the invoices from `tillvault tx list --status offline_approved`.",
                ],
            )
        )
    return out


def _open_batch(t: Terminal, status: dict[str, Any], now: int) -> list[Finding]:
    closing = t.journal.conn.execute(
        "SELECT b.batch, min(x.created_ms) FROM batches b JOIN transactions x ON x.batch = b.batch "
        "WHERE b.status = 'closing' GROUP BY b.batch ORDER BY b.batch"
    ).fetchall()
    out = [
        Finding(
            "batch_settlement_unfinished",
            "urgent" if now - int(first) > DAY_MS else "soon",
            f"Batch {batch:06d} began to settle but the settlement did not finish (its first sale "
            f"{datetime.fromtimestamp(int(first) / 1000).isoformat(sep=' ', timespec='minutes')}): "
            "its money is not paid out until it does.",
            [
                "Run `tillvault settle` again: it finishes the batch that began, then reports whether the "
                "terminal and the host agree.",
                "If it keeps failing, call the acquirer with the batch number.",
            ],
        )
        for batch, first in closing
        if first is not None
    ]
    if not status.get("open_batch_count"):
        return out
    row = t.journal.conn.execute(
        "SELECT min(created_ms) FROM transactions WHERE batch = ?", (status["open_batch"],)
    ).fetchone()
    if row is None or row[0] is None or now - int(row[0]) <= DAY_MS:
        return out
    since = datetime.fromtimestamp(int(row[0]) / 1000).isoformat(sep=" ", timespec="minutes")
    return [
        *out,
        Finding(
            "batch_open_too_long",
            "soon",
            f"Batch {status['open_batch']:06d} has been open since {since} with "
            f"{status['open_batch_count']:,} transaction(s): the money is paid out only after settlement.",
            [
                "Run `tillvault settle`; it reports whether the terminal and the host agree.",
                "If the host is not reachable, settle as soon as it is: nothing is lost meanwhile.",
            ],
        ),
    ]


def _archive(t: Terminal, status: dict[str, Any]) -> list[Finding]:
    waiting = int(status.get("sealed_segments", 0)) - int(status.get("offloaded_segments", 0))
    if waiting <= 0:
        return []
    archive = t.config.archive
    sink = t.archive_sink() if archive else None
    if sink is not None and not sink.reachable():
        where = (
            "Check the network and the back office's address, and that TILLVAULT_BACKOFFICE_TOKEN is set."
            if _is_url(archive)
            else f"Plug in or mount the archive (NAS or USB disk) at {archive}."
        )
        return [
            Finding(
                "archive_unreachable",
                "soon" if status["pressure"] != "normal" else "info",
                f"The archive at {archive} is not reachable: {waiting:,} sealed batch(es) cannot leave the device.",
                [
                    where,
                    "Then run `tillvault cleanup`: sealed batches are offloaded, checked, and removed from the "
                    "device once retention allows.",
                ],
            )
        ]
    if not archive:
        return [
            Finding(
                "no_archive",
                "info",
                f"No archive is configured: {waiting:,} sealed batch(es) stay on the device until retention "
                "removes them, and the device holds their only copy.",
                [
                    "Give the terminal an archive: `tillvault archive set FOLDER` (a NAS or USB disk) or "
                    "`tillvault archive set https://BACK-OFFICE` (a manager's action)."
                ],
            )
        ]
    return []


def _runway(status: dict[str, Any]) -> list[Finding]:
    runway = status.get("runway_days")
    if runway is None or runway >= 14 or status["pressure"] in ("critical", "exhausted"):
        return []
    return [
        Finding(
            "runway_short",
            "soon" if runway < 3 else "info",
            f"At the recent rate the store fills in about {runway:.0f} day(s).",
            [
                "Settle every day and keep the archive connected, so sealed batches leave the device.",
                "Run `tillvault cleanup` now to free what can be freed.",
            ],
        )
    ]


def render(report: dict[str, Any]) -> str:
    """The runbook as text for the merchant or the support technician."""
    lines = [f"Terminal {report['terminal_id']}, checked {report['checked_at']}, pressure {report['pressure']}."]
    host = report.get("host") or {}
    if host.get("checked"):
        lines.append(
            f"Host {host['address']}: " + (f"answers ({host['ms']} ms)." if host["reachable"] else "does not answer.")
        )
    if not report["findings"]:
        lines.append("Nothing needs doing.")
    for i, f in enumerate(report["findings"], 1):
        lines.append("")
        lines.append(f"{i}. [{f['severity'].upper()}] {f['what']}")
        lines += [f"   {chr(ord('a') + j)}. {step}" for j, step in enumerate(f["steps"])]
    if report.get("operator_roles"):
        lines.append("")
        lines.append("Operator roles are on: add --operator ID to the commands above (the PIN is asked).")
    lines.append("")
    lines.append(report["support"])
    return "\n".join(lines)
