"""The host's card-token secret: kept out of the ledger database and out of the data dir.

Card accounts are keyed by HMAC-SHA256(PAN) under this secret, so the ledger never holds a
PAN. Where the secret comes from, first match wins:

1. the environment variable ``TILLVAULT_HOST_SECRET`` (its UTF-8 bytes);
2. the file ``host.secret`` (mode 0600) in the host's config dir: the explicit ``config_dir``,
   else ``TILLVAULT_HOST_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/tillvault/host/<hash>/``
   (``~/.config`` when unset), where ``<hash>`` is the first 16 hex digits of the SHA-256 of the
   data dir's absolute path, so each host data dir has its own secret. The file is created
   with 32 random bytes (hex) on first use; a file readable by group or others is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from tillvault.errors import ConfigError

__all__ = ["card_token", "default_config_dir", "load_host_secret", "secret_check"]

ENV_SECRET = "TILLVAULT_HOST_SECRET"
ENV_CONFIG_DIR = "TILLVAULT_HOST_CONFIG_DIR"


def default_config_dir(data_dir: Path) -> Path:
    """The config dir for the host whose data dir is ``data_dir`` (see the module docstring)."""
    explicit = os.environ.get(ENV_CONFIG_DIR)
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return base / "tillvault" / "host" / digest


def load_host_secret(data_dir: Path, config_dir: Path | None = None) -> bytes:
    """The host secret (bytes), creating ``host.secret`` on first use.

    :raises ConfigError: the secret file is readable by group or others, empty, or the config
        dir is inside ``data_dir`` (the secret must not sit beside the ledger).
    """
    from_env = os.environ.get(ENV_SECRET)
    if from_env:
        return from_env.encode()
    directory = Path(config_dir) if config_dir is not None else default_config_dir(data_dir)
    if directory.resolve().is_relative_to(Path(data_dir).resolve()):
        raise ConfigError(f"the host secret's config dir {directory} must not be inside the data dir")
    path = directory / "host.secret"
    if not path.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"{path} is empty")
    return value.encode()


def card_token(secret: bytes, pan: str) -> str:
    """HMAC-SHA256 of the PAN under ``secret``, as 64 hex digits: the card's account key."""
    return hmac.digest(secret, pan.encode("ascii"), "sha256").hex()


def secret_check(secret: bytes) -> str:
    """A value stored in the ledger that reveals whether a later secret is the same one."""
    return hmac.new(secret, b"tillvault-host-secret-check", hashlib.sha256).hexdigest()[:16]
