"""``tillvault simulate``: a scenario through the real terminal, host and archive, beside the naive store."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tillvault.cli.output import console, emit_json, fail, guarded

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@contextlib.contextmanager
def progress_bar(out: Console, total: int, *, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar over simulated requests; yields the callback for :class:`Simulation`."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("requests · {task.fields[rate]}/s · day {task.fields[day]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("simulating", total=total, rate="-", day="-")

        def update(p: Any) -> None:
            rate = f"{p.requests_done / p.elapsed_s:,.0f}" if p.elapsed_s > 0 else "-"
            done = p.phase == "audit"
            bar.update(
                task,
                completed=p.requests_done if done else min(p.requests_done, total),
                total=p.requests_done if done else max(total, p.requests_done),
                rate=rate,
                day=f"{p.day}/{p.days}",
                description="auditing" if p.phase == "audit" else "simulating",
            )

        yield update


def side_by_side(figures: dict[str, Any], title: str) -> Table:
    """The comparison table: TillVault against the naive store."""
    from tillvault.sim.report import comparison_rows

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("TillVault", justify="right", style="bold blue")
    table.add_column("naive JSON store", justify="right", style="bold red")

    def cell(value: Any, unit: str) -> str:
        if value is None:
            return "-"
        if unit == "bytes":
            return f"{value / 1024 / 1024:.1f} MiB"
        if isinstance(value, float):
            return f"{value:,.1f}"
        return f"{value:,}"

    for label, tv, naive, unit in comparison_rows(figures):
        table.add_row(label, cell(tv, unit), cell(naive, unit))
    other = sum(figures.get("refused_other", {}).values())
    if other:
        table.add_row("refused for other reasons (card, limits, a full batch that cannot settle)", f"{other:,}", "-")
    return table


def invariant_problems(figures: dict[str, Any]) -> list[str]:
    """TillVault's promises that a run broke (empty when all held)."""
    problems = []
    if figures["lost"]:
        problems.append(f"{figures['lost']} approved transaction(s) lost")
    if figures["settlement_failures"]:
        problems.append(f"{figures['settlement_failures']} settlement(s) failed")
    if not figures["refusals_before_authorization"]:
        problems.append("a refusal happened after authorization")
    if not figures["totals_reconcile"]:
        problems.append("terminal and host totals differ")
    return problems


def register(app: typer.Typer) -> None:
    """Attach ``simulate``."""

    @app.command("simulate")
    def simulate(
        days: Annotated[int, typer.Option("--days", min=1, help="Days to simulate.")] = 30,
        per_day: Annotated[int, typer.Option("--per-day", min=1, help="Sales a weekday (weekends 1.3×).")] = 2000,
        surge: Annotated[float, typer.Option("--surge", help="Volume factor of surge days (1: no surge).")] = 10.0,
        surge_day: Annotated[
            list[int] | None, typer.Option("--surge-day", help="A surge day (0-based; repeat). Default: a third in.")
        ] = None,
        capacity: Annotated[str, typer.Option("--capacity", help="Store capacity (quota), e.g. 24MiB.")] = "24MiB",
        outage: Annotated[
            list[str] | None,
            typer.Option("--outage", help="Network and archive down: DAY[@HH[:MM]][+DURATION], e.g. 20@06:00+1d."),
        ] = None,
        settlement_outage: Annotated[
            list[str] | None,
            typer.Option("--settlement-outage", help="The host refuses settlements (91) in this window; same form."),
        ] = None,
        device_b_fails_on: Annotated[
            int | None,
            typer.Option(
                "--device-b-fails-on", help="Day device B is pulled out (at noon; needs the two-device feature)."
            ),
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Seed (default: the reference workload's).")] = None,
        ageing: Annotated[
            float, typer.Option("--ageing", min=0.0, max=0.9, help="Share of capacity lost by the last day.")
        ] = 0.0,
        archive_errors: Annotated[
            float,
            typer.Option("--archive-errors", min=0.0, max=1.0, help="Chance an offload fails on the last day."),
        ] = 0.0,
        media_errors: Annotated[
            float,
            typer.Option(
                "--media-errors",
                min=0.0,
                max=1.0,
                help="Chance on the last day that the ageing device grows a bad sector under a sealed segment.",
            ),
        ] = 0.0,
        batch_max: Annotated[
            int, typer.Option("--batch-max", min=10, help="The terminal settles a batch of this many at once.")
        ] = 3000,
        host_mode: Annotated[
            str, typer.Option("--host-mode", help="thread (faster) or process (the host in its own process).")
        ] = "thread",
        baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="Run the naive store too.")] = True,
        one_core: Annotated[
            bool,
            typer.Option(
                "--one-core/--any-core",
                help="Keep the simulation on one CPU, the idlest (faster: no cross-core wake-ups).",
            ),
        ] = True,
        report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report here.")] = None,
        png: Annotated[Path | None, typer.Option("--png", help="Export the charts as PNG into this folder.")] = None,
        workdir: Annotated[
            Path | None, typer.Option("--workdir", help="Keep the run's data here (default: a RAM temp folder).")
        ] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Months of a busy shop through the real terminal, host and archive, against the naive store."""
        from tillvault.sim.simulate import Outage, Scenario
        from tillvault.sim.workload import REFERENCE_SEED
        from tillvault.store.space import parse_size

        try:
            outages = tuple(Outage.parse(o) for o in outage or [])
            settlement_outages = tuple(Outage.parse(o) for o in settlement_outage or [])
            parse_size(capacity)
        except ValueError as exc:
            fail(str(exc), as_json=as_json, code=2)
        if host_mode not in ("thread", "process"):
            fail("--host-mode must be thread or process", as_json=as_json, code=2)
        scenario = guarded(
            lambda: Scenario(
                days=days,
                per_day=per_day,
                surge=surge,
                surge_days=tuple(surge_day) if surge_day else None,
                capacity=capacity,
                outages=outages,
                settlement_outages=settlement_outages,
                device_b_fails_on=device_b_fails_on,
                seed=REFERENCE_SEED if seed is None else seed,
                ageing=ageing,
                archive_error_rate=archive_errors,
                media_error_rate=media_errors,
                batch_max=batch_max,
                host_mode=host_mode,
                baseline=baseline,
                pin_core=one_core,
            ),
            as_json=as_json,
        )
        if report is not None:
            guarded(lambda: check_output_path(report, "--report"), as_json=as_json)
        if png is not None:
            guarded(lambda: check_output_path(png, "--png", folder=True), as_json=as_json)
        figures = guarded(
            lambda: run_and_report(scenario, report=report, png=png, workdir=workdir, quiet=as_json), as_json=as_json
        )
        if as_json:
            emit_json(figures)
        else:
            console.print(side_by_side(figures, f"{days} days, {figures['sales_attempted']:,} sales attempted"))
            if figures.get("report"):
                console.print(f"Report: {figures['report']}")
            for note in figures.get("notes", []):
                console.print(f"note: {note}", style="dim")
        problems = invariant_problems(figures)
        if problems:
            fail("; ".join(problems), as_json=False, code=1)


def check_output_path(path: Path, option: str, *, folder: bool = False) -> None:
    """Make sure ``path`` (a file, or with ``folder`` a folder) can be written before a run that
    takes minutes, creating missing parent folders as the writer would.

    :raises InvalidInput: naming the option and why (a folder where a file goes, a parent that
        is a file, no permission).
    """
    from tillvault.errors import InvalidInput

    target = path if folder else path.parent
    try:
        if not folder and path.is_dir():
            raise InvalidInput(f"{option} {path} is a folder; give a file name (e.g. {path / 'report.html'})")
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".tillvault-write-check-"):
            pass
    except OSError as exc:
        blocker = next((p for p in (target, *target.parents) if p.exists()), None)
        why = f"{blocker} is a file, not a folder" if blocker and not blocker.is_dir() else exc.strerror or str(exc)
        raise InvalidInput(f"{option} {path} cannot be written: {why}") from None


def run_and_report(
    scenario: Any,
    *,
    report: Path | None,
    png: Path | None,
    workdir: Path | None,
    quiet: bool,
    out: Console | None = None,
) -> dict[str, Any]:
    """Run ``scenario`` with a progress bar (unless ``quiet``), write the report; returns the figures.

    :raises TillVaultError: the simulation could not run (its host would not start, say).
    """
    from tillvault.sim.report import export_png, write_report
    from tillvault.sim.simulate import Simulation

    out = out or Console(stderr=True, markup=False)
    sim = Simulation(scenario, workdir=workdir)
    with progress_bar(out, sim.requests_expected, enabled=not quiet) as update:
        sim.progress = update
        result = sim.run()
    figures = result.figures
    if report is not None:
        figures["report"] = str(write_report(report, figures, result.timeline).resolve())
    if png is not None:
        try:
            figures["png"] = [str(p) for p in export_png(figures, result.timeline, png)]
        except RuntimeError as exc:
            figures.setdefault("notes", []).append(f"PNG export skipped: {exc}")
    return figures
