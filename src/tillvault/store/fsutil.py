"""Durable file writes: the one place that knows how to replace a file atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def is_within(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved: links and ``..`` followed)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def fsync_dir(folder: Path | str) -> None:
    """fsync a folder, so a rename or a new file in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_files(paths: Iterable[Path]) -> int:
    """Unlink each path that can be (a file gone or busy is skipped); returns the bytes freed."""
    freed = 0
    for path in paths:
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            path.unlink()
            freed += size
    return freed


def write_atomic(path: Path | str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably: temp file, fsync, rename, fsync folder.

    A crash leaves either the old file or the new one, never a mix; the temp file is removed
    on failure.

    :raises OSError: as the filesystem reports it (ENOSPC, EIO...); nothing was replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
