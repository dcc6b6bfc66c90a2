"""Drive the host's message processor in-process (no sockets) for settlement and payout tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from tests.host.conftest import MERCHANT, SECRET, TERMINAL, VISA, card, next_stan

from tillvault.domain import iso8583 as iso
from tillvault.host.ledger import HostLedger
from tillvault.host.payout import check_payables, run_payout
from tillvault.host.processing import MessageProcessor

UNIONPAY_DEBIT = "6212345678901235"  # UnionPay: no Luhn needed
MASTERCARD = "5555555555554444"


class Driver:
    """A host ledger and processor whose business day is ``self.today`` (settable)."""

    def __init__(self, directory: Path, today: date = date(2025, 6, 13)) -> None:
        self.ledger = HostLedger(directory, secret=SECRET)
        self.today = today
        self.processor = MessageProcessor(self.ledger, today=lambda: self.today)

    def close(self) -> None:
        """Close the ledger."""
        self.ledger.close()

    def send(self, request: dict[str, str]) -> dict[str, str]:
        """One request through the processor; its response."""
        return self.processor.handle(request)

    def sale(self, amount: int, **overrides: Any) -> dict[str, str]:
        """A 0200 sale (default card VISA, TERMINAL, MERCHANT, batch 1)."""
        return self.send(iso.sale_request(**card(amount=amount, **overrides)))

    def refund(self, amount: int, *, original_rrn: str | None = None, **overrides: Any) -> dict[str, str]:
        """A 0200 refund (of the sale with ``original_rrn``, when given)."""
        return self.send(iso.refund_request(original_rrn=original_rrn, **card(amount=amount, **overrides)))

    def advice(self, amount: int, **overrides: Any) -> dict[str, str]:
        """A 0220 advice of an offline sale."""
        args = card(amount=amount, **overrides)
        return self.send(iso.advice_request(offline_auth_code="Y1A2B3", **args))

    def reverse(self, request: dict[str, str]) -> dict[str, str]:
        """A 0400 reversal of ``request``."""
        return self.send(iso.reversal_request(request))

    def settle(
        self,
        batch: int = 1,
        *,
        terminal: str = TERMINAL,
        merchant: str = MERCHANT,
        currency: str = "156",
        totals: iso.BatchTotals | None = None,
    ) -> dict[str, str]:
        """A 0500 for ``batch`` carrying ``totals`` (default: the host's own, so it balances)."""
        theirs = totals or self.ledger.batch_totals(iso.terminal_id_field(terminal), batch, currency)
        request = iso.settlement_request(
            totals=theirs,
            stan=next_stan(),
            terminal_id=terminal,
            merchant_id=merchant,
            batch=batch,
            currency=currency,
        )
        return self.send(request)

    def payout(self, day: date | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run the payout of ``day`` (default: today)."""
        return run_payout(self.ledger, day or self.today, today=max(self.today, day or self.today), **kwargs)

    def assert_books_balance(self) -> None:
        """Double entry holds and payables/deposits match the log."""
        check = self.ledger.check_balanced()
        assert check["ok"], check["problems"]
        assert check_payables(self.ledger) == []


__all__ = ["MASTERCARD", "UNIONPAY_DEBIT", "VISA", "Driver"]
