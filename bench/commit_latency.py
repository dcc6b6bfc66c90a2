"""Latency of one durable sale record (intent + outcome, each fsynced) against a raw fsync.

Both are measured in the same run, on the same disk, interleaved in rounds so that noise
from other users of the machine falls on both alike. Prints p50/p99 of each and the ratio
(goal: p99 ratio <= 2.5), plus records/s for a burst written in one commit (group commit).

    python bench/commit_latency.py [--records 2000] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tillvault.store.journal import Journal
from tillvault.store.records import Records


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def raw_fsync_once(fd: int, payload: bytes) -> float:
    """Append ``payload`` and fsync: the floor any durable commit pays. Returns seconds."""
    t0 = time.perf_counter()
    os.write(fd, payload)
    os.fsync(fd)
    return time.perf_counter() - t0


def sale_record_once(records: Records, i: int) -> float:
    """Intent then outcome, each a durable commit. Returns seconds."""
    t0 = time.perf_counter()
    tx = records.record_intent(
        kind="sale",
        amount=3500 + i % 997,
        currency="CNY",
        business_date="2026-11-25",
        masked_pan="622848******1234",
        brand="unionpay",
        entry_mode="chip",
        card_token=f"{i:032x}",
        merchant_id="898310148160001",
        extra={"when": "x"},
    )
    records.record_outcome(tx["invoice"], status="approved", rrn=f"{i:012d}", auth_code="A1B2C3", response_code="00")
    return time.perf_counter() - t0


def run(n: int, folder: Path) -> dict:
    """Measure ``n`` sale records and ``n`` raw fsyncs interleaved in rounds of 50."""
    journal = Journal(folder / "journal.db").open()
    journal.grow_free_pages(4 * 1024 * 1024)
    records = Records(journal, "TV000001")
    fd = os.open(folder / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    payload = b"r" * 600  # about one sale row
    sale: list[float] = []
    raw: list[float] = []
    try:
        for _ in range(10):  # warm-up
            sale_record_once(records, 0)
            raw_fsync_once(fd, payload)
        done = 0
        while done < n:
            for i in range(50):
                raw.append(raw_fsync_once(fd, payload))
                sale.append(sale_record_once(records, done + i))
            done += 50
        # Group commit: a burst of sales journalled in one transaction.
        burst = 1000
        t0 = time.perf_counter()

        def many(ctx):  # type: ignore[no-untyped-def]
            for i in range(burst):
                ctx.emit("intent", {"i": i, "amount": 100 + i, "masked_pan": "622848******1234"})

        journal.write(many)
        burst_s = time.perf_counter() - t0
    finally:
        os.close(fd)
        journal.close()
    out = {
        "records": len(sale),
        "sale_p50_ms": statistics.median(sale) * 1000,
        "sale_p99_ms": percentile(sale, 99) * 1000,
        "raw_fsync_p50_ms": statistics.median(raw) * 1000,
        "raw_fsync_p99_ms": percentile(raw, 99) * 1000,
        "sales_per_s_sequential": len(sale) / sum(sale),
        "burst_records_per_s": burst / burst_s,
    }
    out["p50_ratio"] = out["sale_p50_ms"] / out["raw_fsync_p50_ms"]
    out["p99_ratio"] = out["sale_p99_ms"] / out["raw_fsync_p99_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tv-commit-", dir=args.dir))
    try:
        out = run(args.records, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"one durable sale record (intent + outcome): p50 {out['sale_p50_ms']:.3f} ms  p99 {out['sale_p99_ms']:.3f} ms"
    )
    print(
        f"raw os.fsync of 600 B on the same disk:    p50 {out['raw_fsync_p50_ms']:.3f} ms  "
        f"p99 {out['raw_fsync_p99_ms']:.3f} ms"
    )
    print(f"ratio sale/raw: p50 {out['p50_ratio']:.2f}x  p99 {out['p99_ratio']:.2f}x  (goal: p99 <= 2.5x)")
    print(
        f"sequential sales/s {out['sales_per_s_sequential']:.0f}; group commit burst {out['burst_records_per_s']:.0f} "
        "records/s"
    )


if __name__ == "__main__":
    main()
