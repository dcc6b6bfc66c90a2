"""Printing helpers shared by every CLI command: JSON or rich, and one-line errors."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from tillvault.domain.cards import redact_pans
from tillvault.errors import TillVaultError

# No console markup: what is printed carries merchants' names, QR payloads, operator ids and
# reasons quoting input, and "[/]" or "[link=...]" in them must print as written, not style or
# crash the output. Styled words are built with ``styled``.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)

T = TypeVar("T")


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text from plain parts and ``(text, style)`` pairs; nothing in it is read as markup."""
    return Text.assemble(*parts)


def redacted(obj: Any) -> Any:
    """``obj`` with every card number in its text masked (:func:`redact_pans`): a sale's result
    may quote what was typed, and a PAN typed into the wrong field must not come back whole.
    (Not for everything printed: a QR code's merchant account may be a scheme's merchant PAN.)"""
    if isinstance(obj, str):
        return redact_pans(obj)
    if isinstance(obj, dict):
        return {k: redacted(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redacted(v) for v in obj]
    return obj


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (UTF-8, non-ASCII kept readable)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fail(reason: str, *, as_json: bool, code: int = 1, extra: dict[str, Any] | None = None) -> NoReturn:
    """Report an error as one line (stderr) or as JSON (stdout) and exit with ``code``."""
    reason = redact_pans(reason)
    if as_json:
        emit_json({"ok": False, "reason": reason, **(extra or {})})
    else:
        err_console.print(styled(("error:", "bold red"), f" {reason}"), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn: Callable[[], T], *, as_json: bool) -> T:
    """Run ``fn``; turn a ``TillVaultError`` into a one-line reason and its exit code, and an
    operating-system error (a read-only or failing disk, no space) into one too (exit 1)."""
    try:
        return fn()
    except TillVaultError as exc:
        fail(str(exc), as_json=as_json, code=exc.exit_code, extra={"error": type(exc).__name__})
    except OSError as exc:
        fail(os_reason(exc), as_json=as_json, code=1, extra={"error": type(exc).__name__})


def os_reason(exc: OSError) -> str:
    """One line for an operating-system error, naming the file and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    what = exc.strerror or str(exc)
    advice = {
        errno.EROFS: "the storage device went read-only (flash wearing out or failing): replace it",
        errno.EIO: "the storage device reported an I/O error: check or replace it",
        errno.ENOSPC: "the disk is full: free space (tillvault cleanup) and try again",
        errno.EDQUOT: "the disk quota is used up: free space and try again",
        errno.EACCES: "permission denied: run as the terminal's user",
        errno.ENOENT: "a file or folder is missing: check the path",
    }.get(exc.errno or 0, "nothing was changed by the failed step")
    return f"{what}{where}: {advice}"
