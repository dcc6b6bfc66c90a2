"""Cache areas with budgets and an eviction order: the "intelligent cache" of S9.

Caches are the first things the pressure ladder frees, before any transaction needs the
space: temporary files, finished update downloads, receipt images, logs. Each area has a
folder under the data folder, a byte budget, a maximum age and an order; cleaning evicts
oldest-first, in area order. Files touched in the last minute are never evicted, nor files
being written (``*.part``) unless nothing has written to them for :data:`ABANDONED_PART_S`
(a download killed or given up: it would otherwise hold its space for ever).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

IN_USE_S = 60
#: A ``.part`` file nothing has written to for this long is an abandoned download.
ABANDONED_PART_S = 3600


@dataclass(frozen=True)
class CacheArea:
    """One cache area. ``budget_bytes`` 0 means "keep nothing once cleaning runs"."""

    name: str
    folder: str
    budget_bytes: int
    max_age_days: float
    order: int


DEFAULT_AREAS = (
    CacheArea("temp", "cache/tmp", 0, 1, 0),
    CacheArea("updates", "cache/updates", 0, 0, 1),
    CacheArea("receipts", "cache/receipts", 1024 * 1024, 30, 2),
    CacheArea("logs", "cache/logs", 512 * 1024, 14, 3),
)


class CacheManager:
    """Measures and cleans the cache areas of one data folder."""

    def __init__(self, root: Path, areas: tuple[CacheArea, ...] = DEFAULT_AREAS, *, clock: Any = time.time) -> None:
        self.root = Path(root)
        self.areas = tuple(sorted(areas, key=lambda a: a.order))
        self.clock = clock

    def path(self, name: str) -> Path:
        """The folder of area ``name`` (created)."""
        area = next(a for a in self.areas if a.name == name)
        folder = self.root / area.folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _files(self, area: CacheArea) -> list[tuple[float, int, Path]]:
        folder = self.root / area.folder
        out = []
        if folder.is_dir():
            for p in folder.rglob("*"):
                with contextlib.suppress(FileNotFoundError):
                    if p.is_file():
                        st = p.stat()
                        out.append((st.st_mtime, st.st_size, p))
        return sorted(out)

    def usage(self) -> dict[str, int]:
        """Bytes per area."""
        return {a.name: sum(size for _, size, _ in self._files(a)) for a in self.areas}

    def clean(self, *, aggressive: bool = False) -> dict[str, int]:
        """Evict what is over budget or too old (``aggressive``: everything not in use). Bytes freed per area."""
        now = self.clock()
        freed: dict[str, int] = {}
        for area in self.areas:
            files = self._files(area)
            total = sum(size for _, size, _ in files)
            got = 0
            for mtime, size, path in files:  # oldest first
                if now - mtime < (ABANDONED_PART_S if path.suffix == ".part" else IN_USE_S):
                    continue
                too_old = now - mtime > area.max_age_days * 86400
                if aggressive or too_old or total > area.budget_bytes:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        total -= size
                        got += size
            freed[area.name] = got
        return freed

    def to_dict(self) -> list[dict[str, Any]]:
        """The areas and their use, JSON-ready."""
        use = self.usage()
        return [{**asdict(a), "used_bytes": use[a.name]} for a in self.areas]
