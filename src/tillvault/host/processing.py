"""What the reference host decides for each request: one decoded request in, one response out.

The acquirer and the issuer in one place. Every decision and its ledger effect happen in one
SQLite transaction, so a request is applied exactly once or not at all. Decisions, in order:

- 0800: sign-on 001, sign-off 002, echo 301 → "00"; another code → "30".
- 0200 (sale 000000 / refund 200000 / void 020000) and 0220 (advice): a request already in the
  log under (terminal id, local date, STAN) gets its original response again if its content is
  the same (nothing applied twice), "94" if not. Then, for 0200: "13" zero amount, "14" bad card
  number (length; Luhn except UnionPay), "54" expired or invalid expiry, "61" over the
  per-transaction limit, "62" blocked card, "51" sale over the available credit; a void "12"
  when its sale is unknown, not live, another card or already settled, "13" when the amount
  differs. An advice is always recorded and answered "00" unless malformed: the terminal has
  already approved it.
- 0400/0420: find the original by (terminal id, local date, STAN from field 90); cancel its
  effect if it stands. Always "00", even for an original never seen (as real hosts do, or the
  terminal would retry forever): a tombstone is recorded so that the original, if it arrives
  late, is answered "12" and never applied. A reversal of an approved void restores the sale.
- 0500: the terminal's totals (74-77, 86-89) against the host's for that terminal, batch and
  currency: "00" balanced, "95" not. The 0510 carries the host's totals. A balanced 0500, and
  any 960000 (after upload the terminal closes its batch either way), settles the batch on the
  host's figures (:mod:`.settlement`: fees priced, business date in field 15). A settled
  transaction is final: its reversal, or an upload changing it, is answered "12".
- 0320: upsert the uploaded transaction so its effect matches the terminal's (idempotent).
- Activation (:mod:`.merchants`): a sale below the merchant's activation minimum before the
  merchant is activated is declined "13".
- A required field missing (``REQUIRED_FIELDS``) → "30", nothing recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import date

from tillvault.domain import iso8583 as iso
from tillvault.errors import MessageError
from tillvault.host.cardcheck import expiry_problem, pan_problem
from tillvault.host.ledger import LIVE_STATUSES, AuthRecord, HostLedger
from tillvault.host.ledger_schema import request_year
from tillvault.host.merchants import UNCHANGED, Unchanged, activation_minimum, activation_refusal, note_sale
from tillvault.host.settlement import settle_batch

__all__ = ["MessageProcessor"]

Message = dict[str, str]
#: ``json.dumps(obj, sort_keys=True)``, with its encoder built once instead of at every call.
_SORTED_JSON = json.JSONEncoder(sort_keys=True).encode
#: A card as the ledger keeps it: (token, masked PAN), both None for a request without a PAN.
Card = tuple[str | None, str | None]


class MessageProcessor:
    """Turns requests into responses against ``ledger``.

    ``max_per_transaction`` (minor units, None: no limit) bounds sales and refunds ("61");
    ``today`` supplies the date for expiry checks (tests pin it).
    """

    def __init__(
        self,
        ledger: HostLedger,
        *,
        max_per_transaction: int | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.ledger = ledger
        self.max_per_transaction = max_per_transaction
        self.today = today

    def handle(self, request: Mapping[str, str]) -> Message:
        """The response to a decoded request (any request MTI of the spec).

        :raises MessageError: ``request`` is not a request MTI (the caller closes the link).
        """
        mti = request.get("t", "")
        if mti not in iso.REQUEST_MTIS:
            raise MessageError(f"{mti!r} is not a request this host answers")
        if iso.missing_fields(request):
            missing = ", ".join(iso.missing_fields(request))
            return self._answer(request, "30", message=f"format error: missing fields {missing}")
        try:
            if mti == iso.MTI_NETWORK:
                return self._network(request)
            if mti == iso.MTI_FINANCIAL:
                return self._financial(request)
            if mti == iso.MTI_ADVICE:
                return self._advice(request)
            if mti in (iso.MTI_REVERSAL, iso.MTI_REVERSAL_REPEAT):
                return self._reversal(request)
            if mti == iso.MTI_SETTLEMENT:
                return self._settlement(request)
            return self._upload(request)
        except MessageError as exc:
            return self._answer(request, "30", message=f"format error: {exc}")

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _answer(request: Mapping[str, str], code: str, *, message: str | None = None, **fields: str | None) -> Message:
        return iso.response_for(
            request, response_code=code, message=message or iso.RESPONSE_CODES.get(code, ""), **fields
        )

    def _fingerprint(self, request: Mapping[str, str], card: Card | None = None) -> str:
        """A digest of the request's content, with the PAN as its token and field 7/128 left out.

        ``card``: the request's :meth:`_card`, when already computed.
        """
        content = {k: v for k, v in request.items() if k not in ("7", "128")}
        if "2" in content:
            content["2"] = card[0] if card is not None and card[0] is not None else self.ledger.token(content["2"])
        return hashlib.sha256(_SORTED_JSON(content).encode()).hexdigest()

    def _card(self, request: Mapping[str, str]) -> Card:
        pan = request.get("2")
        return (self.ledger.token(pan), iso.mask_pan(pan)) if pan else (None, None)

    def _year(self, request: Mapping[str, str]) -> int:
        """The year of the request's local date (field 13 has none): see :func:`request_year`."""
        return request_year(request["13"], self.today())

    def _common(self, request: Mapping[str, str], card: Card | None = None) -> dict[str, object]:
        token, masked = card if card is not None else self._card(request)
        return {
            "terminal_id": request["41"],
            "local_date": request["13"],
            "local_year": self._year(request),
            "stan": request["11"],
            "mti": request["t"],
            "proc_code": request["3"],
            "amount": iso.field_int(request, "4"),
            "currency": request["49"],
            "batch": iso.field_int(request, "60") if "60" in request else None,
            "invoice": iso.field_int(request, "62") if "62" in request else None,
            "card_token": token,
            "masked_pan": masked,
            "merchant_id": request.get("42"),
            "local_time": request.get("12"),
        }

    def _record(
        self, request: Mapping[str, str], response: Message, status: str, *, card: Card | None = None, **columns: object
    ) -> Message:
        """Log ``request`` with ``response`` (kept for duplicates) and return the response.

        ``card``: the request's :meth:`_card`, when already computed (one HMAC a request is enough).
        """
        card = card if card is not None else self._card(request)
        self.ledger.add_auth(
            **self._common(request, card),
            rrn=response.get("37"),
            auth_code=response.get("38"),
            response=response["39"],
            status=status,
            fingerprint=self._fingerprint(request, card),
            response_json=json.dumps(response),
            **columns,
        )
        return response

    def _duplicate(self, request: Mapping[str, str]) -> Message | None:
        """The answer to a request whose key is already in the log, else None."""
        existing = self.ledger.find(request["41"], request["13"], request["11"], self._year(request))
        if existing is None:
            return None
        if existing.tombstone:
            return self._answer(request, "12", message="transaction already reversed")
        if existing.fingerprint == self._fingerprint(request) and existing.response_json:
            response: Message = json.loads(existing.response_json)
            return response
        return self._answer(request, "94")

    def _payable(self, request: Mapping[str, str]) -> int:
        return self.ledger.system_account_id("merchant_payable", request["42"].strip(), request["49"])

    def _move(
        self,
        proc_code: str,
        card_account: int,
        request: Mapping[str, str],
        kind: str,
        *,
        activation: int | Unchanged | None = UNCHANGED,
    ) -> int:
        """Post a sale (card → merchant) or refund (merchant → card) transfer; its id.

        ``activation``: the merchant's :func:`~.merchants.activation_minimum` when already read in
        this transaction (a sale may activate the merchant).
        """
        amount = iso.field_int(request, "4")
        reference = f"{request['41'].strip()}/{request['13']}/{request['11']}"
        payable = self._payable(request)
        if proc_code == iso.PROC_REFUND:
            return self.ledger.post(payable, card_account, amount, request["49"], kind, reference)
        note_sale(self.ledger, request["42"], amount, reference, self.today(), minimum=activation)
        return self.ledger.post(card_account, payable, amount, request["49"], kind, reference)

    # -- 0800 ----------------------------------------------------------------------------------

    def _network(self, request: Mapping[str, str]) -> Message:
        if request["70"] in (iso.SIGN_ON, iso.SIGN_OFF, iso.ECHO):
            return self._answer(request, "00")
        return self._answer(request, "30", message=f"unknown network management code {request['70']}")

    # -- 0200 ----------------------------------------------------------------------------------

    def _financial(self, request: Mapping[str, str]) -> Message:
        proc = request["3"]
        if proc not in (iso.PROC_SALE, iso.PROC_REFUND, iso.PROC_VOID):
            return self._answer(request, "12", message=f"processing code {proc} not supported")
        with self.ledger.atomic():
            duplicate = self._duplicate(request)
            if duplicate is not None:
                return duplicate
            code, why = self._card_decision(request)
            if code is None and proc == iso.PROC_VOID:
                return self._void(request)
            rrn = self.ledger.next_rrn()
            if code is not None:
                return self._record(request, self._answer(request, code, message=why, rrn=rrn), "declined")
            card = self._card(request)
            token, masked = card
            assert token is not None
            account = self.ledger.card_account(token, masked, request["49"])
            amount = iso.field_int(request, "4")
            if account.blocked:
                return self._record(request, self._answer(request, "62", rrn=rrn), "declined", card=card)
            if proc == iso.PROC_SALE and amount > account.available:
                return self._record(request, self._answer(request, "51", rrn=rrn), "declined", card=card)
            activation = activation_minimum(self.ledger, request["42"]) if proc == iso.PROC_SALE else None
            inactive = activation_refusal(self.ledger, request["42"], amount, minimum=activation)
            if inactive is not None:
                response = self._answer(request, "13", message=inactive, rrn=rrn)
                return self._record(request, response, "declined", card=card)
            original = self._refunded_sale(request, token) if proc == iso.PROC_REFUND else None
            if original is not None:
                too_much = self._refund_beyond_sale(original, amount)
                if too_much:
                    return self._record(request, self._answer(request, "13", message=too_much, rrn=rrn), "declined")
            kind = "sale" if proc == iso.PROC_SALE else "refund"
            transfer = self._move(proc, account.id, request, kind, activation=activation)
            response = self._answer(request, "00", rrn=rrn, auth_code=self.ledger.new_auth_code())
            return self._record(request, response, "approved", card=card, transfer_id=transfer, original_id=original)

    def _refunded_so_far(self, sale_id: int) -> int:
        """Minor units refunded, and still standing, against the sale ``sale_id``."""
        rows = self.ledger.rows(
            "SELECT coalesce(sum(amount), 0) FROM authorizations WHERE original_id = ? AND proc_code = ? AND status IN "
            f"({', '.join('?' * len(LIVE_STATUSES))})",
            (sale_id, iso.PROC_REFUND, *LIVE_STATUSES),
        )
        return int(rows[0][0])

    def _refund_beyond_sale(self, sale_id: int, amount: int) -> str | None:
        """Why a refund of ``amount`` against sale ``sale_id`` cannot be approved (a voided sale, or
        more than is left of it), or None: the cardholder never gets back more than was paid."""
        sale = self.ledger.get(sale_id)
        if not sale.live:
            return f"the sale named (RRN {sale.rrn}) is {sale.status}: there is nothing to refund"
        done = self._refunded_so_far(sale_id)
        if done + amount > sale.amount:
            return (
                f"refund of {amount} would bring the refunds of the sale (RRN {sale.rrn}) to {done + amount}, "
                f"above its amount {sale.amount} (minor units)"
            )
        return None

    def _refunded_sale(self, request: Mapping[str, str], token: str) -> int | None:
        """The id of the sale a refund names (field 37: its RRN), when it is a sale of the same card.

        It bounds the refund (never more than is left of that sale, nothing of a voided one) and the
        fee a refund may return (never more than that sale paid). A refund naming no sale of this
        card stands on its own.
        """
        rrn = request.get("37")
        if not rrn:
            return None
        sale = self.ledger.find_by_rrn(request["41"], rrn)
        if sale is None or sale.proc_code != iso.PROC_SALE or sale.card_token != token:
            return None
        return sale.id

    def _card_decision(self, request: Mapping[str, str]) -> tuple[str | None, str | None]:
        """(decline code, reason) from the checks that need no account; (None, None) to go on."""
        amount = iso.field_int(request, "4")
        if amount == 0:
            return "13", "invalid amount: zero"
        problem = pan_problem(request["2"])
        if problem:
            return "14", problem
        if "14" in request:
            problem = expiry_problem(request["14"], self.today())
            if problem:
                return "54", problem
        if self.max_per_transaction is not None and amount > self.max_per_transaction:
            return "61", f"amount exceeds the per-transaction limit of {self.max_per_transaction}"
        return None, None

    def _void(self, request: Mapping[str, str]) -> Message:
        rrn = self.ledger.next_rrn()

        def decline(code: str, why: str) -> Message:
            return self._record(request, self._answer(request, code, message=why, rrn=rrn), "declined")

        original_rrn = request.get("37", "")
        original = self.ledger.find_by_rrn(request["41"], original_rrn) if original_rrn.strip() else None
        if original is None or original.proc_code != iso.PROC_SALE:
            return decline("12", "no sale with that RRN on this terminal")
        if original.status == "voided":
            return decline("12", "sale already voided")
        if not original.live or original.transfer_id is None:
            return decline("12", f"sale is {original.status}")
        if original.card_token != self.ledger.token(request["2"]):
            return decline("12", "void card differs from the sale's card")
        if original.amount != iso.field_int(request, "4"):
            return decline("13", "void amount differs from the sale's amount")
        if self._refunded_so_far(original.id):
            return decline("12", "sale partly refunded: refund the rest instead of voiding it")
        if original.batch is not None and self.ledger.batch_settled(
            request["41"], original.batch, since=original.created_at
        ):
            return decline("12", "sale's batch is settled: refund instead")
        cancel = self.ledger.cancel(original.transfer_id, "void", f"void of {original.rrn}")
        self.ledger.update_auth(original.id, status="voided")
        response = self._answer(request, "00", rrn=rrn, auth_code=self.ledger.new_auth_code())
        return self._record(request, response, "approved", transfer_id=cancel, original_id=original.id)

    # -- 0220 ----------------------------------------------------------------------------------

    def _advice(self, request: Mapping[str, str]) -> Message:
        proc = request["3"]
        if proc not in (iso.PROC_SALE, iso.PROC_REFUND):
            return self._answer(request, "30", message=f"an advice cannot carry processing code {proc}")
        if iso.field_int(request, "4") == 0:
            return self._answer(request, "13", message="invalid amount: zero")
        with self.ledger.atomic():
            duplicate = self._duplicate(request)
            if duplicate is not None:
                return duplicate
            card = self._card(request)
            token, masked = card
            assert token is not None
            account = self.ledger.card_account(token, masked, request["49"])
            transfer = self._move(proc, account.id, request, "advice")
            response = self._answer(request, "00", rrn=self.ledger.next_rrn(), auth_code=request["38"])
            # An offline refund cannot be declined any more, but it counts against the sale it names.
            original = self._refunded_sale(request, token) if proc == iso.PROC_REFUND else None
            return self._record(request, response, "advised", card=card, transfer_id=transfer, original_id=original)

    # -- 0400 / 0420 ---------------------------------------------------------------------------

    def _reversal(self, request: Mapping[str, str]) -> Message:
        original_mti, original_stan = request["90"][:4], request["90"][4:10]
        if original_mti not in (iso.MTI_FINANCIAL, iso.MTI_ADVICE):
            return self._answer(request, "30", message=f"cannot reverse a {original_mti}")
        with self.ledger.atomic():
            record = self.ledger.find(request["41"], request["13"], original_stan, self._year(request))
            if record is None:
                self.ledger.insert_auth(
                    **{**self._common(request), "mti": original_mti, "stan": original_stan},
                    response="",
                    status="reversed",
                    tombstone=1,
                )
                return self._answer(request, "00", message="reversal recorded; original not found")
            settled = self._settled_reason(record)
            if settled is not None:
                return self._answer(request, "12", message=settled)
            if record.live and record.transfer_id is not None:
                self._reverse(record)
            fields = {"rrn": record.rrn} if record.rrn else {}
            return self._answer(request, "00", **fields)

    def _settled_reason(self, record: AuthRecord) -> str | None:
        """Why ``record`` can no longer be reversed (its money is settled), or None."""
        if record.settled_date is not None:
            return f"transaction settled on {record.settled_date}: refund instead"
        if (
            record.proc_code == iso.PROC_VOID
            and record.status == "approved"
            and record.batch is not None
            and self.ledger.batch_settled(record.terminal_id, record.batch, since=record.created_at)
        ):
            return "the voided sale's batch is settled: the void stands"
        return None

    def _reverse(self, record: AuthRecord) -> None:
        assert record.transfer_id is not None
        cancel = self.ledger.cancel(record.transfer_id, "reversal", f"reversal of {record.rrn}")
        self.ledger.update_auth(record.id, status="reversed")
        if record.proc_code == iso.PROC_VOID and record.original_id is not None:
            # The void is undone: the sale stands again, carried by the cancelling transfer.
            sale = self.ledger.get(record.original_id)
            status = "advised" if sale.mti == iso.MTI_ADVICE else "approved"
            self.ledger.update_auth(sale.id, status=status, transfer_id=cancel)

    # -- 0500 ----------------------------------------------------------------------------------

    def _settlement(self, request: Mapping[str, str]) -> Message:
        proc = request["3"]
        if proc not in (iso.PROC_SETTLE_FIRST, iso.PROC_SETTLE_AFTER_UPLOAD):
            return self._answer(request, "12", message=f"settlement processing code {proc} not supported")
        theirs = iso.BatchTotals.from_fields(request)
        batch = iso.field_int(request, "60")
        with self.ledger.atomic():
            ours = self.ledger.batch_totals(request["41"], batch, request["49"])
            code = "00" if theirs.balances_with(ours) else "95"
            business = None
            # After a batch upload the terminal closes its batch whatever the answer, so the host
            # settles its own figures then too (a remaining difference is for reconciliation).
            if code == "00" or proc == iso.PROC_SETTLE_AFTER_UPLOAD:
                settled = settle_batch(
                    self.ledger, terminal_id=request["41"], batch=batch, currency=request["49"], today=self.today()
                )
                business = settled.business_date
            self.ledger.record_settlement(
                terminal_id=request["41"],
                batch=batch,
                proc_code=proc,
                stan=request["11"],
                response=code,
                terminal_totals=theirs,
                host_totals=ours,
                business_date=business.isoformat() if business else None,
            )
        totals = {f"f{k}": v for k, v in ours.to_fields().items()}
        if business is not None:
            totals["f15"] = business.strftime("%m%d")
        return self._answer(request, code, **totals)

    # -- 0320 ----------------------------------------------------------------------------------

    def _upload(self, request: Mapping[str, str]) -> Message:
        original = request["61"]
        if len(original) != 10 or original[:4] not in (iso.MTI_FINANCIAL, iso.MTI_ADVICE):
            return self._answer(request, "30", message="field 61 must be the original MTI and STAN")
        if not original[4:].isdigit():
            return self._answer(request, "30", message="field 61 STAN must be digits")
        proc = request["3"]
        if proc not in (iso.PROC_SALE, iso.PROC_REFUND):
            return self._answer(request, "30", message=f"only sales and refunds are uploaded, not {proc}")
        amount = iso.field_int(request, "4")
        if amount == 0:
            return self._answer(request, "13", message="invalid amount: zero")
        batch = iso.field_int(request, "60")
        invoice = iso.field_int(request, "62")
        with self.ledger.atomic():
            record = self.ledger.find(request["41"], request["13"], original[4:], self._year(request))
            if record is not None and record.live and (record.proc_code, record.amount) == (proc, amount):
                if (record.batch, record.invoice) != (batch, invoice) and record.settled_date is None:
                    self.ledger.update_auth(record.id, batch=batch, invoice=invoice)
                return self._answer(request, "00", rrn=record.rrn or None)
            if record is not None and record.settled_date is not None:
                return self._answer(request, "12", message=f"transaction settled on {record.settled_date}")
            token, masked = self._card(request)
            if token is None and record is not None:
                token, masked = record.card_token, record.masked_pan
            if token is not None:
                account = self.ledger.card_account(token, masked, request["49"]).id
            else:
                account = self.ledger.system_account("suspense", "unknown card", request["49"]).id
            if record is not None and record.live and record.transfer_id is not None:
                self.ledger.cancel(record.transfer_id, "upload", "replaced by batch upload")
            transfer = self._move(proc, account, request, "upload")
            columns = {
                "proc_code": proc,
                "amount": amount,
                "currency": request["49"],
                "batch": batch,
                "invoice": invoice,
                "status": "uploaded",
                "transfer_id": transfer,
                "tombstone": 0,
                "card_token": token,
                "masked_pan": masked,
            }
            if record is not None:
                record = self.ledger.update_auth(record.id, **columns)
            else:
                rrn = request["37"]
                if not rrn.strip() or self.ledger.rrn_in_use(rrn):
                    rrn = self.ledger.next_rrn()
                record = self.ledger.insert_auth(
                    **{
                        **self._common(request),
                        **columns,
                        "mti": original[:4],
                        "stan": original[4:],
                        "rrn": rrn,
                        "auth_code": request.get("38"),
                        "response": "00",
                    }
                )
            return self._answer(request, "00", rrn=record.rrn or None)
