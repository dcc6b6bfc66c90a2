"""The naive baseline: how browser POS apps keep orders (localStorage / IndexedDB), on the same quota.

The pattern of Odoo POS and ERPNext/POS Awesome (DESIGN.md, "What people already use"), made
concrete and honest:

* one JSON row per order, with ordinary key names (the ``WORKLOAD.md`` record, about
  450-550 bytes), appended to a JSON-lines file;
* the row is written **after** the payment was authorized: the money has moved by then;
* no reserve, no sealing or compression, no offload: rows stay on the device;
* no idempotency key: a repeated submission is a second order (and a second charge);
* the store has the same capacity as TillVault's (the quota, shrinking alike with an ageing
  device), shared with whatever else lands on the device (an update download);
* a write that does not fit fails, as ``QuotaExceededError`` does, and the app does not handle
  it: the order is **lost** although the card was charged. The day's closing (the session's
  Z report) is a row too; when it does not fit, the settlement **fails**.

Nothing is simulated away: the rows are really encoded and really written to a folder, and
the figures (bytes per order, peak use) are measured on those files.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ORDERS_FILE = "orders.jsonl"
SESSIONS_FILE = "sessions.jsonl"


@dataclass
class NaiveFigures:
    """What happened to the naive store (the same keys as TillVault's figures where they apply)."""

    sales_attempted: int = 0
    approved: int = 0
    offline_approved: int = 0
    declined: int = 0
    refused_for_space: int = 0
    not_completed: int = 0
    duplicate_charges: int = 0
    orders_written: int = 0
    lost: int = 0
    lost_amount: int = 0
    first_lost_at: str | None = None
    settlements: int = 0
    settlement_failures: int = 0
    unbalanced_settlements: int = 0
    bytes_per_transaction: float = 0.0
    peak_used_bytes: int = 0
    capacity_bytes: int = 0
    used_bytes: int = 0
    full_at: str | None = None
    #: [day, forecast, days really left]: the naive store makes no forecast (None); what it
    #: really had left is known when it filled within the run.
    runway_forecast_days: list[list[Any]] = field(default_factory=list)
    settlement_rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


class NaiveStore:
    """A JSON-lines order store under a byte quota (the browser's origin quota)."""

    def __init__(self, folder: Path, capacity_bytes: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.capacity_bytes = capacity_bytes
        self.figures = NaiveFigures(capacity_bytes=capacity_bytes)
        self._orders = os.open(self.folder / ORDERS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._sessions = os.open(self.folder / SESSIONS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._order_bytes = 0
        self._session_bytes = 0
        self._other: dict[str, int] = {}
        self._next_invoice = 0
        # The day's takings as the app sums them (from the orders it managed to keep).
        self._day_sales = [0, 0]
        self._day_refunds = [0, 0]
        # What really moved on the cards (the acquirer's view), to see settlement go out of balance.
        self._true_net = 0

    # -- space ------------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes the store and its neighbours hold on the device."""
        return self._order_bytes + self._session_bytes + sum(self._other.values())

    def set_capacity(self, capacity_bytes: int) -> None:
        """The device's usable capacity changed (ageing media)."""
        self.capacity_bytes = capacity_bytes
        self.figures.capacity_bytes = capacity_bytes

    def put_file(self, name: str, size: int) -> None:
        """Something else lands on the device (an update download): it takes space, it is not ours to refuse."""
        path = self.folder / name
        with open(path, "wb") as fh:
            fh.truncate(size)  # sparse on disk; counted at full size, as the quota counts it
        self._other[name] = size
        self._peak()

    def remove_file(self, name: str) -> None:
        """The neighbour's file goes away (the update was installed)."""
        if self._other.pop(name, None) is not None:
            (self.folder / name).unlink(missing_ok=True)

    def _fits(self, n: int) -> bool:
        return self.used_bytes() + n <= self.capacity_bytes

    def _peak(self) -> None:
        used = self.used_bytes()
        if used > self.figures.peak_used_bytes:
            self.figures.peak_used_bytes = used

    # -- orders -----------------------------------------------------------------------------------
    def record(
        self,
        *,
        outcome: str,
        kind: str,
        when: str,
        amount: int,
        currency: str,
        masked_pan: str,
        card_token: str,
        brand: str,
        card_type: str,
        entry_mode: str,
        merchant_id: str,
        terminal_id: str,
        batch: int,
        operator_id: str,
        customer_ref: str | None,
        order_id: str,
        rrn: str | None,
        auth_code: str | None,
        response_code: str | None,
        duplicate: bool = False,
    ) -> bool:
        """One customer request after its authorization; returns False when the order was lost.

        ``outcome`` is the authorization's result (``approved``, ``offline_approved``,
        ``declined``, ``not_completed``). Only orders whose payment went through are written
        (declines are not orders). ``duplicate``: a repeated submission, charged again.
        """
        f = self.figures
        if kind == "sale":
            f.sales_attempted += 1
        if outcome == "declined":
            if kind == "sale":
                f.declined += 1
            return True
        if outcome == "not_completed":
            if kind == "sale":
                f.not_completed += 1
            return True
        if kind == "sale":
            if outcome == "offline_approved":
                f.offline_approved += 1
            f.approved += 1
            if duplicate:
                f.duplicate_charges += 1
        sign = -1 if kind in ("refund", "void") else 1
        self._true_net += sign * amount
        self._next_invoice += 1
        row = {
            "orderId": order_id,
            "invoiceNumber": f"{self._next_invoice:06d}",
            "traceNumber": f"{self._next_invoice % 1_000_000:06d}",
            "retrievalReferenceNumber": rrn,
            "authorizationCode": auth_code,
            "localTime": when,
            "amount": amount,
            "currency": currency,
            "kind": kind,
            "status": outcome,
            "responseCode": response_code,
            "entryMode": entry_mode,
            "cardToken": card_token,
            "maskedPan": masked_pan,
            "brand": brand,
            "cardType": card_type,
            "merchantId": merchant_id,
            "terminalId": terminal_id,
            "batchNumber": f"{batch:06d}",
            "operatorId": operator_id,
            "customerReference": customer_ref,
            "fee": None,
        }
        data = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        if not self._fits(len(data)):
            f.lost += 1
            f.lost_amount += amount
            if f.first_lost_at is None:
                f.first_lost_at = when
            if f.full_at is None:
                f.full_at = when
            return False
        os.write(self._orders, data)
        self._order_bytes += len(data)
        f.orders_written += 1
        if kind == "sale":
            self._day_sales[0] += 1
            self._day_sales[1] += amount
        elif kind == "refund":
            self._day_refunds[0] += 1
            self._day_refunds[1] += amount
        elif kind == "void":
            self._day_sales[0] -= 1
            self._day_sales[1] -= amount
        self._peak()
        return True

    def close_day(self, business_date: str, when: str) -> bool:
        """The session's closing report (Z report); False when it could not be written."""
        f = self.figures
        app_net = self._day_sales[1] - self._day_refunds[1]
        row = {
            "type": "session_closing",
            "businessDate": business_date,
            "closedAt": when,
            "salesCount": self._day_sales[0],
            "salesAmount": self._day_sales[1],
            "refundsCount": self._day_refunds[0],
            "refundsAmount": self._day_refunds[1],
            "netAmount": app_net,
        }
        data = (json.dumps(row, separators=(",", ":")) + "\n").encode("utf-8")
        balanced = app_net == self._true_net
        entry = {"business_date": business_date, "net_amount_app": app_net, "net_amount_cards": self._true_net}
        self._day_sales = [0, 0]
        self._day_refunds = [0, 0]
        self._true_net = 0
        if not self._fits(len(data)):
            f.settlement_failures += 1
            if f.full_at is None:
                f.full_at = when
            f.settlement_rows.append({**entry, "ok": False, "balanced": balanced, "reason": "quota exceeded"})
            return False
        os.write(self._sessions, data)
        self._session_bytes += len(data)
        f.settlements += 1
        if not balanced:
            f.unbalanced_settlements += 1
        f.settlement_rows.append({**entry, "ok": True, "balanced": balanced, "reason": ""})
        self._peak()
        return True

    def finish(self) -> NaiveFigures:
        """Close the files and fill in the measured figures."""
        os.close(self._orders)
        os.close(self._sessions)
        f = self.figures
        f.used_bytes = self.used_bytes()
        size = (self.folder / ORDERS_FILE).stat().st_size
        f.bytes_per_transaction = round(size / f.orders_written, 1) if f.orders_written else 0.0
        return f
