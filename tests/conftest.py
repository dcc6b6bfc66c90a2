"""Shared fixtures: an isolated key ring per test, a fresh terminal, a real small tmpfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tillvault.terminal.defaults import DEMO_MERCHANT_QR
from tillvault.terminal.terminal import Terminal


@pytest.fixture(autouse=True)
def _isolated_keyring(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own key ring folder, outside its data folders."""
    ring = tmp_path_factory.mktemp("keyring")
    monkeypatch.setenv("TILLVAULT_KEYRING", str(ring))
    return ring


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """A freshly initialised terminal (host address unused unless a test starts one)."""
    t = Terminal.init(tmp_path / "data", terminal_id="TV000001", merchant_qr=DEMO_MERCHANT_QR, host="127.0.0.1:9")
    yield t
    t.close()


def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    return None


class Tmpfs:
    """A real tmpfs of a given size, mounted for one test."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size

    def fill(self, name: str = "filler.bin") -> Path:
        """Fill the filesystem to 100% with another file; returns its path."""
        target = self.path / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                block = b"\xa5" * size
                while True:
                    try:
                        os.write(fd, block)
                    except OSError:
                        break
        finally:
            os.close(fd)
        st = os.statvfs(self.path)
        assert st.f_bavail == 0, "filesystem should be full"
        return target


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """Mount a small real tmpfs (8 MiB); skip with the reason where mounting is impossible."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {proc.stderr.strip()}")
    try:
        yield Tmpfs(mnt, "8m")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
