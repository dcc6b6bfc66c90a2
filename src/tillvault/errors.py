"""The one exception hierarchy of TillVault.

Callers catch errors by meaning: ``StorageFull`` when space admission refuses work,
``CardRejected`` for a card that fails local checks, ``QRCodeInvalid`` for a merchant QR
that does not parse, and so on. Every error carries a one-line, human message that
names what was wrong; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

from typing import Any


class TillVaultError(Exception):
    """Base of every error TillVault raises on purpose."""

    #: Process exit code the CLI uses for this error.
    exit_code: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the error."""
        return {"error": type(self).__name__, "reason": str(self)}


class ConfigError(TillVaultError):
    """The terminal's configuration or a command's arguments are wrong."""

    exit_code = 2


class InvalidInput(TillVaultError):
    """Input from a user, a file or the wire is malformed (names the field and the problem)."""

    exit_code = 2


class CardRejected(InvalidInput):
    """A card failed local checks (brand, length, Luhn, expiry)."""

    def __init__(
        self, message: str, errors: list[str] | None = None, *, masked: str | None = None, brand: str | None = None
    ) -> None:
        super().__init__(message)
        self.errors = errors or [message]
        #: The masked PAN and brand, when the number could be read (a receipt can still show them).
        self.masked = masked
        self.brand = brand


class QRCodeInvalid(InvalidInput):
    """A merchant-presented EMV QR code is malformed or fails its CRC."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


class MessageError(InvalidInput):
    """An ISO 8583 message could not be encoded or decoded."""


class LimitExceeded(TillVaultError):
    """A transaction limit (per transaction, per card per day, per terminal per day) refuses a sale."""

    def __init__(self, message: str, limit: str = "", excess_minor: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.excess_minor = excess_minor


class StorageError(TillVaultError):
    """Base of storage problems."""


class StorageFull(StorageError):
    """Space admission refused work, or the engine ran out of space (SQLITE_FULL / ENOSPC).

    The message names the device, the figures and the way out.
    """

    def __init__(
        self,
        message: str,
        *,
        device: str = "A",
        needed_bytes: int = 0,
        available_bytes: int = 0,
        message_zh: str = "",
    ) -> None:
        super().__init__(message)
        self.device = device
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes
        self.message_zh = message_zh


class DeviceFailed(StorageError):
    """A storage device returned I/O errors or disappeared."""


class JournalCorrupt(StorageError):
    """A checksum, the hash chain or SQLite's integrity check failed."""


class NotInitialized(ConfigError):
    """The data folder holds no terminal yet (run ``tillvault init``)."""


class HostError(TillVaultError):
    """Base of problems talking to the acquirer host."""


class HostUnavailable(HostError):
    """The host could not be reached: nothing was sent, the outcome is known (not authorized)."""


class HostTimeout(HostError):
    """The request was sent but no reply came in time: the outcome is unknown."""


class HostProtocolError(HostError):
    """The host's reply was malformed: the outcome is unknown."""


class SettlementError(TillVaultError):
    """Settlement could not complete (nothing is lost; it can be retried)."""


class SettlementOutOfBalance(SettlementError):
    """The terminal's and the host's batch totals disagree after batch upload."""


class PermissionDenied(InvalidInput):
    """The operator may not do this (unknown, wrong PIN, locked, or a role below what it needs)."""


class TransactionNotFound(TillVaultError):
    """No transaction with that invoice number (for void, refund, reprint)."""

    exit_code = 2


class KeyRingError(TillVaultError):
    """The key ring is missing, locked or lacks the key id a record names."""


class SegmentCorrupt(StorageError):
    """A sealed segment fails a digest, its authentication or its decoding: it was damaged or altered.

    Nothing from the damaged part is returned; the message names the segment and the region
    (header or block number and byte range). Restore the segment from a mirror or the archive.
    """
