"""The ``tillvault`` console script: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
        Path | None, typer.Option("--workdir", help="Folder for the demo's data (default: a new temp folder).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """The main job: a small store filled by sales; admission refuses before the reserve; settlement still works."""
    from tillvault.cli.output import console, emit_json
    from tillvault.demo import run_demo

    figures = run_demo(workdir, console=None if as_json else console)
    if as_json:
        emit_json(figures)
    if not figures["scrub_ok"]:
        raise typer.Exit(1)


def _register() -> None:
    """Attach every command group; each module exposes ``register(app)``."""
    import importlib

    for name in ("terminal", "cards_qr", "host"):
        try:
            module = importlib.import_module(f"tillvault.cli.{name}")
        except ModuleNotFoundError as exc:  # a group not written yet
            if exc.name != f"tillvault.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    """Entry point of the console script."""
    app()
