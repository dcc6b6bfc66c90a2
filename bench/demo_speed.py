"""The demo's speed: milliseconds per request on the demo's own scenario, this tree against another.

One run = the first ``--days`` days of ``tillvault demo``'s scenario (2,000 sales a weekday, a
×10 promotion on day 1, a one-day network outage from 06:00 on day 2, the ageing device and
the flaky archive), without the naive store, through the real terminal, host and archive.
With ``--against SRC`` (another checkout's ``src`` folder, e.g. from ``git worktree add
/tmp/old <commit>``), runs alternate between that tree and this one in separate processes,
so both see the same machine; the figures printed are the medians and their ratio, and the
script checks that both trees produced the same sales figures. With ``--against-any-core``
the other side is this tree with the simulation free to use any CPU (``--any-core``): what
keeping it on one core (``tillvault.sim.cores``) gains.

    python bench/demo_speed.py [--days 4] [--runs 2] [--against /tmp/old/src | --against-any-core] [--json]
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
from tillvault.sim.simulate import Outage, Scenario, Simulation
days = int(sys.argv[1])
pin = {"pin_core": sys.argv[2] == "one"} if "pin_core" in Scenario.__dataclass_fields__ else {}
sc = replace(DEMO_SCENARIO, days=days, surge_days=(1,) if days > 1 else (), baseline=False,
             outages=tuple(Outage(day=2, start_hour=6.0, hours=24.0) for _ in [0] if days > 2), **pin)
sim = Simulation(sc)
began = time.perf_counter()
f = sim.run().figures
wall = time.perf_counter() - began
keys = ("sales_attempted", "approved", "declined", "offline_approved", "lost", "settlement_failures", "settlements")
print(json.dumps({"wall_s": wall, "requests": sim.requests_done, "figures": {k: f[k] for k in keys}}))
"""


def run_tree(src: Path, days: int, cores: str = "one") -> dict:
    """One run of the scenario with ``src`` as the package source; its wall time and figures.

    ``cores`` is ``"one"`` (the default: the simulation kept on one CPU) or ``"any"``.
    """
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(days), cores], env=env, check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["ms_per_request"] = 1000 * result["wall_s"] / result["requests"]
    return result


def main() -> None:
    """Parse arguments, run, print the figures (and the ratio against ``--against``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    other = parser.add_mutually_exclusive_group()
    other.add_argument("--against", type=Path, help="another tree's src folder to compare with")
    other.add_argument("--against-any-core", action="store_true", help="compare with this tree free to use any CPU")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sides: dict[str, tuple[Path, str]] = {"this": (SRC, "one")}
    if args.against:
        sides["against"] = (args.against.resolve(), "one")
    elif args.against_any_core:
        sides["against"] = (SRC, "any")
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(args.runs):
        for name, (src, cores) in reversed(sides.items()):  # the other side first: neither always runs warm
            runs[name].append(run_tree(src, args.days, cores))
    medians = {name: statistics.median(r["ms_per_request"] for r in rs) for name, rs in runs.items()}
    out = {"days": args.days, "runs": runs, "median_ms_per_request": medians}
    if len(sides) > 1:
        figures = {json.dumps(r["figures"], sort_keys=True) for rs in runs.values() for r in rs}
        out["same_figures"] = len(figures) == 1
        out["speed_up"] = round(medians["against"] / medians["this"], 2)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for name, rs in runs.items():
        each = ", ".join(f"{r['ms_per_request']:.2f}" for r in rs)
        print(f"{name:8s} ms per request: {each}  median {medians[name]:.3f}  ({rs[0]['requests']} requests a run)")
    if len(sides) > 1:
        what = "one core" if args.against_any_core else "this tree"
        print(f"{what} is {out['speed_up']}x as fast; same sales figures in every run: {out['same_figures']}")


if __name__ == "__main__":
    main()
