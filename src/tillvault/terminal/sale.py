"""The sale flow (S4, with its flaw fixed): checks, limits, admission, intent, authorization, outcome.

card checks → merchant (from the QR given at init) → limits → **space admission** →
intent journalled (fsync) → authorization with the acquirer host (ISO 8583) → outcome
journalled → receipt. The intent is durable before any byte leaves the terminal, and a
sale that cannot be given space is refused before authorization.

What the host's silence means:
- ``HostUnavailable`` (nothing was sent): approve offline up to the floor limit and the
  offline caps, queueing a 0220 advice; above them, decline with the reason.
- ``HostTimeout`` / ``HostProtocolError`` (sent, outcome unknown): the sale is
  ``not_completed`` and a 0400 reversal is queued in the outbox, in the same write.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tillvault.domain import iso8583 as iso
from tillvault.domain.cards import card_token, check_card, normalize_pan, redact_pans, require_valid_card
from tillvault.domain.limits import check_limits
from tillvault.domain.money import currency_info, format_amount
from tillvault.errors import (
    CardRejected,
    HostProtocolError,
    HostTimeout,
    HostUnavailable,
    InvalidInput,
    LimitExceeded,
    MessageError,
    StorageFull,
    TillVaultError,
    TransactionNotFound,
)
from tillvault.store.archive import ArchiveUnavailable
from tillvault.store.journal import WriteContext

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

#: Hex characters kept of a card's keyed token (16 bytes).
TOKEN_HEX = 32

ENTRY_MODES = {"chip": "051", "contactless": "071", "swipe": "021", "keyed": "012", "qr": "031", "fallback": "801"}


@dataclass
class TxResult:
    """What a sale, refund or void returns (the ``tillvault sale --json`` contract)."""

    status: str
    reason: str
    invoice: int | None = None
    masked_pan: str | None = None
    amount: int = 0
    currency: str = ""
    brand: str | None = None
    kind: str = "sale"
    stan: int | None = None
    batch: int | None = None
    rrn: str | None = None
    auth_code: str | None = None
    response_code: str | None = None
    receipt: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the money moved (approved online or offline)."""
        return self.status in ("approved", "offline_approved")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``status``, ``invoice`` (6 digits), ``reason``, ``masked_pan``..."""
        out = {
            "status": self.status,
            "invoice": None if self.invoice is None else f"{self.invoice:06d}",
            "reason": self.reason,
            "masked_pan": self.masked_pan,
            "amount": self.amount,
            "amount_text": format_amount(self.amount, self.currency) if self.currency else None,
            "currency": self.currency,
            "brand": self.brand,
            "kind": self.kind,
            "stan": self.stan,
            "batch": self.batch,
            "rrn": self.rrn,
            "auth_code": self.auth_code,
            "response_code": self.response_code,
            "receipt": self.receipt,
        }
        out.update(self.extra)
        return out


def _result_from_row(tx: dict[str, Any], reason: str, receipt: str = "") -> TxResult:
    return TxResult(
        status=tx["status"],
        reason=reason or (tx.get("reason") or ""),
        invoice=tx["invoice"],
        masked_pan=tx.get("masked_pan"),
        amount=tx["amount"],
        currency=tx["currency"],
        brand=tx.get("brand"),
        kind=tx["kind"],
        stan=tx.get("stan"),
        batch=tx.get("batch"),
        rrn=tx.get("rrn"),
        auth_code=tx.get("auth_code"),
        response_code=tx.get("response_code"),
        receipt=receipt,
    )


def normalize_phone(phone: str) -> str:
    """Digits of a phone number without the China country code, so near-duplicates merge (S2.2).

    :raises InvalidInput: fewer than 5 digits.
    """
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) < 5:
        raise InvalidInput(f"customer phone {phone!r} has too few digits")
    return digits


class SaleFlow:
    """Runs card transactions for one terminal."""

    def __init__(self, terminal: Terminal) -> None:
        self.t = terminal

    # -- public ------------------------------------------------------------------------------
    def sale(
        self,
        *,
        amount: int,
        pan: str,
        expiry: str | None,
        entry_mode: str = "chip",
        operator_id: str | None = None,
        customer_phone: str | None = None,
        customer_name: str | None = None,
        idem_key: str | None = None,
    ) -> TxResult:
        """Run a sale of ``amount`` minor units in the merchant's currency. Never raises for a
        refusal or decline: the result says what happened and why."""
        return self._card_transaction(
            "sale",
            amount=amount,
            pan=pan,
            expiry=expiry,
            entry_mode=entry_mode,
            operator_id=operator_id,
            customer_phone=customer_phone,
            customer_name=customer_name,
            idem_key=idem_key,
        )

    def refund(
        self,
        *,
        amount: int,
        pan: str,
        expiry: str | None,
        original_invoice: int | None = None,
        entry_mode: str = "chip",
        operator_id: str | None = None,
        idem_key: str | None = None,
    ) -> TxResult:
        """Refund ``amount`` minor units to the card (optionally against an earlier sale)."""
        return self._card_transaction(
            "refund",
            amount=amount,
            pan=pan,
            expiry=expiry,
            entry_mode=entry_mode,
            operator_id=operator_id,
            original_invoice=original_invoice,
            idem_key=idem_key,
        )

    def void(self, invoice: int, *, operator_id: str | None = None, idem_key: str | None = None) -> TxResult:
        """Void an approved sale of the open batch (the card need not be presented again).

        :raises TransactionNotFound: no such invoice.
        """
        t = self.t
        check_request_ids(operator_id, idem_key)
        if idem_key is not None and (existing := t.find_by_idem_key(idem_key)) is not None:
            self._same_request(existing, idem_key, kind="void", original=invoice)
            return _result_from_row(existing, "repeated request: the original result is returned")
        sale = t.find_transaction(invoice)
        if isinstance(sale.get("extra"), str):
            sale = {**sale, "extra": json.loads(sale["extra"])}
        cur = sale["currency"]
        base = TxResult(
            status="refused",
            reason="",
            invoice=None,
            masked_pan=sale["masked_pan"],
            amount=sale["amount"],
            currency=cur,
            brand=sale["brand"],
            kind="void",
        )
        if sale["kind"] != "sale" or sale["status"] != "approved":
            base.reason = (
                f"invoice {invoice:06d} is a {sale['kind']} with status {sale['status']}: only an "
                "approved online sale can be voided"
            )
            return base
        if sale["batch"] != t.records.current_batch():
            base.reason = f"invoice {invoice:06d} is in settled batch {sale['batch']}: refund it instead"
            return base
        refunded = t.refunded_amount(invoice)
        if refunded:
            base.reason = (
                f"invoice {invoice:06d} has {format_amount(refunded, cur)} refunded already: a void would give "
                f"that back twice; refund what remains ({format_amount(sale['amount'] - refunded, cur)}) instead"
            )
            return base
        pan = self._pan_of(sale)
        if pan is None:
            base.reason = f"invoice {invoice:06d} no longer holds the card (settled): refund it instead"
            return base
        try:
            with t.admit_sale():
                when = t.now()
                tx = t.records.record_intent(
                    kind="void",
                    amount=sale["amount"],
                    currency=cur,
                    business_date=t.business_date(),
                    idem_key=idem_key,
                    ts_ms=t.now_ms(),
                    card_token=sale["card_token"],
                    masked_pan=sale["masked_pan"],
                    brand=sale["brand"],
                    card_type=sale["card_type"],
                    entry_mode=sale["entry_mode"],
                    merchant_id=t.merchant.merchant_id,
                    operator_id=operator_id,
                    original_invoice=invoice,
                    extra={"when": when.isoformat()},
                )
                request = iso.void_request(
                    original_rrn=sale["rrn"],
                    original_auth_code=sale["auth_code"],
                    when=when,
                    **self._card_args(pan, None, sale["amount"], tx["stan"], tx["batch"], invoice),
                )
                return self._authorize_safely(tx, request, pan=pan, related=(invoice, "voided"))
        except StorageFull as exc:
            base.reason = str(exc)
            return base

    # -- the flow ----------------------------------------------------------------------------
    def _card_transaction(
        self,
        kind: str,
        *,
        amount: int,
        pan: str,
        expiry: str | None,
        entry_mode: str,
        operator_id: str | None,
        customer_phone: str | None = None,
        customer_name: str | None = None,
        original_invoice: int | None = None,
        idem_key: str | None = None,
    ) -> TxResult:
        t = self.t
        cur = t.merchant.currency
        check_request_ids(operator_id, idem_key)
        if idem_key is not None and (existing := t.find_by_idem_key(idem_key)) is not None:
            self._same_request(existing, idem_key, kind=kind, amount=amount, pan=pan, original=original_invoice)
            return _result_from_row(existing, "repeated request: the original result is returned")
        result = TxResult(status="refused", reason="", amount=amount, currency=cur, kind=kind)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise InvalidInput(f"amount must be a positive integer of minor units, got {amount!r}")
        if entry_mode not in ENTRY_MODES:
            raise InvalidInput(f"entry mode {entry_mode!r} is not one of {', '.join(ENTRY_MODES)}")
        # 1. Card checks (brand by IIN, length, Luhn except UnionPay, expiry).
        if kind == "sale" and not expiry and entry_mode != "qr":
            seen = check_card(pan)
            result.masked_pan, result.brand = seen.masked or None, seen.brand
            result.reason = f"card expiry (YYMM) is required for a {entry_mode} sale: it is one of the card checks"
            result.extra["errors"] = [result.reason]
            return result
        try:
            card = require_valid_card(pan, expiry, today=t.now().date())
        except CardRejected as exc:
            result.reason = str(exc)
            result.extra["errors"] = exc.errors
            result.masked_pan, result.brand = exc.masked, exc.brand  # when the PAN could be read
            return result
        result.masked_pan, result.brand = card.masked, card.brand
        pan = normalize_pan(pan)
        # 16 bytes of the keyed hash (WORKLOAD.md's minimum): unique enough for a shop's cards, and
        # half the bytes of every sealed record that a full SHA-256 would cost.
        token = card_token(pan, t.keyring.token_key())[:TOKEN_HEX]
        # 2. Limits (sales only; a refund is bounded by its original).
        date = t.business_date()
        if kind == "sale":
            card_total, card_count = t.day_total(date, card_token=token)
            terminal_total, _ = t.day_total(date)
            try:
                check_limits(t.limits, amount, card_total, terminal_total, card_count, currency=cur)
            except LimitExceeded as exc:
                result.reason = str(exc)
                result.extra["limit"] = exc.limit
                return result
        elif original_invoice is not None:
            refusal = self._refund_refusal(original_invoice, amount, token)
            if refusal:
                result.reason = refusal
                return result
        elif amount > t.limits.max_per_transaction:
            # A refund without its original has no sale to bound it: the per-transaction limit does.
            result.reason = (
                f"refund of {format_amount(amount, cur)} {cur} without an original invoice is above the "
                f"per-transaction limit {format_amount(t.limits.max_per_transaction, cur)} {cur}; refund "
                "against the original sale (--original-invoice)"
            )
            result.extra["limit"] = "max_per_transaction"
            return result
        elif (done := t.unreferenced_refunds(date, token)) + amount > t.limits.max_per_card_per_day:
            # ... and many refunds just under it by the per-card daily limit (the whole day, settled or not).
            result.reason = (
                f"refunds without an original invoice to this card today would total "
                f"{format_amount(done + amount, cur)} {cur}, above the per-card daily limit "
                f"{format_amount(t.limits.max_per_card_per_day, cur)} {cur}; refund against the original sales"
            )
            result.extra["limit"] = "max_per_card_per_day"
            return result
        # 3. Space admission, before anything is written or sent.
        try:
            with t.admit_sale():
                # 4. Intent, durable before the host hears of it.
                when = t.now()
                date = when.date().isoformat()  # the STAN day and field 13 come from the same instant
                customer_ref = self._customer_ref(customer_phone) if customer_phone else None
                extra: dict[str, Any] = {"when": when.isoformat(), "pan_enc": self._seal_pan(pan)}
                tx = t.records.record_intent(
                    kind=kind,
                    amount=amount,
                    currency=cur,
                    business_date=date,
                    idem_key=idem_key,
                    ts_ms=int(when.timestamp() * 1000),
                    card_token=token,
                    masked_pan=card.masked,
                    brand=card.brand,
                    entry_mode=entry_mode,
                    merchant_id=t.merchant.merchant_id,
                    operator_id=operator_id,
                    customer_ref=customer_ref,
                    original_invoice=original_invoice,
                    extra=extra,
                )
                try:
                    args = self._card_args(
                        pan,
                        card.expiry if expiry else None,
                        amount,
                        tx["stan"],
                        tx["batch"],
                        tx["invoice"],
                        entry_mode,
                    )
                    if kind == "sale":
                        request = iso.sale_request(when=when, **args)
                    else:
                        original_rrn = t.find_transaction(original_invoice)["rrn"] if original_invoice else None
                        request = iso.refund_request(when=when, original_rrn=original_rrn, **args)
                except MessageError as exc:  # nothing was sent: resolve the intent, never leave it pending
                    row = t.records.record_outcome(
                        tx["invoice"],
                        status="declined",
                        ts_ms=t.now_ms(),
                        response_code="30",
                        reason=f"the request could not be built ({exc}); nothing was sent",
                        extra=_strip_pan(tx["extra"]),
                    )
                    return self._finish(row)
                customer = (customer_phone, customer_name) if customer_phone else None
                return self._authorize_safely(
                    tx, request, pan=pan, expiry=card.expiry if expiry else None, customer=customer
                )
        except StorageFull as exc:
            result.reason = str(exc)
            result.extra["reason_zh"] = exc.message_zh
            return result

    def _authorize_safely(self, tx: dict[str, Any], request: dict[str, str], **kwargs: Any) -> TxResult:
        """:meth:`_authorize`, but a failure to journal the outcome after the request left is never a
        "refusal": the intent stays pending and is reversed by recovery, and the merchant is told so."""
        try:
            return self._authorize(tx, request, **kwargs)
        except TillVaultError as exc:
            return TxResult(
                status="not_completed",
                reason=(
                    f"the host's answer could not be recorded ({exc}); the sale will be reversed and the "
                    "card is not charged: do not repeat it before the reversal"
                ),
                invoice=tx["invoice"],
                masked_pan=tx.get("masked_pan"),
                amount=tx["amount"],
                currency=tx["currency"],
                brand=tx.get("brand"),
                kind=tx["kind"],
                stan=tx.get("stan"),
                batch=tx.get("batch"),
            )

    def _authorize(
        self,
        tx: dict[str, Any],
        request: dict[str, str],
        *,
        pan: str,
        expiry: str | None = None,
        related: tuple[int, str] | None = None,
        customer: tuple[str, str | None] | None = None,
    ) -> TxResult:
        """Send the request; journal the outcome (with outbox entries) in one write."""
        t = self.t
        invoice = tx["invoice"]
        try:
            reply = t.host_client().exchange(request)
        except HostUnavailable as exc:
            return self._offline(tx, request, pan, expiry, str(exc))
        except (HostTimeout, HostProtocolError) as exc:
            reversal = iso.reversal_request(_without_pan(request), when=t.now())
            row = t.records.record_outcome(
                invoice,
                status="not_completed",
                ts_ms=t.now_ms(),
                reason=f"no valid reply from the host ({exc}); a reversal is queued, the card is not charged",
                outbox=[self._outbox_entry("reversal", invoice, reversal)],
                extra=_strip_pan(tx["extra"]),
            )
            return self._finish(row)
        code = reply.get("39", "")
        approved = iso.is_approved(reply)
        extra = tx["extra"] if tx["kind"] == "sale" and approved else _strip_pan(tx["extra"])

        def side_effects(ctx: WriteContext) -> None:
            if approved and related is not None:
                t.records.set_status(ctx, related[0], related[1])
            if approved and customer is not None and tx["customer_ref"]:
                self._upsert_customer(ctx, tx["customer_ref"], customer, tx["amount"])

        row = t.records.record_outcome(
            invoice,
            status="approved" if approved else "declined",
            ts_ms=t.now_ms(),
            rrn=reply.get("37"),
            auth_code=reply.get("38"),
            response_code=code,
            reason="approved" if approved else f"declined by the issuer: {iso.response_text(code)}{_host_text(reply)}",
            extra=extra,
            also=side_effects,
        )
        return self._finish(row)

    def _offline(self, tx: dict[str, Any], request: dict[str, str], pan: str, expiry: str | None, why: str) -> TxResult:
        t = self.t
        invoice = tx["invoice"]
        policy = t.offline
        count, total = t.records.offline_exposure()
        refusal = ""
        if tx["kind"] != "sale":
            refusal = f"the host is unreachable ({why}) and a {tx['kind']} cannot be approved offline"
        elif tx["amount"] > policy.floor_limit:
            refusal = (
                f"the host is unreachable and {format_amount(tx['amount'], tx['currency'])} is above the "
                f"offline floor limit of {format_amount(policy.floor_limit, tx['currency'])}"
            )
        elif count + 1 > policy.max_count:
            refusal = f"the host is unreachable and {count} offline sales already await upload (cap {policy.max_count})"
        elif total + tx["amount"] > policy.max_amount:
            refusal = (
                f"the host is unreachable and offline sales would total "
                f"{format_amount(total + tx['amount'], tx['currency'])}, above the offline cap of "
                f"{format_amount(policy.max_amount, tx['currency'])}"
            )
        if refusal:
            row = t.records.record_outcome(
                invoice,
                status="declined",
                ts_ms=t.now_ms(),
                reason=refusal,
                response_code="91",
                extra=_strip_pan(tx["extra"]),
            )
            return self._finish(row)
        auth_code = f"Y1{invoice % 10000:04d}"  # EMV's "offline approved" response, numbered
        when = datetime.fromisoformat(tx["extra"]["when"])
        advice = iso.advice_request(
            offline_auth_code=auth_code,
            when=when,
            **self._card_args(pan, expiry, tx["amount"], tx["stan"], tx["batch"], invoice, tx["entry_mode"]),
        )
        row = t.records.record_outcome(
            invoice,
            status="offline_approved",
            ts_ms=t.now_ms(),
            auth_code=auth_code,
            response_code="Y1",
            reason=f"approved offline (host unreachable: {why}); the advice is queued for upload",
            outbox=[self._outbox_entry("advice", invoice, advice)],
            extra=tx["extra"],
        )
        return self._finish(row)

    def _finish(self, row: dict[str, Any]) -> TxResult:
        # Housekeeping after the outcome is durable: it must never turn a result into an error.
        with contextlib.suppress(TillVaultError, sqlite3.Error, OSError):
            self.t.maintain()
        return _result_from_row(row, "", receipt=self.receipt(row))

    # -- helpers -----------------------------------------------------------------------------
    def _same_request(
        self,
        existing: dict[str, Any],
        idem_key: str,
        *,
        kind: str,
        amount: int | None = None,
        pan: str | None = None,
        original: int | None = None,
    ) -> None:
        """A retry must be the same request: a key reused for another one is refused, never answered
        with the first transaction's result as if it were this one's.

        :raises InvalidInput: naming what differs.
        """
        cur = existing["currency"]
        differs = []
        if existing["kind"] != kind:
            differs.append(f"kind ({kind})")
        if amount is not None and existing["amount"] != amount:
            shown = format_amount(amount, cur) if isinstance(amount, int) else repr(amount)
            differs.append(f"amount ({shown})")
        if pan is not None and existing.get("card_token"):
            try:
                token = card_token(pan, self.t.keyring.token_key())[:TOKEN_HEX]
            except (CardRejected, InvalidInput):
                token = None
            if token is None or not hmac.compare_digest(token, existing["card_token"]):
                differs.append("card")
        if (original is not None or kind != "sale") and existing.get("original_invoice") != original:
            differs.append(f"original invoice ({'none' if original is None else f'{original:06d}'})")
        if differs:
            raise InvalidInput(
                f"idempotency key {idem_key!r} was used for a {existing['kind']} of "
                f"{format_amount(existing['amount'], cur)} {cur} (invoice {existing['invoice']:06d}); this request "
                f"differs in {', '.join(differs)}: use a new key for a new transaction"
            )

    def _card_args(
        self, pan: str, expiry: str | None, amount: int, stan: int, batch: int, invoice: int, entry_mode: str = "chip"
    ) -> dict[str, Any]:
        t = self.t
        return {
            "pan": pan,
            "expiry": expiry,
            "amount": amount,
            "currency": currency_info(t.merchant.currency).numeric,
            "stan": stan,
            "terminal_id": t.config.terminal_id,
            "merchant_id": t.merchant.merchant_id,
            "batch": batch % 1_000_000,
            "invoice": invoice % 1_000_000,
            "pos_entry_mode": ENTRY_MODES.get(entry_mode, "012"),
        }

    def _seal_pan(self, pan: str) -> str:
        """The PAN encrypted under the key ring's KEK (kept only while the acquirer may need it)."""
        blob = self.t.keyring.encrypt_field(re.sub(r"\D", "", pan).encode("ascii"), context=b"pan")
        return base64.b64encode(blob).decode("ascii")

    def _pan_of(self, tx: dict[str, Any]) -> str | None:
        sealed = (tx.get("extra") or {}).get("pan_enc")
        if not sealed:
            return None
        return self.t.keyring.decrypt_field(base64.b64decode(sealed), context=b"pan").decode("ascii")

    def _outbox_entry(self, kind: str, invoice: int, message: dict[str, str]) -> dict[str, Any]:
        payload = self.t.keyring.encrypt_field(json.dumps(message).encode("utf-8"), context=b"outbox")
        return {"kind": kind, "invoice": invoice, "payload": payload, "idem_key": f"{kind}:{invoice}"}

    def _refund_refusal(self, original_invoice: int, amount: int, token: str) -> str:
        try:
            original = self.t.find_transaction(original_invoice)
        except TransactionNotFound as exc:
            return str(exc)
        if original["kind"] not in ("sale", "offline_sale") or original["status"] not in (
            "approved",
            "offline_approved",
        ):
            return f"invoice {original_invoice:06d} is not an approved sale ({original['kind']}, {original['status']})"
        if original["card_token"] != token:
            return f"the card presented is not the card of invoice {original_invoice:06d}"
        try:
            refunded = self.t.refunded_amount(original_invoice, batch=original["batch"])
        except ArchiveUnavailable as exc:  # earlier refunds may be there: never guess they are not
            return (
                f"the refunds already made against invoice {original_invoice:06d} cannot all be read ({exc}); "
                "connect the archive and try again"
            )
        if refunded + amount > original["amount"]:
            cur = original["currency"]
            return (
                f"refund of {format_amount(amount, cur)} exceeds what remains of invoice {original_invoice:06d} "
                f"({format_amount(original['amount'] - refunded, cur)})"
            )
        return ""

    def _customer_ref(self, phone: str) -> str:
        return "C" + self.t.keyring.token(normalize_phone(phone), domain="phone")[:15]

    def _upsert_customer(self, ctx: WriteContext, ref: str, customer: tuple[str, str | None], amount: int) -> None:
        _, name = customer
        name_enc = self.t.keyring.encrypt_field(name.encode("utf-8"), context=b"customer") if name else None
        ctx.conn.execute(
            "INSERT INTO customers (customer_ref, name_enc, visits, total_amount, first_ms, last_ms) "
            "VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT(customer_ref) DO UPDATE SET visits = visits + 1, "
            "total_amount = total_amount + excluded.total_amount, last_ms = excluded.last_ms, "
            "name_enc = coalesce(excluded.name_enc, name_enc)",
            (ref, name_enc, amount, ctx.ts_ms, ctx.ts_ms),
        )

    def receipt(self, tx: dict[str, Any]) -> str:
        """The customer receipt as text (masked PAN only)."""
        m = self.t.merchant
        when = datetime.fromtimestamp(tx["created_ms"] / 1000).strftime("%Y-%m-%d %H:%M:%S")
        label = {
            "approved": "APPROVED",
            "offline_approved": "APPROVED (OFFLINE)",
            "declined": "DECLINED",
            "not_completed": "NOT COMPLETED - CARD NOT CHARGED",
        }.get(tx["status"], tx["status"].upper())
        lines = [
            m.name,
            m.city,
            f"MID {m.merchant_id}  TID {tx['terminal_id']}",
            "-" * 32,
            f"{tx['kind'].upper():<10}{format_amount(tx['amount'], tx['currency']):>18} {tx['currency']}",
            f"CARD {tx['masked_pan'] or ''} {(tx['brand'] or '').upper()}",
            f"DATE {when}",
            f"INVOICE {tx['invoice']:06d}  BATCH {tx['batch']:06d}  STAN {tx['stan']:06d}",
            f"RRN {tx['rrn'] or '-'}  AUTH {tx['auth_code'] or '-'}",
            label,
        ]
        if tx.get("reason") and tx["status"] not in ("approved", "offline_approved"):
            lines.append(_shorten(tx["reason"], 120))
        return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters (an ellipsis marks the cut)."""
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0].rstrip(" ,;:(")
    return cut + "…"


def _without_pan(request: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in request.items() if k not in ("2", "14")}


def _host_text(reply: dict[str, str]) -> str:
    """The host's own words for a decline (field 63, "terminal not activated: ..."), as a suffix:
    printable, at most 200 characters, any card number masked; "" when there are none."""
    text = "".join(c for c in reply.get("63", "") if c.isprintable()).strip()
    return f" ({redact_pans(text)[:200]})" if text else ""  # masked before it is cut: no half card left


#: An idempotency key: the caller's order or request id, kept with the transaction.
MAX_IDEM_KEY_CHARS = 128


def check_request_ids(operator_id: str | None, idem_key: str | None) -> None:
    """Refuse an operator id or idempotency key that cannot be kept as it is: malformed, too
    long, or holding a card number (both are stored and listed in clear; a card swiped into
    the wrong field must not be).

    :raises InvalidInput: naming the field (a card number only masked).
    """
    from tillvault.terminal.operators import check_operator_id

    if operator_id is not None:
        check_operator_id(operator_id)
    if idem_key is None:
        return
    if not isinstance(idem_key, str) or not 1 <= len(idem_key) <= MAX_IDEM_KEY_CHARS or not idem_key.isprintable():
        raise InvalidInput(f"idempotency key must be 1-{MAX_IDEM_KEY_CHARS} printable characters")
    shown = redact_pans(idem_key)
    if shown != idem_key:
        raise InvalidInput(
            f"idempotency key {shown!r} holds a card number: use the order or request id, never card data"
        )


def _strip_pan(extra: dict[str, Any] | None) -> dict[str, Any] | None:
    if not extra:
        return extra
    return {k: v for k, v in extra.items() if k != "pan_enc"}
