"""The cold tier's archive sinks: where sealed segments go before they may leave the terminal.

A sink *acknowledges* a segment only once it is durable there and its digest verified by
reading it back (DESIGN.md invariant 5). Only an acknowledged segment may be evicted
locally. Failure modes: the sink is full (ENOSPC) or gone (unmounted, unreachable): the
put fails with :class:`ArchiveUnavailable`, any partial temp file is removed, and the local
copy stays; a process killed mid-put leaves at most a ``.tmp-`` file in the sink, which is
never mistaken for an acknowledged segment and is cleaned up on the next put.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Protocol

from tillvault.errors import StorageError
from tillvault.store.fsutil import fsync_dir


class ArchiveUnavailable(StorageError):
    """The archive sink cannot take or give a segment now (full, gone, or corrupt copy)."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ArchiveSink(Protocol):
    """What the tiers need of an archive."""

    name: str

    def put(self, path: Path, digest: str) -> None:
        """Store the file durably and verify it; return only when it is acknowledged."""

    def has(self, name: str, digest: str) -> bool:
        """True when the sink holds ``name`` with that digest."""

    def fetch(self, name: str, dest: Path, digest: str) -> Path:
        """Copy ``name`` back to ``dest`` (verified)."""


#: A file every archive folder holds once it took a segment.
MARKER = ".tillvault-archive"


class DirectorySink:
    """A directory as the archive (a mounted NAS or USB disk: the seed's third-party backup)."""

    def __init__(self, root: Path | str, *, terminal_dev: int | None = None) -> None:
        """``terminal_dev``: the device number of the terminal's own data folder. Given (as for
        the configured archive), a folder on that same device without the archive's marker is
        refused: it is the empty mount point of an unplugged NAS or USB disk, and a copy put there
        would be the terminal's own disk holding the only copy."""
        self.root = Path(root)
        self.name = f"dir:{self.root}"
        self.terminal_dev = terminal_dev

    def _check_exists(self) -> None:
        if not self.root.is_dir():
            raise ArchiveUnavailable(f"archive {self.root} is not available (not mounted or removed)")

    def _check(self) -> None:
        """The configured archive is there: its folder exists and holds the marker written when it
        was configured. A folder without it is not that archive, on whatever disk it lies (the
        empty mount point of an unplugged NAS or USB disk): nothing is sent there or evicted on its
        strength, and what it lacks is not reported as lost."""
        self._check_exists()
        if self.terminal_dev is not None and not (self.root / MARKER).exists():
            if any(self.root.glob("seg-*.tvs")):
                self.mark()  # an archive used before markers existed: its segments say what it is
                return
            try:
                same_disk = os.stat(self.root).st_dev == self.terminal_dev
            except OSError as exc:
                raise ArchiveUnavailable(f"archive {self.root} is not available: {exc}") from exc
            where = " is on the terminal's own disk and" if same_disk else ""
            raise ArchiveUnavailable(
                f"archive {self.root}{where} holds no archive marker: the NAS or USB disk is not mounted there "
                f"(if it was wiped, run tillvault archive set {self.root} to use it again)"
            )

    def reachable(self) -> bool:
        """True when the archive can take and give segments now."""
        try:
            self._check()
        except ArchiveUnavailable:
            return False
        return True

    def mark(self) -> None:
        """Write the archive's marker (at set-up), so the folder is told apart from an empty mount point."""
        self._check_exists()
        if self._write_marker():
            fsync_dir(self.root)

    def _write_marker(self) -> bool:
        """Write the marker if it is missing; True when it was written (the folder needs an fsync)."""
        marker = self.root / MARKER
        if marker.exists():
            return False
        marker.write_text("TillVault archive of sealed segments\n", "utf-8")
        return True

    def put(self, path: Path, digest: str) -> None:
        """Copy, fsync, rename, fsync the folder, then read back and compare the digest.

        :raises ArchiveUnavailable: sink missing or full, or the copy does not verify.
        """
        self._check()  # the marker too: nothing is sent to an empty mount point, so nothing evicted for it
        target = self.root / path.name
        if target.exists() and file_sha256(target) == digest:
            return
        for stale in self.root.glob(".tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        tmp = self.root / f".tmp-{path.name}"
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, target)
            fsync_dir(self.root)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ArchiveUnavailable(f"archive {self.root} could not take {path.name}: {exc.strerror or exc}") from exc
        if file_sha256(target) != digest:
            with contextlib.suppress(OSError):
                target.unlink()
            raise ArchiveUnavailable(f"archive {self.root}: the copy of {path.name} does not verify")

    def has(self, name: str, digest: str) -> bool:
        """True when a verified copy is there."""
        if not self.reachable():
            return False
        target = self.root / name
        try:
            return target.is_file() and file_sha256(target) == digest
        except OSError:
            return False

    def fetch(self, name: str, dest: Path, digest: str) -> Path:
        """Copy back and verify.

        :raises ArchiveUnavailable: missing, unreadable, or the digest does not match.
        """
        self._check()
        src = self.root / name
        tmp = dest.with_name(f".fetch-{dest.name}")
        try:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ArchiveUnavailable(f"cannot fetch {name} from archive {self.root}: {exc}") from exc
        if file_sha256(tmp) != digest:
            tmp.unlink()
            raise ArchiveUnavailable(f"archive copy of {name} is corrupt (digest mismatch)")
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return dest
