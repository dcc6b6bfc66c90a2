"""Software updates (S2.4, S12): signed by the vendor, incremental, admitted before a byte is
written, and never left half-installed; on real files and a real small filesystem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tillvault.errors import ConfigError, InvalidInput, StorageFull
from tillvault.terminal.terminal import Terminal
from tillvault.terminal.updates import keygen, make_update

VISA = "4111111111111111"
EXPIRY = "3012"


@pytest.fixture
def vendor(tmp_path: Path) -> dict[str, object]:
    """A vendor key, two package versions differing in a few bytes, and their updates."""
    pem, public = keygen()
    v1 = os.urandom(400_000)
    v2 = bytearray(v1)
    v2[1000:1018] = b"a fix in 2.0.1 ...."[:18]
    v2 += b"a new screen" * 100
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "app-2.0.0.pkg").write_bytes(v1)
    (pkg / "app-2.0.1.pkg").write_bytes(bytes(v2))
    out = tmp_path / "updates"
    full = make_update(pkg / "app-2.0.0.pkg", "2.0.0", pem, out)
    delta = make_update(pkg / "app-2.0.1.pkg", "2.0.1", pem, out, base=pkg / "app-2.0.0.pkg")
    return {"pem": pem, "public": public, "out": out, "full": full, "delta": delta, "v1": v1, "v2": bytes(v2)}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_a_full_install_then_an_incremental_update_then_a_rollback(
    make_terminal: Callable[..., Terminal], vendor: dict
) -> None:  # type: ignore[type-arg]
    t = make_terminal()
    out: Path = vendor["out"]
    with pytest.raises(ConfigError, match="no update key is trusted"):
        t.updates.apply(out / "2.0.0.manifest.json")
    t.updates.trust(vendor["public"])
    assert t.updates.installed()["version"] is None
    first = t.updates.apply(out / "2.0.0.manifest.json")
    assert first == {"version": "2.0.0", "sha256": vendor["full"]["target_sha256"], "size": 400_000, "previous": None}
    # Only what changed travels: the patch is a small fraction of the package.
    assert vendor["delta"]["patch_size"] < vendor["delta"]["target_size"] // 50
    second = t.updates.apply(out / "2.0.1.manifest.json")
    assert second["version"] == "2.0.1" and second["previous"] == "2.0.0"
    packages = t.updates.folder / "packages"
    assert (packages / "2.0.1.pkg").read_bytes() == vendor["v2"]
    assert _files(packages) == ["2.0.0.pkg", "2.0.1.pkg"], "the previous package is kept for rollback, no more"
    assert t.updates.rollback()["version"] == "2.0.0"
    assert t.updates.installed()["sha256"] == vendor["full"]["target_sha256"]
    kinds = [e.kind for e in t.journal.events() if e.kind.startswith("update_")]
    assert kinds == ["update_installed", "update_installed", "update_rolled_back"]
    assert t.sale(1_000, VISA, EXPIRY).status == "approved"
    assert t.scrub()["ok"]


def test_forged_damaged_or_misplaced_updates_are_refused_and_change_nothing(
    make_terminal: Callable[..., Terminal], vendor: dict, tmp_path: Path
) -> None:  # type: ignore[type-arg]
    t = make_terminal()
    out: Path = vendor["out"]
    t.updates.trust(vendor["public"])
    with pytest.raises(InvalidInput, match="applies to another package, but the terminal has nothing installed"):
        t.updates.apply(out / "2.0.1.manifest.json")
    t.updates.apply(out / "2.0.0.manifest.json")
    before = t.updates.installed()
    # A manifest edited after signing (a bigger package, say) fails its signature.
    forged = json.loads((out / "2.0.1.manifest.json").read_text())
    forged["target_size"] += 1
    (tmp_path / "forged.manifest.json").write_text(json.dumps(forged))
    with pytest.raises(InvalidInput, match="not signed by the trusted vendor key"):
        t.updates.apply(tmp_path / "forged.manifest.json", out / "2.0.1.patch")
    # Signed by someone else's key.
    other_pem, _ = keygen()
    make_update(
        tmp_path / "pkg" / "app-2.0.1.pkg",
        "2.0.1",
        other_pem,
        tmp_path / "other",
        base=tmp_path / "pkg" / "app-2.0.0.pkg",
    )
    with pytest.raises(InvalidInput, match="not signed by the trusted vendor key"):
        t.updates.apply(tmp_path / "other" / "2.0.1.manifest.json")
    # A damaged patch.
    patch = bytearray((out / "2.0.1.patch").read_bytes())
    patch[len(patch) // 2] ^= 0xFF
    (tmp_path / "bad.patch").write_bytes(bytes(patch))
    with pytest.raises(InvalidInput, match="not the one the manifest names"):
        t.updates.apply(out / "2.0.1.manifest.json", tmp_path / "bad.patch")
    with pytest.raises(InvalidInput, match="unreadable"):
        t.updates.apply(tmp_path / "missing.manifest.json")
    assert t.updates.installed() == before
    assert _files(t.updates.folder) == ["2.0.0.pkg", "installed.json"], "no partial file left"


def test_an_update_that_would_eat_into_what_sales_need_is_refused_before_a_byte_is_written(
    tmpfs_factory, host, vendor: dict, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def, type-arg]
    from tillvault.terminal.defaults import DEMO_MERCHANT_QR

    fs = tmpfs_factory("24m")
    t = Terminal.init(fs.path / "data", terminal_id="TVUPDT01", merchant_qr=DEMO_MERCHANT_QR, host=host.address)
    try:
        t.updates.trust(vendor["public"])
        spare = t.updates.status()["spare_bytes"]
        assert 0 < spare < 24 * 1024 * 1024
        big = tmp_path / "big.pkg"
        big.write_bytes(os.urandom(spare + 4096))
        make_update(big, "3.0.0", vendor["pem"], tmp_path / "big")
        with pytest.raises(StorageFull, match=r"only .* B can be spared") as refused:
            t.updates.apply(tmp_path / "big" / "3.0.0.manifest.json")
        assert refused.value.needed_bytes == spare + 4096
        assert not (t.updates.folder / "packages").exists() or _files(t.updates.folder / "packages") == []
        assert t.updates.installed()["version"] is None
        assert t.sale(1_000, VISA, EXPIRY).status == "approved", "sales go on"
        assert t.updates.apply(vendor["out"] / "2.0.0.manifest.json")["version"] == "2.0.0", "one that fits goes in"
        # Another program fills the disk: the next update is refused, the installed one stays.
        # Free pages inside journal.db well above the reserve (room for sales, after large batches) ...
        t.journal.grow_free_pages(t.journal.free_page_bytes() + 9 * 1024 * 1024)
        fs.fill()
        # ... are no room for a package, which is a file.
        assert t.updates.status()["spare_bytes"] <= t.space.status(exact=True).fs_free_bytes
        with pytest.raises(StorageFull):
            t.updates.apply(vendor["out"] / "2.0.1.manifest.json")
        assert t.updates.installed()["version"] == "2.0.0"
        assert _files(t.updates.folder / "packages") == ["2.0.0.pkg"]
    finally:
        t.close()


def test_the_command_line_round_trip(tmp_path: Path, make_terminal: Callable[..., Terminal]) -> None:
    t = make_terminal()
    data = t.data_dir
    t.close()
    cli = [sys.executable, "-c", "from tillvault.cli.main import main; main()"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)

    key = tmp_path / "vendor.pem"
    made = run("update", "keygen", "--out", str(key), "--json")
    assert made.returncode == 0 and key.stat().st_mode & 0o777 == 0o600
    public = json.loads(made.stdout)["public_key"]
    assert run("update", "keygen", "--out", str(key)).returncode == 2, "never overwrites a key"
    pkg = tmp_path / "app.pkg"
    pkg.write_bytes(os.urandom(50_000))
    make = ["update", "make", str(pkg), "--version", "1.0", "--signing-key", str(key)]
    assert run(*make, "--out", str(tmp_path / "u")).returncode == 0
    manifest = str(tmp_path / "u" / "1.0.manifest.json")
    refused = run("--data", str(data), "update", "apply", manifest)
    assert refused.returncode == 2 and "no update key is trusted" in refused.stderr + refused.stdout
    assert run("--data", str(data), "update", "trust", public).returncode == 0
    applied = run("--data", str(data), "update", "apply", manifest, "--json")
    assert applied.returncode == 0 and json.loads(applied.stdout)["version"] == "1.0"
    status = json.loads(run("--data", str(data), "update", "status", "--json").stdout)
    assert status["version"] == "1.0" and status["trusted_key"] == public


def test_a_package_write_that_was_killed_leaves_no_space_taken_for_good(
    make_terminal: Callable[..., Terminal],
    vendor: dict,  # type: ignore[type-arg]
) -> None:
    t = make_terminal()
    t.updates.trust(vendor["public"])
    packages = t.updates.folder / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    leftover = packages / ".2.0.0.pkg.k1ll3d.tmp"  # what a SIGKILL during the write leaves
    leftover.write_bytes(b"x" * 300_000)
    assert t.updates.apply(vendor["out"] / "2.0.0.manifest.json")["version"] == "2.0.0"
    assert not leftover.exists() and _files(packages) == ["2.0.0.pkg"]
    leftover.write_bytes(b"x" * 300_000)
    report = t.cleanup()  # the ladder's cache step removes it too
    assert not leftover.exists() and "update leftovers" in " ".join(report.actions)


def test_a_disk_that_fills_before_the_install_is_recorded_leaves_no_package_behind(
    make_terminal: Callable[..., Terminal], vendor: dict, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[type-arg]
    import errno

    import tillvault.terminal.updates as updates

    t = make_terminal()
    t.updates.trust(vendor["public"])
    t.updates.apply(vendor["out"] / "2.0.0.manifest.json")
    real = updates.write_atomic

    def full_at_the_record(path: Path, data: bytes, **kw: object) -> None:
        if Path(path).name == "installed.json":  # the package went in; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(updates, "write_atomic", full_at_the_record)
    with pytest.raises(StorageFull, match=r"nothing was installed, 2\.0\.0 stays in use"):
        t.updates.apply(vendor["out"] / "2.0.1.manifest.json")
    monkeypatch.setattr(updates, "write_atomic", real)
    packages = t.updates.folder / "packages"
    assert _files(packages) == ["2.0.0.pkg"] and t.updates.installed()["version"] == "2.0.0"
    # A package a killed install left (written, never recorded) is removed by the cleanup step.
    (packages / "2.0.1.pkg").write_bytes(vendor["v2"])
    assert t.updates.remove_leftovers() == len(vendor["v2"])
    assert _files(packages) == ["2.0.0.pkg"]
    assert t.updates.apply(vendor["out"] / "2.0.1.manifest.json")["version"] == "2.0.1"
