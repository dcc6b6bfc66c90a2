"""Verified, encrypted, versioned backups of a terminal, and restore onto a new device (S9, S11).

A backup folder holds:

- ``manifest.json`` — format and version, terminal id, the journal's chain tip, the SHA-256 of
  every file, and the key-derivation parameters; written last, so a backup without it is
  incomplete and refused;
- ``journal.tvb`` — a consistent snapshot of the journal (``VACUUM INTO`` in a read
  transaction of its own, so sales keep running) encrypted with AES-256-GCM in 1 MiB chunks
  under a random backup key;
- ``config.tvb`` — the terminal's configuration, encrypted the same way;
- ``keyring.tvb`` — the key ring and the backup key, encrypted under a key derived from a
  passphrase with scrypt (the data keys never leave the terminal unwrapped);
- ``segments/`` — sealed segments as they are (already encrypted under the ring's keys).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import json
import os
import secrets
import shutil
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tillvault.errors import ConfigError, InvalidInput, KeyRingError, StorageError, StorageFull
from tillvault.store.fsutil import fsync_dir, is_within, write_atomic

FORMAT = "tillvault-backup"
VERSION = 1
CHUNK = 1 << 20
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
#: How far a restored terminal's invoice and STAN counters jump (sales after the backup exist at the host).
RESTORE_SKIP = 10_000


class BackupCorrupt(StorageError):
    """A backup is incomplete, damaged, or of an unknown format."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _kdf(passphrase: str, salt: bytes) -> bytes:
    if not passphrase:
        raise InvalidInput("a backup passphrase is required (--passphrase or TILLVAULT_BACKUP_PASSPHRASE)")
    return Scrypt(salt=salt, length=32, **SCRYPT).derive(passphrase.encode("utf-8"))


def encrypt_file(src: Path | bytes, dest: Path, key: bytes, label: bytes) -> None:
    """Encrypt ``src`` (a file, or bytes) into ``dest``: per 1 MiB chunk, 4-byte length, 12-byte
    nonce, AES-GCM ciphertext."""
    aead = AESGCM(key)
    source = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115 - closed below
    with source as fin, open(dest, "wb") as fout:
        index = 0
        while True:
            chunk = fin.read(CHUNK)
            nonce = secrets.token_bytes(12)
            sealed = aead.encrypt(nonce, chunk, label + index.to_bytes(8, "big") + (b"L" if not chunk else b"C"))
            fout.write(len(sealed).to_bytes(4, "big") + nonce + sealed)
            index += 1
            if not chunk:  # an empty final chunk marks the end (truncation is detected)
                break
        fout.flush()
        os.fsync(fout.fileno())


def decrypt_file(src: Path, dest: Path, key: bytes, label: bytes) -> None:
    """Reverse :func:`encrypt_file`.

    :raises BackupCorrupt: damaged, truncated or under another key.
    """
    aead = AESGCM(key)
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        index = 0
        while True:
            head = fin.read(16)
            if len(head) < 16:
                raise BackupCorrupt(f"{src.name} is truncated")
            size, nonce = int.from_bytes(head[:4], "big"), head[4:]
            body = fin.read(size)
            try:
                plain = aead.decrypt(nonce, body, label + index.to_bytes(8, "big") + (b"L" if size == 16 else b"C"))
            except InvalidTag:
                raise BackupCorrupt(f"{src.name} is damaged or was not written with this key") from None
            if not plain:
                break
            fout.write(plain)
            index += 1
        fout.flush()
        os.fsync(fout.fileno())


def create_backup(t: Any, dest: Path | str, passphrase: str) -> dict[str, Any]:
    """Write a backup of terminal ``t`` into the new or empty folder ``dest``; returns the manifest.

    :raises InvalidInput: ``dest`` holds other files, or no passphrase.
    """
    dest = Path(dest)
    devices = [("data folder", Path(t.data_dir))]
    device_b = getattr(getattr(t, "config", None), "device_b", None)
    if device_b:
        devices.append(("device B folder", Path(device_b)))
    for what, folder in devices:
        if is_within(dest, folder):
            raise InvalidInput(
                f"backup destination {dest} is inside the terminal's {what} ({folder}): a backup there is lost "
                "with the device and takes the sales' space; write it to another disk (a USB stick, a NAS)"
            )
    if dest.exists() and any(dest.iterdir()):
        raise InvalidInput(f"backup destination {dest} is not empty")
    salt = secrets.token_bytes(16)
    pass_key = _kdf(passphrase, salt)
    made = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        return _write_backup(t, dest, salt, pass_key)
    except (OSError, sqlite3.Error, StorageError) as exc:
        # Nothing half-written is left to be mistaken for a backup; the terminal was only read.
        for child in list(dest.iterdir()) if dest.exists() else []:
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                dest.rmdir()
        full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "full" in str(exc)
        reason = f"backup to {dest} failed ({exc}); the partial backup was removed, the terminal is unchanged"
        if full:
            raise StorageFull(reason.replace("failed", "failed: the backup medium is full", 1)) from exc
        if isinstance(exc, StorageError):
            raise
        raise StorageError(reason) from exc


def _write_backup(t: Any, dest: Path, salt: bytes, pass_key: bytes) -> dict[str, Any]:
    data_key = secrets.token_bytes(32)
    # The plaintext snapshot is made in memory: never on the backup medium, and not on the
    # terminal's disk either (a full disk is when a backup matters most).
    src = sqlite3.connect(f"file:{t.journal.path}?mode=ro", uri=True)
    snap = sqlite3.connect(":memory:")
    try:
        src.backup(snap)  # one step: a consistent copy while sales keep committing
        snap.execute("VACUUM")  # the journal's pre-grown free pages stay behind
        tip = snap.execute("SELECT seq, hex(chain) FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if tip is None:
            tip = snap.execute("SELECT seq, hex(chain) FROM chain_anchor").fetchone()
        transactions = snap.execute("SELECT count(*) FROM transactions").fetchone()[0]
        image = snap.serialize()
    finally:
        snap.close()
        src.close()
    encrypt_file(image, dest / "journal.tvb", data_key, b"journal")
    encrypt_file(json.dumps(t.config.to_dict()).encode("utf-8"), dest / "config.tvb", data_key, b"config")
    ring = {
        "keys": [
            {
                "id": k.key_id,
                "purpose": k.purpose,
                "material": base64.b64encode(k.material).decode(),
                "active": k.active,
            }
            for k in t.keyring.all_keys()
        ],
        "backup_key": base64.b64encode(data_key).decode(),
    }
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(pass_key).encrypt(nonce, json.dumps(ring).encode(), b"keyring")
    with open(dest / "keyring.tvb", "wb") as fh:
        fh.write(nonce + sealed)
        fh.flush()
        os.fsync(fh.fileno())
    segs = dest / "segments"
    segs.mkdir()
    copied = []
    for seg in t.tiers.catalogue():
        if seg["local"]:
            path = t.tiers.segment_path(seg["name"])
            shutil.copyfile(path, segs / seg["name"])
            with open(segs / seg["name"], "rb+") as fh:
                os.fsync(fh.fileno())
            if _sha256(segs / seg["name"]) != seg["digest"]:
                raise BackupCorrupt(f"segment {seg['name']} changed while being copied")
            copied.append(seg["name"])
    files = {p.relative_to(dest).as_posix(): _sha256(p) for p in sorted(dest.rglob("*")) if p.is_file()}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created_ms": int(time.time() * 1000),
        "terminal_id": t.config.terminal_id,
        "terminal_uuid": t.config.terminal_uuid,
        "journal_tip_seq": int(tip[0]),
        "journal_tip_chain": str(tip[1]).lower(),
        "transactions_hot": transactions,
        "segments": copied,
        "files": files,
        "kdf": {"name": "scrypt", **SCRYPT, "salt": salt.hex()},
    }
    fsync_dir(dest / "segments")
    write_atomic(dest / "manifest.json", json.dumps(manifest, indent=2).encode("utf-8"))
    return manifest


def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest of a backup, checked against every file's digest.

    :raises BackupCorrupt: incomplete (no manifest), unknown format, or a file differs.
    """
    try:
        manifest = json.loads((src / "manifest.json").read_text("utf-8"))
    except FileNotFoundError:
        raise BackupCorrupt(f"{src} holds no manifest.json: not a TillVault backup, or an incomplete one") from None
    except (OSError, ValueError) as exc:
        raise BackupCorrupt(f"{src}/manifest.json is unreadable: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupCorrupt(
            f"{src} is a {manifest.get('format')} v{manifest.get('version')} backup; "
            f"this TillVault reads {FORMAT} v{VERSION}"
        )
    for name, digest in manifest["files"].items():
        path = src / name
        if not path.is_file():
            raise BackupCorrupt(f"backup file {name} is missing")
        if _sha256(path) != digest:
            raise BackupCorrupt(f"backup file {name} is damaged (digest mismatch)")
    return manifest


def restore_backup(
    src: Path | str,
    data_dir: Path | str,
    passphrase: str,
    keyring_dir: Path | str | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Rebuild a terminal from a backup into ``data_dir`` (a new device) and verify it.

    ``now`` (local time; default the system clock) decides where today's STANs start.

    :raises BackupCorrupt: the backup is damaged or incomplete.
    :raises KeyRingError: wrong passphrase.
    :raises ConfigError: ``data_dir`` already holds a terminal.
    """
    from tillvault.store.keys import Key, KeyRing, default_keyring_dir, refuse_beside_data
    from tillvault.terminal.config import CONFIG_NAME, TerminalConfig
    from tillvault.terminal.terminal import Terminal, day_first_stan

    src, data_dir = Path(src), Path(data_dir)
    manifest = read_manifest(src)
    if (data_dir / CONFIG_NAME).exists():
        raise ConfigError(f"{data_dir} already holds a terminal; restore into an empty folder")
    ring_dir = Path(keyring_dir or default_keyring_dir())
    refuse_beside_data(ring_dir, {"data folder": data_dir, "backup": src})
    blob = (src / "keyring.tvb").read_bytes()
    pass_key = _kdf(passphrase, bytes.fromhex(manifest["kdf"]["salt"]))
    try:
        ring = json.loads(AESGCM(pass_key).decrypt(blob[:12], blob[12:], b"keyring"))
    except InvalidTag:
        raise KeyRingError("wrong backup passphrase (or a damaged key ring in the backup)") from None
    data_key = base64.b64decode(ring["backup_key"])
    data_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):  # left by a restore killed half-way: they belong to no journal now
        with contextlib.suppress(FileNotFoundError):
            os.unlink(data_dir / f"journal.db{suffix}")
    decrypt_file(src / "journal.tvb", data_dir / "journal.db", data_key, b"journal")
    config_tmp = data_dir / ".config.restore"
    decrypt_file(src / "config.tvb", config_tmp, data_key, b"config")
    config = TerminalConfig(**json.loads(config_tmp.read_text("utf-8")))
    config_tmp.unlink()
    ring_path = ring_dir / f"{config.terminal_uuid}.json"
    keys = [Key(k["id"], k["purpose"], base64.b64decode(k["material"]), k["active"]) for k in ring["keys"]]
    if ring_path.exists():
        existing = {k.key_id: k.material for k in KeyRing.load(ring_path).all_keys()}
        if any(existing.get(k.key_id) not in (None, k.material) for k in keys):
            raise KeyRingError(f"a different key ring for this terminal already exists at {ring_path}")
    KeyRing(ring_path, keys).save()
    config.keyring = str(ring_path.resolve())
    config.device_b = None  # the new device starts on one device; add B with a new init of B
    seg_dir = data_dir / "segments"
    seg_dir.mkdir(exist_ok=True)
    for name in manifest["segments"]:
        shutil.copyfile(src / "segments" / name, seg_dir / name)
    with contextlib.closing(sqlite3.connect(data_dir / "journal.db")) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        # Segments the backup did not carry (evicted to the archive) are not local here.
        # Sales made after the backup reached the host: skip far ahead so no invoice or STAN is reused.
        conn.execute("UPDATE counters SET value = value + ? WHERE name = 'invoice'", (RESTORE_SKIP,))
        conn.execute("UPDATE counters SET value = (value + ?) % 999999 + 1 WHERE name LIKE 'stan:%'", (RESTORE_SKIP,))
        # Today's STANs: above the skip, and above what the original can have sent since the
        # day's start (the day's first STAN as if the day started now; see Terminal.first_stan).
        now = now or datetime.now().astimezone()
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
            (f"stan:{now.date().isoformat()}", max(RESTORE_SKIP, day_first_stan(now) - 1)),
        )
        names = manifest["segments"]
        conn.execute(
            f"UPDATE segments SET local = 0 WHERE name NOT IN ({','.join('?' for _ in names) or 'NULL'})", names
        )
        conn.commit()
    # Last: a folder holds a terminal once everything above is there (as init does). A restore
    # killed before this leaves no terminal.json, and running it again starts over.
    config.save(data_dir)
    with Terminal.open(data_dir) as t:
        report = t.scrub()
        tip_seq, tip_chain = t.journal.tip
        t.space.ensure_ballast()
        t.maintain()
    if tip_seq != manifest["journal_tip_seq"] or tip_chain.hex() != manifest["journal_tip_chain"]:
        raise BackupCorrupt("the restored journal does not end where the backup said it did")
    return {
        "ok": report["ok"],
        "restored_to": str(data_dir),
        "terminal_id": config.terminal_id,
        "journal_tip_seq": tip_seq,
        "segments": len(manifest["segments"]),
        "scrub": report,
    }
