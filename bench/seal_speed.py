"""Seal throughput and read-back latency of the warm tier vs JSON, on the reference workload.

Usage: ``python bench/seal_speed.py [--runs 7] [--lookups 300] [--seed N] [--json]``

* seal: transactions per second sealing one reference day (batch 1) and one 10,000-record
  batch, median of ``--runs`` runs (each run writes, fsyncs and renames a real file);
* lookup: milliseconds to fetch one transaction by invoice from the sealed day segment with
  :func:`tillvault.store.segments.find` (open, header, unwrap the key, decrypt, decompress and
  decode one block), median and p99 over ``--lookups`` random invoices; beside it the same
  lookup in the same records kept as JSON lines (read the file, parse, pick the invoice), both
  parsing every line and stopping at the match;
* full read: transactions per second reading the whole segment vs parsing the whole JSON file.

The page cache is warm in every case (files were just written): these are CPU costs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tillvault.sim import REFERENCE_SEED, reference_records
from tillvault.store.keys import KeyRing
from tillvault.store.segments import find, read_segment, seal_segment


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    s = sorted(values)
    return s[max(0, -(-99 * len(s) // 100) - 1)]


def json_find_full(path: Path, invoice: int) -> dict[str, Any] | None:
    """Naive: parse every line of the JSON file, then pick the record."""
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return next((r for r in records if r["invoice"] == invoice), None)


def json_find_scan(path: Path, invoice: int) -> dict[str, Any] | None:
    """Less naive: parse line by line and stop at the match."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record["invoice"] == invoice:
                return record
    return None


def measure(runs: int, lookups: int, seed: int) -> dict[str, Any]:
    records = reference_records(10_000, seed)
    day = [r for r in records if r["batch"] == 1]
    out: dict[str, Any] = {"seed": seed, "runs": runs, "lookups": lookups, "day_records": len(day)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ring = KeyRing.create(folder / "ring" / "keyring.json")
        for label, batch in (("day", day), ("batch_10k", records)):
            times = []
            for run in range(runs):
                seconds, _ = timed(
                    lambda b=batch, r=run, lb=label: seal_segment(
                        b, folder / f"{lb}-{r}.tvseg", ring, batch=b[0]["batch"], terminal_id="TV000001"
                    )
                )
                times.append(seconds)
            out[f"seal_{label}_tx_per_s"] = len(batch) / statistics.median(times)
            out[f"seal_{label}_ms"] = statistics.median(times) * 1000
        segment = folder / "day-0.tvseg"
        as_json = folder / "day.jsonl"
        as_json.write_text("".join(json.dumps(r) + "\n" for r in day), "utf-8")
        rng = random.Random(seed)
        wanted = [day[rng.randrange(len(day))] for _ in range(lookups)]
        results: dict[str, list[float]] = {"segment": [], "json_full": [], "json_scan": []}
        for rec in wanted:
            for name, fn in (
                ("segment", lambda i=rec["invoice"]: find(segment, ring, invoice=i)),
                ("json_full", lambda i=rec["invoice"]: json_find_full(as_json, i)),
                ("json_scan", lambda i=rec["invoice"]: json_find_scan(as_json, i)),
            ):
                seconds, found = timed(fn)
                assert found == rec, f"{name} returned the wrong record"
                results[name].append(seconds * 1000)
        for name, values in results.items():
            out[f"lookup_{name}_ms_median"] = statistics.median(values)
            out[f"lookup_{name}_ms_p99"] = p99(values)
        full_seg = [timed(lambda: read_segment(segment, ring))[0] for _ in range(runs)]
        full_json = [
            timed(lambda: [json.loads(x) for x in as_json.read_text("utf-8").splitlines()])[0] for _ in range(runs)
        ]
        out["read_all_segment_tx_per_s"] = len(day) / statistics.median(full_seg)
        out["read_all_json_tx_per_s"] = len(day) / statistics.median(full_json)
    return out


def summary(r: dict[str, Any]) -> str:
    seg, full, scan = (r[f"lookup_{n}_ms_median"] for n in ("segment", "json_full", "json_scan"))
    return "\n".join(
        [
            f"Reference workload (seed {r['seed']}): day batch of {r['day_records']:,} records; 10,000-record batch.",
            f"seal (medians of {r['runs']} runs, zstd-19 + AES-256-GCM + fsync):",
            f"  day batch   {r['seal_day_tx_per_s']:10,.0f} tx/s  ({r['seal_day_ms']:.0f} ms per batch)",
            f"  10k batch   {r['seal_batch_10k_tx_per_s']:10,.0f} tx/s  ({r['seal_batch_10k_ms']:.0f} ms per batch)",
            f"lookup of one transaction by invoice ({r['lookups']} random invoices), ms:",
            f"  {'':28s} {'median':>8s} {'p99':>8s} {'segment / this':>15s}",
            f"  {'sealed segment (find)':28s} {seg:8.2f} {r['lookup_segment_ms_p99']:8.2f} {1.0:15.2f}",
            f"  {'JSON lines, parse all':28s} {full:8.2f} {r['lookup_json_full_ms_p99']:8.2f} {seg / full:15.2f}",
            f"  {'JSON lines, stop at match':28s} {scan:8.2f} {r['lookup_json_scan_ms_p99']:8.2f} {seg / scan:15.2f}",
            f"read a whole day: segment {r['read_all_segment_tx_per_s']:,.0f} tx/s, "
            f"JSON {r['read_all_json_tx_per_s']:,.0f} tx/s "
            f"(ratio {r['read_all_segment_tx_per_s'] / r['read_all_json_tx_per_s']:.2f})",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per timing (median taken); at least 5")
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--seed", type=int, default=REFERENCE_SEED)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON, then the summary")
    args = parser.parse_args(argv)
    result = measure(max(5, args.runs), args.lookups, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    print(summary(result), file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
