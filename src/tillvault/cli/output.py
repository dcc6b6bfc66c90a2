"""Printing helpers shared by every CLI command: JSON or rich, and one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from tillvault.errors import TillVaultError

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (UTF-8, non-ASCII kept readable)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(reason: str, *, as_json: bool, code: int = 1, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report an error as one line (stderr) or as JSON (stdout) and exit with ``code``."""
    if as_json:
        emit_json({"ok": False, "reason": reason, **(extra or {})})
    else:
        err_console.print(f"[bold red]error:[/] {reason}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn: Callable[[], T], *, as_json: bool) -> T:
    """Run ``fn``; turn a ``TillVaultError`` into a one-line reason and its exit code."""
    try:
        return fn()
    except TillVaultError as exc:
        fail(str(exc), as_json=as_json, code=exc.exit_code, extra={"error": type(exc).__name__})
