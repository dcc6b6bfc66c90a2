"""A host configuration file (JSON), applied to the ledger's settings by ``host serve --config``.

Every key is optional; what a key names is replaced, the rest kept::

    {
      "fees": {"rules": [{"card_type": "debit", "rate": "0.50%", "cap": 2000},
                         {"rate": "0.60%"}], "refunds_return_fee": false},
      "card_types": {"default": "credit", "prefixes": {"622202": "debit"}},
      "calendar": {"holidays": ["2025-10-01", "2025-10-02"], "workdays": ["2025-09-28"]},
      "merchants": {"M00000000000001": {"currency": "156", "deposit": 29900,
                    "activation_min": 10000, "refund_threshold": 5000000,
                    "fees": {"rules": [{"rate": "0.38%"}]}}}
    }

Amounts are int minor units (as in every JSON TillVault writes); rates a percentage string or
``rate_ppm``. The whole file is checked before anything is applied, and applied in one ledger
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from tillvault.errors import ConfigError, InvalidInput
from tillvault.host.businessdays import BusinessCalendar
from tillvault.host.fees import FeeSchedule
from tillvault.host.ledger import HostLedger
from tillvault.host.merchants import UNCHANGED, set_merchant
from tillvault.host.settings import CardTypeRule, check_merchant_id, set_calendar, set_card_type_rule, set_fee_schedule

__all__ = ["apply_config", "load_config"]

_TOP = {"fees", "card_types", "calendar", "merchants"}
_MERCHANT = {"currency", "deposit", "activation_min", "refund_threshold", "fees"}


def load_config(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    :raises ConfigError: unreadable, not JSON, or not an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read host config {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"host config {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"host config {path} must hold a JSON object")
    return data


def apply_config(ledger: HostLedger, config: Mapping[str, Any], *, today: date) -> dict[str, Any]:
    """Check and apply ``config`` (the form above); a summary of what was set.

    :raises InvalidInput: an unknown key or a bad value anywhere (nothing applied).
    """
    unknown = set(config) - _TOP
    if unknown:
        raise InvalidInput(f"unknown host config keys: {', '.join(sorted(unknown))}")
    fees = FeeSchedule.from_dict(config["fees"]) if "fees" in config else None
    card_types = CardTypeRule.from_dict(config["card_types"]) if "card_types" in config else None
    days = BusinessCalendar.from_dict(config["calendar"]) if "calendar" in config else None
    merchants = config.get("merchants", {})
    if not isinstance(merchants, Mapping):
        raise InvalidInput('host config "merchants" must map merchant ids to their terms')
    parsed: list[tuple[str, Mapping[str, Any], FeeSchedule | None]] = []
    for merchant_id, terms in merchants.items():
        key = check_merchant_id(str(merchant_id))
        if not isinstance(terms, Mapping) or set(terms) - _MERCHANT:
            raise InvalidInput(f"merchant {key}: terms must be an object with keys {', '.join(sorted(_MERCHANT))}")
        parsed.append((key, terms, FeeSchedule.from_dict(terms["fees"]) if terms.get("fees") is not None else None))
    with ledger.atomic():
        if fees is not None:
            set_fee_schedule(ledger, fees)
        if card_types is not None:
            set_card_type_rule(ledger, card_types)
        if days is not None:
            set_calendar(ledger, days)
        for key, terms, schedule in parsed:
            set_merchant(
                ledger,
                key,
                today=today,
                currency=terms.get("currency"),
                deposit=terms.get("deposit", UNCHANGED),
                activation_min=terms.get("activation_min", UNCHANGED),
                refund_threshold=terms.get("refund_threshold", UNCHANGED),
            )
            if "fees" in terms:
                set_fee_schedule(ledger, schedule, key)
    return {
        "fees": fees is not None,
        "card_types": card_types is not None,
        "calendar": days is not None,
        "merchants": [key for key, _, _ in parsed],
    }
