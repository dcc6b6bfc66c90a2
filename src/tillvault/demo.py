"""``tillvault demo``: a month of a busy shop, TillVault against the naive store, on embedded defaults.

Thirty days of the reference shop (``WORKLOAD.md``): 2,000 sales on a weekday, 1.3× at the
weekend, a promotion day at ×10 (day 10), a one-day network outage (from 06:00 on day 20:
host and archive unreachable), an update download halfway, an ageing device losing 10% of
its capacity and an archive link growing flaky. Every sale goes through the real terminal
(card checks, limits, space admission, durable intent, ISO 8583 to the reference host,
durable outcome) on a 24 MiB store; the naive browser-POS store takes the same requests on
the same capacity. The demo ends with the side-by-side table and the path of the HTML report.

Nothing to set up: the data lives in a RAM folder (``/dev/shm`` where it exists) and is
removed at the end unless ``workdir`` is given.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from tillvault.sim.simulate import Outage, Scenario

#: The demo's scenario (the README quotes it).
DEMO_SCENARIO = Scenario(
    days=30,
    per_day=2000,
    surge=10.0,
    surge_days=(10,),
    capacity="24MiB",
    outages=(Outage(day=20, start_hour=6.0, hours=24.0),),
    ageing=0.10,
    archive_error_rate=0.20,
)


def default_report_path() -> Path:
    """Where the demo writes its report unless told otherwise."""
    return Path(tempfile.gettempdir()) / "tillvault-demo-report.html"


def run_demo(
    workdir: Path | None = None,
    *,
    console: Console | None = None,
    report: Path | None = None,
    days: int | None = None,
    per_day: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Run the demo scenario; print progress and the table on ``console``; return the figures.

    ``days``, ``per_day`` and ``seed`` override the embedded scenario (a shorter look).
    """
    from dataclasses import replace

    from tillvault.cli.sim import check_output_path, run_and_report, side_by_side

    scenario = DEMO_SCENARIO
    changes: dict[str, Any] = {}
    if days is not None:
        changes["days"] = days
        changes["surge_days"] = (min(10, days // 3),)
        changes["outages"] = (Outage(day=min(20, max(0, days * 2 // 3)), start_hour=6.0, hours=24.0),)
    if per_day is not None:
        changes["per_day"] = per_day
    if seed is not None:
        changes["seed"] = seed
    scenario = replace(scenario, **changes)
    quiet = console is None
    out = console or Console(quiet=True)
    report = report or default_report_path()
    check_output_path(report, "--report")
    if not quiet:
        surge_day = scenario.surge_indexes()[0] if scenario.surge_indexes() else "-"
        out.print(
            Text.assemble(
                ("TillVault demo", "bold"),
                f": {scenario.days} days of a busy shop, {scenario.per_day:,} sales a weekday, "
                f"a ×{scenario.surge:g} promotion on day {surge_day}, "
                f"a network outage ({'; '.join(o.label() for o in scenario.outages)}), "
                f"{scenario.capacity} of storage. TillVault and the naive browser-POS store take the same requests.",
            )
        )
    figures = run_and_report(scenario, report=report, png=None, workdir=workdir, quiet=quiet, out=out)
    if not quiet:
        timing = figures["timing"]
        out.print(side_by_side(figures, f"{scenario.days} days, {figures['sales_attempted']:,} sales attempted"))
        b = figures.get("baseline") or {}
        if b.get("first_lost_at"):
            out.print(
                f"The naive store filled on {b['first_lost_at'][:10]} and then lost {b['lost']:,} paid orders "
                f"(¥{b['lost_amount'] / 100:,.2f} charged to cards with no record)."
            )
        pending = (
            " The last batch waits for the network to settle (nothing is lost meanwhile)."
            if figures["settlement_pending_at_end"]
            else ""
        )
        out.print(
            f"TillVault: {figures['lost']} lost, {figures['settlement_failures']} settlements failed, "
            f"{figures['settlements']} batches settled and reconciled with the host "
            f"({'all balanced' if figures['totals_reconcile'] else 'DIFFERENCES'}).{pending}"
        )
        out.print(
            f"Ran in {timing['wall_seconds']:.0f} s ({timing['requests_per_second']:,.0f} requests/s, every one "
            "through the real pipeline)."
        )
        out.print(Text.assemble("Report: ", (str(figures["report"]), "bold")))
    return figures
