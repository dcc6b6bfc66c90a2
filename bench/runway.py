"""How long a 64 MiB store lasts at 2,000 transactions a day with the back office unreachable.

TillVault and the naive JSON store take the same generated workload (``WORKLOAD.md``: the
reference shop, weekly cycle, short host gaps; no surge, no long outage, no update download)
in the same run: :class:`tillvault.sim.simulate.Simulation` with the archive unreachable for
the whole run, so TillVault can seal settled batches but never offload them.

The run goes on until the naive store has filled (its first lost order) and one more day.
TillVault's runway is then **extrapolated**: the days simulated plus the space still free for
sales divided by its measured growth, closing to closing, over the last 7 days (after
settlement and sealing, so the hot tier's daily saw-tooth does not count). With ``--full`` the
run goes on until TillVault refuses a sale for space (hours of wall time) and nothing is
extrapolated. TillVault's own runway forecast at the end is printed beside.

    python bench/runway.py [--capacity 64MiB] [--per-day 2000] [--full] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime
from typing import Any

from tillvault.sim.simulate import Scenario, Simulation
from tillvault.sim.workload import SHOP_TZ
from tillvault.store.space import MIB

DAY_S = 86_400


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", default="64MiB")
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--max-days", type=int, default=2000)
    parser.add_argument("--full", action="store_true", help="run until TillVault itself is full")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scenario = Scenario(
        days=args.max_days,
        per_day=args.per_day,
        surge=1,
        capacity=args.capacity,
        archive_reachable=False,
        update_bytes=0,
    )
    state: dict[str, Any] = {"naive_full_day": None}

    def stop(sim: Simulation) -> bool:
        naive = sim.naive.figures if sim.naive else None
        if naive is not None and naive.full_at and state["naive_full_day"] is None:
            state["naive_full_day"] = sim.days_run
        if args.full:
            return sim.first_space_refusal is not None
        return state["naive_full_day"] is not None and sim.days_run >= state["naive_full_day"] + 1

    sim = Simulation(scenario, stop=stop)
    began = time.perf_counter()
    result = sim.run()
    wall = time.perf_counter() - began
    f = result.figures
    b = f["baseline"]
    start = datetime.fromisoformat(result.timeline["start"])

    def days_until(iso: str | None) -> float | None:
        if iso is None:
            return None
        return round((datetime.fromisoformat(iso).astimezone(SHOP_TZ) - start).total_seconds() / DAY_S, 2)

    naive_runway = days_until(b["full_at"])
    closing = f["closing_used_bytes"]
    weekly = [(closing[i] - closing[i - 7]) / 7 for i in range(7, len(closing))]
    rate = statistics.median(weekly[-7:]) if weekly else None
    final = f["final"]
    forecast = final["forecast"]
    free = final["available_for_sales_bytes"]
    if f["first_refusal_for_space_at"]:
        tv_runway = days_until(f["first_refusal_for_space_at"])
        method = "measured: TillVault refused its first sale for space"
    elif rate and rate > 0 and free is not None:
        tv_runway = round(f["days_simulated"] + free / rate, 1)
        method = (
            f"extrapolated: {f['days_simulated']} days simulated + {free:,} B still free for sales / "
            f"{rate:,.0f} B a day (closing-to-closing growth, median of the last 7 weekly averages)"
        )
    else:
        tv_runway, method = None, "not enough days to measure growth"
    out = {
        "capacity_mib": scenario.capacity_bytes() / MIB,
        "per_day": args.per_day,
        "days_simulated": f["days_simulated"],
        "wall_seconds": round(wall, 1),
        "naive": {
            "runway_days": naive_runway,
            "bytes_per_transaction": b["bytes_per_transaction"],
            "lost_after_full": b["lost"],
            "settlement_failures": b["settlement_failures"],
        },
        "tillvault": {
            "runway_days": tv_runway,
            "method": method,
            "bytes_per_transaction": f["bytes_per_transaction"],
            "growth_bytes_per_day": None if rate is None else round(rate),
            "free_for_sales_bytes_at_end": free,
            "used_bytes_at_end": final["used_bytes"],
            "own_forecast_runway_days": forecast.get("runway_days"),
            "own_forecast_bytes_per_day": forecast.get("bytes_per_day"),
            "lost": f["lost"],
            "settlement_failures": f["settlement_failures"],
            "refused_for_space": f["refused_for_space"],
        },
    }
    out["ratio"] = round(tv_runway / naive_runway, 1) if tv_runway and naive_runway else None
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['capacity_mib']:g} MiB, {args.per_day:,} sales a weekday, back office unreachable")
    print(f"  naive JSON store   runway {naive_runway} days ({b['bytes_per_transaction']} B/transaction)")
    print(f"  TillVault          runway {tv_runway} days ({f['bytes_per_transaction']} B/transaction at rest)")
    print(f"                     {method}")
    print(f"                     its own forecast at the end: {forecast.get('runway_days')} days")
    print(f"  ratio {out['ratio']}× (goal ≥ 10×); {f['days_simulated']} days simulated in {wall:.0f} s")


if __name__ == "__main__":
    main()
