"""Software updates that never exhaust storage (S2.4, S12): signed, incremental, admitted first.

An update is two files from the vendor (``tillvault update make``): a **manifest** signed with
the vendor's Ed25519 key, naming the version, the package it applies to (``base_sha256``; none
for a first, full install), and the package it makes (size, SHA-256); and a **patch**, a bsdiff
delta from that base to the new package, so only what changed travels and waits on the device.

Applying one (``tillvault update apply``):

1. the manifest's signature is checked against the vendor key the terminal trusts
   (``tillvault update trust``), and its base against the package installed;
2. **admission**: the new package must fit beside the installed one while leaving room for
   ``KEEP_SALES`` sales above the settlement reserve; finished downloads and other caches are
   cleaned first if that helps, and otherwise the update is refused, naming the bytes, before
   anything is written;
3. the patch is applied in memory and the result checked against the manifest's size and
   SHA-256, then written atomically (temp file, fsync, rename) under ``updates/packages/``;
4. ``updates/installed.json`` names the new package and the previous one (kept for
   ``tillvault update rollback``); older packages are removed; an ``update_installed`` event is
   journalled.

A failure at any step leaves the installed package as it was, and no partial file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tillvault.errors import ConfigError, InvalidInput, StorageFull
from tillvault.store.fsutil import remove_files, write_atomic
from tillvault.store.journal import SETTLEMENT, WriteContext

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

MANIFEST_FORMAT = "tillvault-update"
MANIFEST_VERSION = 1
#: Sales the store must still be able to take, above the settlement reserve, once an update is in.
KEEP_SALES = 2_000
UPDATES_DIR = "updates"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- the vendor's side ---------------------------------------------------------------------------
def keygen() -> tuple[bytes, str]:
    """A new vendor signing key: (private key PEM, public key hex for ``update trust``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pem, public.hex()


def make_update(
    target: Path, version: str, signing_key_pem: bytes, out_dir: Path, *, base: Path | None = None
) -> dict[str, Any]:
    """Write ``<version>.manifest.json`` and ``<version>.patch`` into ``out_dir``; returns the manifest.

    :raises InvalidInput: a bad version, an unreadable package, or not an Ed25519 private key.
    """
    import bsdiff4
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not version or any(c in version for c in "/\\\0") or version.startswith("."):
        raise InvalidInput(f"update version {version!r} cannot name a file")
    try:
        new = Path(target).read_bytes()
        old = Path(base).read_bytes() if base is not None else b""
    except OSError as exc:
        raise InvalidInput(f"cannot read the package: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(signing_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"the signing key is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput("the signing key must be an Ed25519 key (tillvault update keygen)")
    patch = bsdiff4.diff(old, new)
    body = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "update": version,
        "base_sha256": _sha256(old) if base is not None else None,
        "target_sha256": _sha256(new),
        "target_size": len(new),
        "patch_sha256": _sha256(patch),
        "patch_size": len(patch),
    }
    manifest = {**body, "signature": key.sign(_canonical(body)).hex()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / f"{version}.patch", patch)
    write_atomic(out_dir / f"{version}.manifest.json", json.dumps(manifest, indent=2).encode("ascii"))
    return manifest


# -- the terminal's side -------------------------------------------------------------------------
class Updates:
    """The terminal's installed software package and its updates."""

    def __init__(self, t: Terminal) -> None:
        self.t = t

    @property
    def folder(self) -> Path:
        """Where packages live (on the primary device: the space manager counts them)."""
        return self.t.space.root / UPDATES_DIR

    def installed(self) -> dict[str, Any]:
        """``{"version", "sha256", "size", "previous"}`` of the installed package (all None before the first)."""
        try:
            return dict(json.loads((self.folder / "installed.json").read_text("utf-8")))
        except FileNotFoundError:
            return {"version": None, "sha256": None, "size": None, "previous": None}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"the update record {self.folder / 'installed.json'} is unreadable: {exc}") from exc

    def trust(self, public_key_hex: str) -> None:
        """Trust the vendor key ``public_key_hex`` (32 bytes as hex) for updates from now on.

        :raises InvalidInput: not an Ed25519 public key.
        """
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        except ValueError as exc:
            raise InvalidInput(f"not an Ed25519 public key (64 hex digits): {exc}") from exc
        self.t.config.update_public_key = public_key_hex.lower()
        self.t.config.save(self.t.data_dir)

    def check_manifest(self, manifest_path: Path) -> dict[str, Any]:
        """The manifest, once its signature and base check out.

        :raises InvalidInput: unreadable, not signed by the trusted key, or for another base.
        :raises ConfigError: no vendor key trusted yet.
        """
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        key_hex = self.t.config.update_public_key
        if not key_hex:
            raise ConfigError("no update key is trusted yet: tillvault update trust <vendor public key>")
        try:
            manifest = json.loads(Path(manifest_path).read_text("utf-8"))
            body = {k: v for k, v in manifest.items() if k != "signature"}
            signature = bytes.fromhex(manifest["signature"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"update manifest {manifest_path} is unreadable: {exc}") from exc
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(signature, _canonical(body))
        except InvalidSignature:
            raise InvalidInput(
                f"update manifest {manifest_path} is not signed by the trusted vendor key: refused"
            ) from None
        if body.get("format") != MANIFEST_FORMAT or body.get("version") != MANIFEST_VERSION:
            raise InvalidInput(f"update manifest {manifest_path} has an unknown format")
        current = self.installed()
        if body["base_sha256"] != current["sha256"]:
            have = current["version"] or "nothing installed"
            want = "a first, full install" if body["base_sha256"] is None else "another package"
            raise InvalidInput(
                f"update {body['update']} applies to {want}, but the terminal has {have}: "
                "get the update made for the installed package"
            )
        return dict(body)

    def room(self, need: int) -> dict[str, Any]:
        """Whether ``need`` bytes can be spared now without touching what sales and settlement need."""
        st = self.t.space.status(exact=True)
        keep = KEEP_SALES * self.t.space.policy.sale_life_bytes
        # A package is a file: it needs the filesystem's free space, which the journal's free
        # pages (room for sales inside journal.db) are not.
        spare = max(0, min(st.available_for_sales_bytes, st.fs_free_bytes) - keep)
        return {"need_bytes": need, "spare_bytes": spare, "fits": need <= spare, "keep_sales": KEEP_SALES}

    def remove_leftovers(self) -> int:
        """Remove the temporary files of package writes that were killed (a SIGKILL leaves the
        half-written ``.VERSION.pkg.*.tmp``), and packages neither installed nor kept to roll back
        to (an install killed or refused after its package was written); returns the bytes freed."""
        freed = remove_files((self.folder / "packages").glob(".*.pkg.*.tmp"))
        try:
            current = self.installed()
        except ConfigError:
            return freed  # the record is unreadable: which package is in use is not known, keep them all
        wanted = {current.get("version"), current.get("previous"), current.get("rolled_back_from")} - {None}
        return freed + remove_files(
            p for p in (self.folder / "packages").glob("*.pkg") if not p.name.startswith(".") and p.stem not in wanted
        )

    def apply(self, manifest_path: Path, patch_path: Path | None = None) -> dict[str, Any]:
        """Apply a signed update (see the module's steps); returns what was installed.

        :raises InvalidInput: a bad manifest or patch (nothing changed).
        :raises StorageFull: the new package cannot fit beside what sales need (nothing written).
        """
        import bsdiff4

        body = self.check_manifest(manifest_path)
        version = str(body["update"])
        patch_path = Path(patch_path) if patch_path else Path(manifest_path).with_name(f"{version}.patch")
        try:
            patch = patch_path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read the update's patch {patch_path}: {exc}") from exc
        if len(patch) != body["patch_size"] or _sha256(patch) != body["patch_sha256"]:
            raise InvalidInput(f"patch {patch_path} is not the one the manifest names (damaged or another update)")
        need = int(body["target_size"])
        self.remove_leftovers()  # (the terminal's lock is held: no other write of a package is under way)
        room = self.room(need)
        if not room["fits"]:
            with contextlib.suppress(OSError):
                self.t.caches.clean()  # finished downloads, temp files, receipts and logs over budget
            room = self.room(need)
        if not room["fits"]:
            raise StorageFull(
                f"update {version} needs {need:,} B beside the installed package, but only "
                f"{room['spare_bytes']:,} B can be spared and still leave room for {KEEP_SALES:,} sales and "
                "the settlement reserve: settle and run tillvault cleanup, then try again",
                device=self.t.space.device,
                needed_bytes=need,
                available_bytes=room["spare_bytes"],
                message_zh="更新所需空间不足:请先结算并清理后再试",
            )
        current = self.installed()
        base = b""
        if current["version"] is not None:
            base = (self.folder / "packages" / f"{current['version']}.pkg").read_bytes()
            if _sha256(base) != current["sha256"]:
                raise InvalidInput("the installed package is damaged: reinstall it in full before updating")
        try:
            new = bsdiff4.patch(base, patch)
        except Exception as exc:  # the C extension raises ValueError, bz2 OSError on a bad stream
            raise InvalidInput(f"patch {patch_path} does not apply: {exc}") from exc
        if len(new) != need or _sha256(new) != body["target_sha256"]:
            raise InvalidInput(f"update {version} did not produce the package its manifest names: refused")
        packages = self.folder / "packages"
        packages.mkdir(parents=True, exist_ok=True)
        target = packages / f"{version}.pkg"
        try:
            write_atomic(target, new)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"the disk filled while writing update {version}: nothing was installed") from exc
            raise
        record = {"version": version, "sha256": body["target_sha256"], "size": need, "previous": current["version"]}
        try:
            self._switch(record, event="update_installed")
        except OSError as exc:
            # The record could not be written (the disk filled meanwhile): the package written is
            # not installed and must not stay, taking the space.
            if current["version"] != version:
                with contextlib.suppress(OSError):
                    target.unlink()
                self.t.space.forget_sizes()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(
                    f"the disk filled while installing update {version}: nothing was installed, "
                    f"{current['version'] or 'no package'} stays in use"
                ) from exc
            raise
        return record

    def rollback(self) -> dict[str, Any]:
        """Go back to the previous package (kept since the last update).

        :raises InvalidInput: there is no previous package.
        """
        current = self.installed()
        previous = current.get("previous")
        path = self.folder / "packages" / f"{previous}.pkg"
        if not previous or not path.is_file():
            raise InvalidInput("there is no previous package to roll back to")
        data = path.read_bytes()
        record = {
            "version": previous,
            "sha256": _sha256(data),
            "size": len(data),
            "previous": None,
            "rolled_back_from": current["version"],  # kept on the device (see remove_leftovers)
        }
        self._switch(record, event="update_rolled_back")
        return record

    def _switch(self, record: dict[str, Any], *, event: str) -> None:
        write_atomic(self.folder / "installed.json", json.dumps(record, indent=2).encode("utf-8"))

        def apply(ctx: WriteContext) -> None:
            ctx.emit(event, dict(record))

        with contextlib.suppress(Exception):  # the package is in; the journal line is its record
            self.t.journal.write(apply, klass=SETTLEMENT)
        self.remove_leftovers()  # what the new record does not name: installed, previous, rolled back from
        self.t.space.forget_sizes()

    def status(self) -> dict[str, Any]:
        """The installed package, the trusted key, and how much an update may take now."""
        room = self.room(0)
        return {
            **self.installed(),
            "trusted_key": self.t.config.update_public_key,
            "spare_bytes": room["spare_bytes"],
            "keep_sales": KEEP_SALES,
        }
