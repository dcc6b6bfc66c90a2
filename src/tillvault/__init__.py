"""TillVault: a transaction vault and settlement engine for POS terminals.

No sale or settlement ever fails because storage is full, and no approved transaction
is ever lost.
"""

from tillvault.errors import (
    CardRejected,
    ConfigError,
    DeviceFailed,
    HostError,
    HostTimeout,
    HostUnavailable,
    InvalidInput,
    JournalCorrupt,
    KeyRingError,
    LimitExceeded,
    NotInitialized,
    QRCodeInvalid,
    SettlementError,
    SettlementOutOfBalance,
    StorageFull,
    TillVaultError,
    TransactionNotFound,
)
from tillvault.terminal.terminal import Terminal

__version__ = "0.1.0"

__all__ = [
    "CardRejected",
    "ConfigError",
    "DeviceFailed",
    "HostError",
    "HostTimeout",
    "HostUnavailable",
    "InvalidInput",
    "JournalCorrupt",
    "KeyRingError",
    "LimitExceeded",
    "NotInitialized",
    "QRCodeInvalid",
    "SettlementError",
    "SettlementOutOfBalance",
    "StorageFull",
    "Terminal",
    "TillVaultError",
    "TransactionNotFound",
    "__version__",
]
