"""The demo's speed: milliseconds per request on the demo's own scenario, this tree against another.

One run = the first ``--days`` days of ``tillvault demo``'s scenario (2,000 sales a weekday, a
×10 promotion on day 1, a one-day network outage from 06:00 on day 2, the ageing device and
the flaky archive), without the naive store, through the real terminal, host and archive.
With ``--against SRC`` (another checkout's ``src`` folder, e.g. from ``git worktree add
/tmp/old <commit>``), runs alternate between that tree and this one in separate processes,
so both see the same machine; the figures printed are the medians and their ratio, and the
script checks that both trees produced the same sales figures.

    python bench/demo_speed.py [--days 4] [--runs 2] [--against /tmp/old/src] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

#: Run in a child process with the tree under test first on the path.
CHILD = """
import json, sys, time
from dataclasses import replace
from tillvault.demo import DEMO_SCENARIO
from tillvault.sim.simulate import Outage, Simulation
days = int(sys.argv[1])
sc = replace(DEMO_SCENARIO, days=days, surge_days=(1,), baseline=False,
             outages=(Outage(day=2, start_hour=6.0, hours=24.0),))
sim = Simulation(sc)
began = time.perf_counter()
f = sim.run().figures
wall = time.perf_counter() - began
keys = ("sales_attempted", "approved", "declined", "offline_approved", "lost", "settlement_failures", "settlements")
print(json.dumps({"wall_s": wall, "requests": sim.requests_done, "figures": {k: f[k] for k in keys}}))
"""


def run_tree(src: Path, days: int) -> dict:
    """One run of the scenario with ``src`` as the package source; its wall time and figures."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(days)], env=env, check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["ms_per_request"] = 1000 * result["wall_s"] / result["requests"]
    return result


def main() -> None:
    """Parse arguments, run, print the figures (and the ratio against ``--against``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--against", type=Path, help="another tree's src folder to compare with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = {"this": SRC} | ({"against": args.against.resolve()} if args.against else {})
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, src in reversed(trees.items()):  # the other tree first: neither always runs warm
            runs[name].append(run_tree(src, args.days))
    medians = {name: statistics.median(r["ms_per_request"] for r in rs) for name, rs in runs.items()}
    out = {"days": args.days, "runs": runs, "median_ms_per_request": medians}
    if args.against:
        figures = {json.dumps(r["figures"], sort_keys=True) for rs in runs.values() for r in rs}
        out["same_figures"] = len(figures) == 1
        out["speed_up"] = round(medians["against"] / medians["this"], 2)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for name, rs in runs.items():
        each = ", ".join(f"{r['ms_per_request']:.2f}" for r in rs)
        print(f"{name:8s} ms per request: {each}  median {medians[name]:.3f}  ({rs[0]['requests']} requests a run)")
    if args.against:
        print(f"this tree is {out['speed_up']}x as fast; same sales figures in every run: {out['same_figures']}")


if __name__ == "__main__":
    main()
