"""The back office's ingestion: health reports stored per second with pooled connections, against
a new connection per report (as before the pool), in the same run.

Each round stores ``--reports`` health reports (a fleet of 200 terminals, one report each and
then again, so half are new and half are stored once more as a retry would) through
``FleetStore.ingest`` on the local PostgreSQL, in a schema of its own dropped at the end; the
rounds alternate between the pooled store and the same store opening a connection per report.

    python bench/backoffice_ingest.py [--dsn postgresql://postgres@127.0.0.1:5432/test] [--reports 1000]
        [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tillvault.backoffice.store import FleetStore


class OneConnectionPerReport(FleetStore):
    """The store as it was: every request opens its own connection and closes it."""

    @contextlib.contextmanager
    def connect(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A new connection, committed and closed at the end of the block."""
        with psycopg.connect(self.dsn, row_factory=dict_row, connect_timeout=5) as conn:
            yield conn


def report(n: int, at: datetime) -> dict[str, Any]:
    """Terminal ``n``'s health report at ``at``."""
    return {
        "terminal_id": f"TVB{n % 200:05d}",
        "merchant": "BENCH SHOP",
        "capacity_bytes": 64 << 20,
        "used_bytes": 20 << 20,
        "free_bytes": 44 << 20,
        "reserve_bytes": 4 << 20,
        "sales_possible": 9000,
        "pressure": "normal",
        "runway_days": 31.5,
        "open_batch_count": 120,
        "outbox_pending": 0,
        "pending_intents": 0,
        "reported_at": (at + timedelta(seconds=n // 200)).isoformat(),
        "business_date": at.date().isoformat(),
        "alerts": [],
    }


def one_round(store: FleetStore, reports: int, at: datetime) -> float:
    """Reports stored per second for ``reports`` reports (half of them retries)."""
    began = time.perf_counter()
    for n in range(reports):
        store.ingest(report(n % (reports // 2), at))
    return reports / (time.perf_counter() - began)


def main() -> None:
    """Alternate the two stores, print their medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    schema = f"tv_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{args.dsn}?options=-csearch_path%3D{schema}"
    rates: dict[str, list[float]] = {"pooled": [], "connection per report": []}
    try:
        pooled, fresh = FleetStore(dsn), OneConnectionPerReport(dsn)
        pooled.migrate()
        at = datetime(2026, 12, 1, 12, tzinfo=UTC)
        rounds = 0
        for _ in range(args.runs):
            for name, store in (("connection per report", fresh), ("pooled", pooled)):
                rounds += 1  # each round its own report times: as many new reports and retries in each
                rates[name].append(one_round(store, args.reports, at + timedelta(hours=rounds)))
        pooled.close()
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    medians = {name: statistics.median(r) for name, r in rates.items()}
    ratio = medians["pooled"] / medians["connection per report"]
    if args.json:
        print(json.dumps({"reports_per_second": rates, "medians": medians, "ratio": round(ratio, 2)}, indent=2))
        return
    for name, r in rates.items():
        print(f"{name:22s} reports/s: {', '.join(f'{x:,.0f}' for x in r)}  median {medians[name]:,.0f}")
    print(f"pooled is {ratio:.1f}x as fast ({args.reports} reports a round, half of them retries)")


if __name__ == "__main__":
    main()
