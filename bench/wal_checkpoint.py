"""What the journal's checkpoint interval costs a sale: bare sales with the WAL copied back every
64 pages (the default) against every 32 (the earlier default), alternating in one run.

A checkpoint copies every page the WAL holds back into the database file. The pages a sale
touches every time (the counters, the day's totals, the tails of the events and the
transactions) are copied once per checkpoint, so a longer interval copies each of them less
often. Both intervals stay inside the WAL a fresh terminal already has on disk (about 400 KiB
after ``init``), so the footprint is the same.

    python bench/wal_checkpoint.py [--sales 3000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def bare_sales_with(pages: int, sales: int) -> float:
    """Milliseconds per bare sale (see ``sale_floor.py``) with a checkpoint every ``pages`` pages."""
    from sale_floor import bare_loop
    from tillvault.store import journal

    original = journal.Journal.__init__

    def with_interval(self: journal.Journal, *args: Any, **kw: Any) -> None:
        kw["autocheckpoint_pages"] = pages
        original(self, *args, **kw)

    journal.Journal.__init__ = with_interval  # type: ignore[method-assign]
    try:
        return bare_loop(sales)
    finally:
        journal.Journal.__init__ = original  # type: ignore[method-assign]


def main() -> None:
    """Alternate the two intervals; print their medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs: dict[int, list[float]] = {64: [], 32: []}
    for _ in range(args.runs):
        for pages in runs:
            runs[pages].append(bare_sales_with(pages, args.sales))
    now, before = statistics.median(runs[64]), statistics.median(runs[32])
    out = {
        "sale_ms_every_64_pages": round(now, 3),
        "sale_ms_every_32_pages": round(before, 3),
        "speedup": round(before / now, 2),
        "runs": {str(k): [round(x, 3) for x in v] for k, v in runs.items()},
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"checkpoint every 64 pages: {now:.3f} ms a sale (median of {out['runs']['64']})")
    print(f"checkpoint every 32 pages: {before:.3f} ms a sale (median of {out['runs']['32']})")
    print(f"64 pages is {out['speedup']:.2f}x the sales per second of 32")


if __name__ == "__main__":
    main()
