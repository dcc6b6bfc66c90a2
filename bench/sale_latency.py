"""Latency of a whole sale against the local reference host, beside the bare journal commit.

A sale = card checks, limits, space admission, durable intent, ISO 8583 round trip to the
host (a separate process on 127.0.0.1), durable outcome, receipt. The comparison is the
journal alone writing the same intent + outcome (bench/commit_latency.py's record), in the
same run, interleaved. The ratio is the pipeline's overhead.

    python bench/sale_latency.py [--sales 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from commit_latency import percentile, sale_record_once
from tillvault.domain.cards import luhn_check_digit
from tillvault.host.process import start_host_process
from tillvault.store.journal import Journal
from tillvault.store.records import Records
from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.terminal import Terminal


def run(n: int, work: Path) -> dict:
    """Measure ``n`` sales and ``n`` bare journal records, interleaved in rounds of 50."""
    os.environ.setdefault("TILLVAULT_HOST_SECRET", "bench-secret")
    with start_host_process(work / "host") as host:
        t = Terminal.init(
            work / "terminal",
            terminal_id="TV000001",
            merchant_qr=DEMO_MERCHANT_QR,
            host=host.address,
            keyring_dir=work / "keyring",
            limits={"max_per_card_per_day": 10**12, "max_per_terminal_per_day": 10**13, "currency": "CNY"},
        )
        journal = Journal(work / "bare" / "journal.db").open()
        journal.grow_free_pages(4 * 1024 * 1024)
        bare = Records(journal, "TV000002")
        pans = []
        for i in range(200):
            body = f"62284800{i:07d}"
            pans.append(body + luhn_check_digit(body))
        sale_s: list[float] = []
        bare_s: list[float] = []
        statuses: dict[str, int] = {}
        try:
            for i in range(20):  # warm-up: connection, caches
                t.sale(100, pans[i], "3012")
                sale_record_once(bare, i)
            done = 0
            while done < n:
                for i in range(50):
                    k = done + i
                    t0 = time.perf_counter()
                    r = t.sale(100 + k % 5000, pans[k % len(pans)], "3012")
                    sale_s.append(time.perf_counter() - t0)
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    bare_s.append(sale_record_once(bare, k))
                done += 50
        finally:
            journal.close()
            t.close()
    out = {
        "sales": len(sale_s),
        "statuses": statuses,
        "sale_p50_ms": statistics.median(sale_s) * 1000,
        "sale_p99_ms": percentile(sale_s, 99) * 1000,
        "journal_p50_ms": statistics.median(bare_s) * 1000,
        "journal_p99_ms": percentile(bare_s, 99) * 1000,
        "sales_per_s": len(sale_s) / sum(sale_s),
    }
    out["p50_ratio"] = out["sale_p50_ms"] / out["journal_p50_ms"]
    out["p99_ratio"] = out["sale_p99_ms"] / out["journal_p99_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tv-sale-"))
    try:
        out = run(args.sales, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"whole sale via the host:          p50 {out['sale_p50_ms']:.3f} ms  p99 {out['sale_p99_ms']:.3f} ms  "
        f"({out['sales_per_s']:.0f} sales/s; {out['statuses']})"
    )
    print(f"journal intent+outcome alone:     p50 {out['journal_p50_ms']:.3f} ms  p99 {out['journal_p99_ms']:.3f} ms")
    print(f"pipeline overhead (sale/journal): p50 {out['p50_ratio']:.2f}x  p99 {out['p99_ratio']:.2f}x")


if __name__ == "__main__":
    main()
