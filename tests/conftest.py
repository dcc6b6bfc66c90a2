"""Shared fixtures: an isolated key ring per test, a fresh terminal, a real small tmpfs."""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


def mount_tmpfs(mnt: Path, size: str = "8m") -> None:
    """Mount a real tmpfs at ``mnt``; skip the test with the reason if that is impossible."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    mnt.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {proc.stderr.strip()}")


def umount(mnt: Path) -> None:
    """Unmount (lazily: open files stay usable by whoever holds them)."""
    subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


@pytest.fixture
def tmpfs_factory(tmp_path: Path) -> Iterator[Callable[[str], Tmpfs]]:
    """Mount as many small real tmpfs as a test needs; all unmounted at teardown."""
    mounted: list[Path] = []

    def make(size: str = "8m") -> Tmpfs:
        mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        mount_tmpfs(mnt, size)
        mounted.append(mnt)
        return Tmpfs(mnt, size)

    yield make
    for mnt in reversed(mounted):
        umount(mnt)


@pytest.fixture
def tmpfs(tmpfs_factory: Callable[[str], Tmpfs]) -> Tmpfs:
    """One small real tmpfs (8 MiB)."""
    return tmpfs_factory("8m")


class LoopExt4:
    """A real ext4 filesystem on a loop device, which can be made to fail with EIO."""

    EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
    NOLOGFLUSH = 2

    def __init__(self, image: Path, path: Path) -> None:
        self.image = image
        self.path = path
        self.loop = ""

    def mount(self) -> None:
        """Attach the image and mount it at ``path``."""
        self.loop = subprocess.run(
            ["losetup", "-f", "--show", str(self.image)], capture_output=True, text=True, check=True
        ).stdout.strip()
        subprocess.run(["mount", self.loop, str(self.path)], check=True, capture_output=True)

    def shutdown(self) -> None:
        """Make the filesystem fail: every later read and write returns EIO (as xfstests do)."""
        import fcntl
        import struct

        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, self.EXT4_IOC_SHUTDOWN, struct.pack("I", self.NOLOGFLUSH))
        finally:
            os.close(fd)

    def unmount(self) -> None:
        """Unmount (lazily) and detach the loop device."""
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], check=False, capture_output=True)
            self.loop = ""


@pytest.fixture
def ext4_factory(tmp_path: Path) -> Iterator[Callable[[str], LoopExt4]]:
    """Loop-mounted ext4 filesystems (root, losetup and mkfs.ext4 needed; skipped with the reason otherwise)."""
    made: list[LoopExt4] = []
    if _can_mount() or not shutil.which("losetup") or not shutil.which("mkfs.ext4"):
        pytest.skip("loop-mounted ext4 needs root, losetup and mkfs.ext4")

    def make(size: str = "32M") -> LoopExt4:
        image = tmp_path / f"disk-{uuid.uuid4().hex[:6]}.img"
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        proc = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"mkfs.ext4 failed: {proc.stderr.strip()}")
        mnt = tmp_path / f"ext4-{uuid.uuid4().hex[:6]}"
        mnt.mkdir()
        fs = LoopExt4(image, mnt)
        try:
            fs.mount()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot loop-mount ext4 here: {exc.stderr}")
        made.append(fs)
        return fs

    yield make
    for fs in reversed(made):
        fs.unmount()


BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def load_bench() -> Callable[[str], ModuleType]:
    """Load a script of ``bench/`` as a module: the suite runs the short version of its figure."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "host.crt", tmp_path / "host.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
