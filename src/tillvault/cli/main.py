"""The ``tillvault`` console script: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

if __name__ == "__main__":
    # ``python -m tillvault.cli.main``: run the package's own module. Registering the commands
    # here too would import this file a second time through them (a circular import).
    from tillvault.cli.main import main as _package_main

    _package_main()
    sys.exit(0)

app = typer.Typer(
    name="tillvault",
    help="TillVault: a transaction vault and settlement engine for POS terminals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class State:
    """Options given before the command (``--data``)."""

    data: Path = Path("tillvault-data")


state = State()


@app.callback()
def _global(
    data: Annotated[
        Path,
        typer.Option("--data", envvar="TILLVAULT_DATA", help="The terminal's data folder."),
    ] = Path("tillvault-data"),
) -> None:
    """TillVault: every sale reserves its space before the card is charged."""
    state.data = data


@app.command("demo")
def demo(
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Keep the demo's data here (default: a RAM temp folder, removed).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Where to write the HTML report (default: in the temp folder).")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", min=3, help="Fewer days for a quicker look (default 30).")
    ] = None,
    per_day: Annotated[int | None, typer.Option("--per-day", min=1, help="Sales a weekday (default 2,000).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """The main job: 30 days of a busy shop (surge, outage) through TillVault and the naive store, side by side."""
    from tillvault.cli.output import console, emit_json, fail, guarded
    from tillvault.cli.sim import invariant_problems
    from tillvault.demo import run_demo

    figures = guarded(
        lambda: run_demo(workdir, console=None if as_json else console, report=report, days=days, per_day=per_day),
        as_json=as_json,
    )
    if as_json:
        emit_json(figures)
    problems = invariant_problems(figures)
    if problems:
        fail("; ".join(problems), as_json=False, code=1)


def _register() -> None:
    """Attach every command group; each module exposes ``register(app)``."""
    import importlib

    for name in ("terminal", "cards_qr", "host", "sim", "fleet"):
        try:
            module = importlib.import_module(f"tillvault.cli.{name}")
        except ModuleNotFoundError as exc:  # a group not written yet
            if exc.name != f"tillvault.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    """Entry point of the console script.

    A command line that cannot be parsed (a missing argument, an unknown option, a bad value)
    gets the usage line and a one-line reason on stderr, with any card number in it masked; with
    ``--json`` it is reported as JSON on stdout too (``{"ok": false, "reason", "error"}``, exit 2).
    """
    import sys

    from tillvault.cli.output import emit_json
    from tillvault.domain.cards import redact_pans

    try:  # newer typer carries its own copy of click, and raises that copy's exceptions
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - typer on the installed click
        from click import exceptions as click  # type: ignore[no-redef]

    as_json = "--json" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except click.ClickException as exc:
        reason = redact_pans(exc.format_message())
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            print(ctx.get_usage(), file=sys.stderr)
            print(f"Try '{ctx.command_path} --help' for help.", file=sys.stderr)
        print(f"Error: {reason}", file=sys.stderr)
        if as_json:
            kind = "UsageError" if isinstance(exc, click.UsageError) else type(exc).__name__
            emit_json({"ok": False, "reason": reason, "error": kind})
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        if as_json:
            emit_json({"ok": False, "reason": "aborted", "error": "Abort"})
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
