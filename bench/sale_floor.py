"""The floor under the demo's speed: a bare loop of sales, beside the simulation's cost a request.

A bare sale = the real terminal and the reference host (in a thread, as the demo runs it), both in
a RAM folder, an idempotency key on each sale as the simulator sends; no settlement, no refunds, no
simulator bookkeeping. The comparison is the demo's own scenario (its first ``--days`` days, no
naive store) in the same run, so the ratio says how much of a request is the sale itself.

    python bench/sale_floor.py [--sales 6000] [--days 2] [--runs 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path


def bare_loop(sales: int) -> float:
    """Milliseconds per sale of ``sales`` sales after a warm-up of 300."""
    from tillvault.domain.cards import luhn_check_digit
    from tillvault.sim.hostlink import ThreadHost
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR
    from tillvault.terminal.terminal import Terminal

    ram = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    base = Path(tempfile.mkdtemp(prefix="tv-floor-", dir=ram))
    old_ring = os.environ.get("TILLVAULT_KEYRING")
    os.environ["TILLVAULT_KEYRING"] = str(base / "keyring")
    host = ThreadHost(base / "host", date.today, secret=b"sale-floor-bench-secret-0123456789", seed=1)
    try:
        t = Terminal.init(
            base / "t", terminal_id="TVFLOOR1", merchant_qr=DEMO_MERCHANT_QR, host=host.address, capacity="64MiB"
        )
        pans = [p + luhn_check_digit(p) for p in (f"62284800{i:07d}" for i in range(500))]
        for i in range(300):
            t.sale(100 + i, pans[i % 500], "3012")
        began = time.perf_counter()
        for i in range(sales):
            r = t.sale(100 + i, pans[i % 500], "3012", idem_key=f"floor-{i}")
            assert r.status == "approved", r.reason
        elapsed = time.perf_counter() - began
        t.close()
        return 1000 * elapsed / sales
    finally:
        host.stop()
        if old_ring is None:
            os.environ.pop("TILLVAULT_KEYRING", None)
        else:
            os.environ["TILLVAULT_KEYRING"] = old_ring
        shutil.rmtree(base, ignore_errors=True)


def simulation(days: int) -> float:
    """Milliseconds per request of the demo's scenario, first ``days`` days, no naive store."""
    from tillvault.demo import DEMO_SCENARIO
    from tillvault.sim.simulate import Outage, Simulation

    # The demo's surge on day 1 and its outage on day 2, where the run has those days.
    outages = (Outage(day=2, start_hour=6.0, hours=24.0),) if days > 2 else ()
    sc = replace(DEMO_SCENARIO, days=days, surge_days=(1,) if days > 1 else (), baseline=False, outages=outages)
    sim = Simulation(sc)
    began = time.perf_counter()
    sim.run()
    return 1000 * (time.perf_counter() - began) / sim.requests_done


def main() -> None:
    """Alternate the two, print their medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=6000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    floor, sim = [], []
    for _ in range(args.runs):
        floor.append(bare_loop(args.sales))
        sim.append(simulation(args.days))
    out = {
        "bare_sale_ms": round(statistics.median(floor), 3),
        "simulation_request_ms": round(statistics.median(sim), 3),
        "sale_share_of_a_request": round(statistics.median(floor) / statistics.median(sim), 2),
        "demo_floor_seconds_for_80000_requests": round(statistics.median(floor) * 80, 1),
        "runs": {"bare": [round(x, 3) for x in floor], "simulation": [round(x, 3) for x in sim]},
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"bare sale:            {out['bare_sale_ms']:.3f} ms (median of {floor})")
    print(f"simulation, request:  {out['simulation_request_ms']:.3f} ms (median of {sim})")
    print(
        f"the sale is {out['sale_share_of_a_request']:.0%} of a request; 80,000 bare sales need "
        f"{out['demo_floor_seconds_for_80000_requests']:.0f} s"
    )


if __name__ == "__main__":
    main()
