"""Retention per data category (S10, S11; PIPL Art. 6, 19): what is kept, where, for how long.

The purge honours each category's clock and never removes what has not been acknowledged
upstream: a sealed segment is evicted locally only once the archive acknowledged it (and
still holds a verified copy); transactions are never deleted from the hot tier before they
are sealed; customers are deleted after inactivity (their pseudonymous reference stays in
the transaction records, which is all the records need).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DAY_MS = 86_400_000


@dataclass
class RetentionPolicy:
    """Days each category is kept (configurable in the terminal's config, ``retention``)."""

    #: Sealed transaction segments kept locally (reprints, refunds) once the archive has them.
    transactions_local_days: float = 7
    #: Members with no visit for this long are deleted.
    customers_inactive_days: float = 365
    #: Receipt images.
    receipts_days: float = 30
    #: Log files.
    logs_days: float = 14
    #: Delivered outbox messages and usage samples (the audit trail of deliveries).
    audit_days: float = 90
    #: Finished update downloads (0: as soon as cleaning runs).
    updates_days: float = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RetentionPolicy:
        """Build from config, ignoring unknown keys."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def cutoff_ms(self, category: str, now_ms: int) -> int:
        """Records of ``category`` older than this (ms since the epoch) are due."""
        return now_ms - int(getattr(self, f"{category}_days") * DAY_MS)
