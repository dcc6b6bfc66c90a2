"""The terminal's configuration: one JSON file in the data folder, written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tillvault.errors import ConfigError, NotInitialized
from tillvault.store.fsutil import write_atomic

CONFIG_NAME = "terminal.json"
CONFIG_FORMAT = "tillvault-terminal/1"


@dataclass
class OfflinePolicy:
    """Store-and-forward limits (minor units), as Stripe, Adyen and Square cap offline payments."""

    floor_limit: int = 20_000
    max_count: int = 100
    max_amount: int = 1_000_000
    #: Advices not delivered after this many hours are flagged to the merchant.
    max_age_hours: int = 72

    @classmethod
    def for_currency(cls, currency: str) -> OfflinePolicy:
        """The defaults (200 and 10,000 yuan) in a similar worth of ``currency``."""
        from tillvault.domain.limits import scaled_from_cny

        return cls(floor_limit=scaled_from_cny(200, currency), max_amount=scaled_from_cny(10_000, currency))


@dataclass
class TerminalConfig:
    """Everything ``tillvault init`` decides, plus tunables with defaults."""

    terminal_id: str
    terminal_uuid: str
    merchant: dict[str, Any]
    host: str
    keyring: str
    space: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    offline: dict[str, Any] = field(default_factory=lambda: asdict(OfflinePolicy()))
    device_b: str | None = None
    #: Archive sink for sealed segments (a directory: NAS or USB disk, or the back office's URL), or None.
    archive: str | None = None
    #: CA certificate (PEM) of a back office with a private CA (archive and health reports); None: the system's.
    archive_tls_ca: str | None = None
    #: Retention per data category (see :class:`tillvault.store.retention.RetentionPolicy`).
    retention: dict[str, Any] = field(default_factory=dict)
    #: The open batch is settled (or the merchant told to) when it reaches this count.
    batch_max_count: int = 1500
    host_timeout_s: float = 10.0
    #: CA certificate (PEM) to reach the host over TLS; None: plain TCP (a private network).
    host_tls_ca: str | None = None
    #: The vendor's Ed25519 public key (hex) that software updates must be signed with.
    update_public_key: str | None = None
    format: str = CONFIG_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def save(self, data_dir: Path) -> None:
        """Write atomically (temp file, fsync, rename, fsync folder)."""
        write_atomic(data_dir / CONFIG_NAME, json.dumps(self.to_dict(), ensure_ascii=False, indent=2).encode("utf-8"))

    @classmethod
    def load(cls, data_dir: Path) -> TerminalConfig:
        """Read the configuration.

        :raises NotInitialized: no terminal in ``data_dir``.
        :raises ConfigError: unreadable or of an unknown format.
        """
        path = data_dir / CONFIG_NAME
        try:
            raw = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise NotInitialized(f"no terminal in {data_dir}: run 'tillvault --data {data_dir} init' first") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"terminal configuration {path} is unreadable: {exc}") from exc
        if raw.get("format") != CONFIG_FORMAT:
            raise ConfigError(f"terminal configuration {path} has unknown format {raw.get('format')!r}")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"terminal configuration {path} is incomplete: {exc}") from exc
