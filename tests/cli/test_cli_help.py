"""Every command has help text, and the public API is exactly what ``__all__`` says."""

from __future__ import annotations

from typing import Any

import typer.main
from typer.testing import CliRunner

import tillvault
from tillvault.cli.main import app


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, cmd)]
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            out.extend(_walk(sub, (*path, name)))
    return out


def test_every_command_and_option_has_help_text() -> None:
    root = typer.main.get_command(app)
    missing = []
    commands = _walk(root)
    assert len(commands) > 8
    for path, cmd in commands:
        if not (cmd.help or cmd.short_help):
            missing.append(" ".join(path) or "tillvault")
        for param in cmd.params:
            if type(param).__name__.endswith("Option") and not getattr(param, "hidden", False) and not param.help:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []


def test_help_runs_for_every_command() -> None:
    runner = CliRunner()
    for path, _ in _walk(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_contract_commands_exist() -> None:
    names = {" ".join(p) for p, _ in _walk(typer.main.get_command(app))}
    for required in ("init", "status", "scrub", "tx list", "card check", "qr parse", "qr make", "host serve"):
        assert required in names


def test_public_api_is_exactly_all() -> None:
    public = {n for n in dir(tillvault) if not n.startswith("_")} - {
        "cli",
        "domain",
        "store",
        "terminal",
        "errors",
        "host",
        "sim",
        "backoffice",
    }
    assert public == set(tillvault.__all__) - {"__version__"}
    for name in tillvault.__all__:
        assert hasattr(tillvault, name)
