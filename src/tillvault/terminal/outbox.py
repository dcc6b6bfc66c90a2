"""Store-and-forward: the outbox of advices (0220) and reversals (0400/0420) drains to the host.

Messages leave in order, one at a time; a message is marked delivered only after the
host answered it, in the same write that updates its transaction (a reversed sale, an
advised offline sale). A failure stops the drain and schedules the next attempt with
exponential back-off and jitter, so a host that is down is not hammered. Every message
is idempotent at the host (same terminal, date and STAN), so a retry after a lost reply
is safe. Payloads are encrypted under the key ring (an advice carries the PAN); a
delivered message's payload is erased.

Sales come first (S13: split the traffic when the network is poor): the drain a sale does on
its way is a slice, at most ``SALE_DRAIN_MESSAGES`` messages and a quarter of a second of wall
time (``Terminal.sale_drain_budget_s``), so a backlog of thousands after an outage, or a slow
link, never holds a customer at the till; the rest goes with the next sales, ``tillvault
flush``, or settlement (which drains everything before it totals).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tillvault.errors import HostProtocolError, HostTimeout, HostUnavailable, MessageError
from tillvault.store.journal import SETTLEMENT, WriteContext

if TYPE_CHECKING:
    from tillvault.terminal.terminal import Terminal

#: The most messages a sale's drain sends (a slow link sends fewer: its time is bounded too).
SALE_DRAIN_MESSAGES = 25
BACKOFF_BASE_MS = 2_000
BACKOFF_MAX_MS = 10 * 60_000
#: Reversal answers that settle its fate: done (00), already settled (12), nothing to reverse (25).
FINAL_REVERSAL_CODES = ("00", "12", "25")
#: Answers that say "not now" (re-enter 19, late 68, cut-over 90, issuer or switch down 91/92,
#: malfunction 96): an advice so answered was not taken and is sent again, never dropped.
TRANSIENT_CODES = ("19", "68", "90", "91", "92", "96")


@dataclass
class DrainReport:
    """What one drain did."""

    delivered: int = 0
    failed: int = 0
    remaining: int = 0
    last_error: str = ""
    delivered_kinds: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "remaining": self.remaining,
            "last_error": self.last_error,
            "delivered_kinds": self.delivered_kinds,
        }


def backoff_ms(attempts: int, rng: random.Random) -> int:
    """Delay before attempt ``attempts + 1``: exponential, capped, with ±50% jitter."""
    base = min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * (2 ** min(attempts, 20)))
    return int(base * rng.uniform(0.5, 1.5))


def drain_outbox(
    t: Terminal,
    *,
    limit: int = 10_000,
    force: bool = False,
    rng: random.Random | None = None,
    budget_s: float | None = None,
) -> DrainReport:
    """Deliver due outbox messages in order until one fails or ``limit`` are sent.

    ``force`` ignores the back-off schedule (settlement drains everything it can). ``budget_s``:
    start no message once that much wall time has gone (the first is always tried).
    Never raises for host trouble: the report says what happened.
    """
    rng = rng or random.Random()
    report = DrainReport()
    now = t.now_ms()
    began = time.monotonic()
    for message in _pending_in_pages(t, limit):
        if not force and message["next_attempt_ms"] > now:
            break
        if budget_s is not None and report.delivered and time.monotonic() - began >= budget_s:
            break
        try:
            fields = json.loads(t.keyring.decrypt_field(bytes(message["payload"]), context=b"outbox"))
            if message["kind"] == "reversal" and message["attempts"] > 0:
                fields["t"] = "0420"  # a repeat of a reversal that may have arrived
            reply = t.host_client().exchange(fields)
        except (HostUnavailable, HostTimeout, HostProtocolError, MessageError) as exc:
            report.failed += 1
            report.last_error = str(exc)
            t.records.outbox_retry_later(
                message["id"], error=str(exc), next_attempt_ms=now + backoff_ms(message["attempts"], rng)
            )
            break
        code = reply.get("39", "")
        if (message["kind"] == "reversal" and code not in FINAL_REVERSAL_CODES) or (
            message["kind"] == "advice" and code in TRANSIENT_CODES
        ):
            # 91, 96...: the host could not act on it now; the message must not be dropped (an
            # advice dropped is a sale the card is never charged for).
            report.failed += 1
            report.last_error = f"the host answered the {message['kind']} with {code}; retrying later"
            t.records.outbox_retry_later(
                message["id"], error=report.last_error, next_attempt_ms=now + backoff_ms(message["attempts"], rng)
            )
            break
        _complete(t, message, reply)
        report.delivered += 1
        report.delivered_kinds[message["kind"]] = report.delivered_kinds.get(message["kind"], 0) + 1
    report.remaining = t.records.outbox_count()
    return report


def _pending_in_pages(t: Terminal, limit: int, page: int = 200) -> Iterator[dict[str, Any]]:
    """Up to ``limit`` undelivered messages, oldest first, read a page at a time (a drain that stops
    at the first failure reads one page, not the whole queue)."""
    last_id, left = 0, limit
    while left > 0:
        rows = t.records.outbox_pending(limit=min(page, left), after_id=last_id)
        if not rows:
            return
        yield from rows
        last_id, left = rows[-1]["id"], left - len(rows)


def _complete(t: Terminal, message: dict[str, Any], reply: dict[str, str]) -> None:
    """Mark a message delivered and apply its effect on the transaction, in one write."""
    code = reply.get("39", "")
    invoice = message["invoice"]

    def apply(ctx: WriteContext) -> None:
        ctx.conn.execute(
            "UPDATE outbox SET status = 'delivered', payload = x'', last_error = NULL WHERE id = ?", (message["id"],)
        )
        ctx.emit(
            "outbox_delivered",
            {"id": message["id"], "kind": message["kind"], "invoice": invoice, "response_code": code},
        )
        if invoice is None:
            return
        tx = t.records.get(invoice)
        if message["kind"] == "reversal" and tx["status"] in ("not_completed", "pending", "approved"):
            if code == "00":
                t.records.set_status(ctx, invoice, "reversed", reason="reversed at the host")
            else:  # e.g. 12: the host had already settled it; the sale stands and must be refunded
                t.records.set_status(
                    ctx,
                    invoice,
                    "approved" if tx["rrn"] else tx["status"],
                    reason=f"the host refused the reversal ({code}): the charge stands; refund it",
                )
        elif message["kind"] == "advice":
            changes: dict[str, Any] = {"rrn": reply.get("37") or tx["rrn"]}
            if code != "00":
                changes["reason"] = f"the host answered the offline advice with {code}: contact the acquirer"
            t.records.set_status(ctx, invoice, tx["status"], **changes)

    t.journal.write(apply, klass=SETTLEMENT, ts_ms=t.now_ms())
