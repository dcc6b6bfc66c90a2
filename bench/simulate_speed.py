"""Simulated days per second: the whole pipeline (terminal, host, archive) beside the naive store alone.

One run = ``--days`` days of the reference shop (``WORKLOAD.md``, ``--per-day`` sales a
weekday, no surge, no outage) through :class:`tillvault.sim.simulate.Simulation`: every sale
goes through card checks, limits, space admission, the durable intent, an ISO 8583 round
trip to the reference host and the durable outcome; the day closes with settlement, sealing
and the pressure ladder. The comparison, in the same run: the naive browser-POS store
(:mod:`tillvault.sim.baseline`) taking the same generated requests on its own (generation
included), as fast as it can. Figures are medians of ``--runs`` runs, for the host in a
thread and in its own process.

    python bench/simulate_speed.py [--days 5] [--per-day 2000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tillvault.sim.baseline import NaiveStore
from tillvault.sim.simulate import Scenario, Simulation, ram_dir
from tillvault.sim.workload import bench_token, generate_day
from tillvault.store.space import MIB


def pipeline_run(scenario: Scenario) -> dict[str, float]:
    """One simulation; its wall time, days/s and requests/s."""
    began = time.perf_counter()
    result = Simulation(scenario).run()
    wall = time.perf_counter() - began
    f = result.figures
    assert f["lost"] == 0 and f["settlement_failures"] == 0 and f["totals_reconcile"]
    requests = f["sales_attempted"] + f["duplicates_absorbed"] + sum(f["refunds"].values()) + sum(f["voids"].values())
    return {"wall_s": wall, "days_per_s": scenario.days / wall, "requests_per_s": requests / wall}


def baseline_run(scenario: Scenario) -> dict[str, float]:
    """The naive store alone on the same generated requests (approved unless the workload declines)."""
    profile = scenario.profile()
    with tempfile.TemporaryDirectory(prefix="tillvault-naive-", dir=ram_dir()) as tmp:
        began = time.perf_counter()
        store = NaiveStore(Path(tmp), 1 << 40)
        n = 0
        for d in range(scenario.days):
            for it in generate_day(profile, d, scenario.start):
                n += 1
                store.record(
                    outcome="declined" if it.will_decline else ("offline_approved" if it.host_down else "approved"),
                    kind=it.kind,
                    when=it.time.isoformat(timespec="milliseconds"),
                    amount=it.amount_minor,
                    currency=it.currency,
                    masked_pan=it.pan[:6] + "******" + it.pan[-4:],
                    card_token=bench_token(it.pan),
                    brand=it.brand,
                    card_type=it.card_type,
                    entry_mode=it.entry_mode,
                    merchant_id=profile.merchant_id,
                    terminal_id=profile.terminal_id,
                    batch=d + 1,
                    operator_id="01",
                    customer_ref=None,
                    order_id=f"pos-{d}-{it.index}",
                    rrn=f"{400_000_000_000 + n:012d}",
                    auth_code=f"{n % 1_000_000:06d}",
                    response_code="00",
                )
            store.close_day(str(d), str(d))
        store.finish()
        wall = time.perf_counter() - began
    return {"wall_s": wall, "days_per_s": scenario.days / wall, "requests_per_s": n / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--capacity", default="64MiB")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Scenario(
        days=args.days, per_day=args.per_day, surge=1, capacity=args.capacity, update_bytes=0, baseline=False
    )
    rows: dict[str, list[dict[str, float]]] = {"thread": [], "process": [], "baseline": []}
    for _ in range(args.runs):  # interleaved, so drift hits all three alike
        rows["thread"].append(pipeline_run(replace(base, host_mode="thread")))
        rows["process"].append(pipeline_run(replace(base, host_mode="process")))
        rows["baseline"].append(baseline_run(base))
    out = {
        "machine": {
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "data": str(ram_dir() or tempfile.gettempdir()),
        },
        "scenario": {"days": args.days, "per_day": args.per_day, "capacity_mib": base.capacity_bytes() / MIB},
        "runs": rows,
        "median": {
            name: {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]} for name, runs in rows.items()
        },
    }
    med = out["median"]
    out["ratio_baseline_to_pipeline_days_per_s"] = round(med["baseline"]["days_per_s"] / med["thread"]["days_per_s"], 1)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.days} days × {args.per_day:,} sales a weekday, {args.runs} runs (medians)")
    for name, label in (
        ("thread", "TillVault pipeline, host in a thread"),
        ("process", "TillVault pipeline, host in its own process"),
        ("baseline", "naive JSON store alone"),
    ):
        m = med[name]
        rate = f"{m['days_per_s']:8.3f} days/s  {m['requests_per_s']:10,.0f} requests/s"
        print(f"  {label:<46} {rate}  {m['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
