"""The terminal's key ring: keys that protect data, kept away from the data they protect.

The ring is a JSON file (mode 0600) in a folder of its own, by default
``$TILLVAULT_KEYRING`` or ``~/.config/tillvault/keyring/``, named after the terminal's
unique id, never inside the terminal's data folder. Each key has an id, a purpose and a
state; new keys can be added (rotation) while old ids stay readable.

Purposes:
- ``token``: HMAC-SHA256 key that turns a PAN or a phone number into a stable token.
- ``kek``: key-encrypting key that wraps per-segment data keys and encrypts small fields.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tillvault.errors import ConfigError, KeyRingError
from tillvault.store.fsutil import is_within, write_atomic

PURPOSES = ("token", "kek")


def default_keyring_dir() -> Path:
    """Where key rings live unless ``TILLVAULT_KEYRING`` says otherwise."""
    env = os.environ.get("TILLVAULT_KEYRING")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tillvault" / "keyring"


@dataclass(frozen=True)
class Key:
    """One key of the ring."""

    key_id: str
    purpose: str
    material: bytes
    active: bool = True


class KeyRing:
    """Keys by id and purpose, persisted atomically in one JSON file."""

    def __init__(self, path: Path, keys: list[Key]) -> None:
        self.path = path
        self._keys = {k.key_id: k for k in keys}
        self._ciphers: dict[bytes, AESGCM] = {}

    # -- creation and loading -----------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, *, data_dir: Path | None = None) -> KeyRing:
        """Create a ring with one fresh key per purpose.

        :raises ConfigError: if ``path`` lies inside ``data_dir`` (keys beside the data).
        :raises KeyRingError: if a ring already exists at ``path``.
        """
        refuse_beside_data(path, {"data folder": data_dir})
        if path.exists():
            raise KeyRingError(f"key ring {path} already exists; refusing to overwrite keys")
        ring = cls(path, [])
        for purpose in PURPOSES:
            ring.add_key(purpose, save=False)
        ring.save()
        return ring

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Load a ring.

        :raises KeyRingError: missing or unreadable.
        """
        try:
            raw = json.loads(path.read_text("utf-8"))
            keys = [
                Key(k["id"], k["purpose"], base64.b64decode(k["material"]), bool(k.get("active", True)))
                for k in raw["keys"]
            ]
        except FileNotFoundError as exc:
            raise KeyRingError(
                f"key ring {path} not found: the terminal's keys are missing (set TILLVAULT_KEYRING "
                "or restore the key ring from a backup)"
            ) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyRingError(f"key ring {path} is unreadable: {exc}") from exc
        return cls(path, keys)

    def save(self) -> None:
        """Write the ring atomically (temp file, fsync, rename, fsync folder), mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        doc = {
            "format": "tillvault-keyring/1",
            "keys": [
                {
                    "id": k.key_id,
                    "purpose": k.purpose,
                    "material": base64.b64encode(k.material).decode("ascii"),
                    "active": k.active,
                }
                for k in self._keys.values()
            ],
        }
        write_atomic(self.path, json.dumps(doc).encode("utf-8"), mode=0o600)

    # -- keys ---------------------------------------------------------------------------------
    def add_key(self, purpose: str, *, save: bool = True) -> Key:
        """Add a fresh 256-bit key for ``purpose`` and make it the active one (rotation)."""
        if purpose not in PURPOSES:
            raise KeyRingError(f"unknown key purpose {purpose!r}; expected one of {', '.join(PURPOSES)}")
        for key_id, key in list(self._keys.items()):
            if key.purpose == purpose and key.active:
                self._keys[key_id] = Key(key.key_id, key.purpose, key.material, active=False)
        key = Key(f"{purpose}-{secrets.token_hex(4)}", purpose, secrets.token_bytes(32))
        self._keys[key.key_id] = key
        if save:
            self.save()
        return key

    def active(self, purpose: str) -> Key:
        """The active key for ``purpose``.

        :raises KeyRingError: none exists.
        """
        for key in self._keys.values():
            if key.purpose == purpose and key.active:
                return key
        raise KeyRingError(f"key ring {self.path} has no active {purpose} key")

    def get(self, key_id: str) -> Key:
        """The key with ``key_id``.

        :raises KeyRingError: unknown id (e.g. a segment sealed under a key that was removed).
        """
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyRingError(f"key ring {self.path} lacks key {key_id!r}") from None

    def all_keys(self) -> list[Key]:
        """All keys, active and retired."""
        return list(self._keys.values())

    # -- operations ---------------------------------------------------------------------------
    def token_key(self) -> bytes:
        """The tokenization key: the *first* token key ever created, so tokens stay stable across rotation."""
        for key in self._keys.values():  # insertion order = creation order
            if key.purpose == "token":
                return key.material
        raise KeyRingError(f"key ring {self.path} has no token key")

    def token(self, value: str, *, domain: str) -> str:
        """A stable keyed token (hex HMAC-SHA256, 32 hex chars = 16 bytes) of ``value`` in ``domain``.

        For card numbers use :func:`tillvault.domain.cards.card_token` with :meth:`token_key`.
        """
        return hmac.digest(self.token_key(), f"{domain}:{value}".encode(), "sha256").hex()[:32]

    def _aead(self, material: bytes) -> AESGCM:
        """The AES-GCM cipher of a key's material (set up once: every sale encrypts a field or two)."""
        aead = self._ciphers.get(material)
        if aead is None:
            aead = self._ciphers[material] = AESGCM(material)
        return aead

    def encrypt_field(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        """Encrypt a small field with AES-256-GCM under the active KEK: ``id|nonce|ciphertext``."""
        key = self.active("kek")
        nonce = secrets.token_bytes(12)
        kid = key.key_id.encode("ascii")
        return bytes([len(kid)]) + kid + nonce + self._aead(key.material).encrypt(nonce, plaintext, context)

    def decrypt_field(self, blob: bytes, *, context: bytes = b"") -> bytes:
        """Reverse :meth:`encrypt_field`.

        :raises KeyRingError: unknown key id or the ciphertext fails authentication.
        """
        try:
            n = blob[0]
            kid = blob[1 : 1 + n].decode("ascii")
            nonce = blob[1 + n : 13 + n]
            return self._aead(self.get(kid).material).decrypt(nonce, blob[13 + n :], context)
        except KeyRingError:
            raise
        except Exception as exc:
            raise KeyRingError(f"encrypted field failed authentication: {type(exc).__name__}") from exc


def refuse_beside_data(path: Path, folders: dict[str, Path | None]) -> None:
    """Refuse a key ring path inside any of ``folders`` (by what they are): keys never lie beside
    the data they protect, nor in a copy of it (device B, a backup).

    :raises ConfigError: naming the folder.
    """
    for what, folder in folders.items():
        if folder is not None and is_within(path, folder):
            raise ConfigError(f"key ring {path} must not be inside the {what} {folder}; keep the keys elsewhere")
