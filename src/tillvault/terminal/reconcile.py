"""Three-way reconciliation: the terminal's journal, the host's ledger and the merchant payout.

They must agree exactly (DESIGN.md invariant 8); every difference is listed with the
transactions involved. The terminal side covers its closed batches, from the hot tier and
from local sealed segments, and from the archive's copies of evicted ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tillvault.store.encoding import decode

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal


def terminal_rows(t: Terminal, batches: list[int]) -> list[dict[str, Any]]:
    """The terminal's transaction rows of ``batches`` (hot and sealed)."""
    wanted = set(batches)
    rows = [r for r in t.records.list(limit=10**9) if r["batch"] in wanted]
    seen = {r["invoice"] for r in rows}
    for seg in t.tiers.catalogue():
        if seg["batch"] in wanted and seg["local"]:
            from tillvault.store.segments import read_segment

            for r in read_segment(t.tiers.segment_path(seg["name"]), t.keyring):
                if r["invoice"] not in seen:
                    if isinstance(r.get("extra"), str):
                        r = {**r, "extra": decode(r["extra"])}
                    rows.append(r)
    return rows


def closed_batch_numbers(t: Terminal) -> list[int]:
    """Batches the terminal has closed, oldest first."""
    return [
        int(r[0]) for r in t.journal.conn.execute("SELECT batch FROM batches WHERE status = 'closed' ORDER BY batch")
    ]


def reconcile(t: Terminal, host_data: Path | str, *, batches: list[int] | None = None) -> dict[str, Any]:
    """Compare the three views for ``batches`` (default: every closed batch).

    Needs read access to the reference host's ledger (its data folder and secret).

    :raises ConfigError: ``host_data`` holds no host ledger (nothing is created there).
    Returns ``{"ok", "batches", "terminal_rows", "host_rows", "payout_statements", "differences"}``.
    """
    from tillvault.errors import ConfigError
    from tillvault.host.ledger import LEDGER_FILE, HostLedger
    from tillvault.host.payout import host_views
    from tillvault.host.reconcile import compare_views

    chosen = batches if batches is not None else closed_batch_numbers(t)
    mine = terminal_rows(t, chosen)
    # Batches evicted to the archive are read from its verified copies (nothing written here);
    # one that cannot be read now is left out on both sides, never reported as missing.
    unreadable: list[int] = []
    evicted = [s["batch"] for s in t.tiers.catalogue() if s["batch"] in set(chosen) and not s["local"]]
    if evicted:
        sink = t.archive_sink()
        seen = {r["invoice"] for r in mine}
        for batch in evicted:
            records, missing = t.tiers.sealed_records(sink, batch=batch, archived=True)
            got = list(records) if sink is not None else []
            if missing or sink is None:
                unreadable.append(batch)
                continue
            for r in got:
                if r["invoice"] not in seen:
                    mine.append({**r, "extra": decode(r["extra"])} if isinstance(r.get("extra"), str) else r)
    compared = [b for b in chosen if b not in unreadable]
    kept = set(compared)
    mine = [r for r in mine if r["batch"] in kept]
    if not (Path(host_data) / LEDGER_FILE).is_file():  # a typo must not read as "the host lost everything"
        raise ConfigError(f"no host ledger in {host_data} (the host's data folder holds {LEDGER_FILE})")
    ledger = HostLedger(Path(host_data))
    try:
        host_rows, payouts = host_views(ledger, t.config.terminal_id, compared)
    finally:
        ledger.close()
    differences = compare_views(mine, host_rows, payouts) if compared else []
    for batch in unreadable:
        differences.append(
            {
                "kind": "not_compared",
                "batch": batch,
                "detail": f"batch {batch} is evicted to the archive, which cannot be read now; reconnect it to compare",
            }
        )
    return {
        "ok": not differences,
        "batches": chosen,
        "terminal_rows": len(mine),
        "host_rows": len(host_rows),
        "payout_statements": len(payouts),
        "differences": differences,
    }
