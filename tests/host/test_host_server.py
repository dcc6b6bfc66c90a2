"""The reference host over real TCP: approvals, every decline code, duplicates, reversals, voids,
advices, settlement and batch upload, and the double-entry ledger underneath."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from tests.host.conftest import (
    BAD_LUHN,
    MASTERCARD,
    MERCHANT,
    SECRET,
    TERMINAL,
    TODAY,
    UNIONPAY_NO_LUHN,
    VISA,
    WHEN,
    card,
    next_stan,
    sale,
)

from tillvault.domain import iso8583 as iso
from tillvault.host.client import HostClient
from tillvault.host.ledger import HostLedger
from tillvault.host.processing import MessageProcessor
from tillvault.host.server import AcquirerHost
from tillvault.host.wire import recv_frame, send_frame


def cardholder_balance(host: AcquirerHost, pan: str = VISA) -> int:
    return host.ledger.card_account(host.ledger.token(pan), None, "156").balance


def transfer_count(host: AcquirerHost) -> int:
    return len(host.ledger.transfers())


def upload_of(request: dict[str, str], response: dict[str, str], *, stan: int | None = None) -> dict[str, str]:
    """The 0320 a terminal would send for ``request`` (approved with ``response``)."""
    return iso.batch_upload_request(
        stan=stan or next_stan(), terminal_id=TERMINAL, merchant_id=MERCHANT, batch=int(request["60"]),
        invoice=int(request["62"]), original_mti=request["t"], original_stan=int(request["11"]),
        processing_code=request["3"], amount=int(request["4"]), currency="156", original_time=request["12"],
        original_date=request["13"], rrn=response.get("37", " " * 12), auth_code=response.get("38"),
        pan=request.get("2"),
    )  # fmt: skip


# --- network management ----------------------------------------------------------------------------


def test_sign_on_echo_and_sign_off_are_answered(client: HostClient) -> None:
    for build in (iso.sign_on_request, iso.echo_request, iso.sign_off_request):
        request = build(stan=next_stan(), terminal_id=TERMINAL)
        response = client.exchange(request)
        assert (response["t"], response["39"], response["70"]) == ("0810", "00", request["70"])


def test_unknown_network_code_is_a_format_error(client: HostClient) -> None:
    request = {**iso.echo_request(stan=next_stan(), terminal_id=TERMINAL), "70": "999"}
    assert client.exchange(request)["39"] == "30"


# --- approvals and declines ----------------------------------------------------------------------------


def test_sale_is_approved_with_rrn_and_auth_code_and_debits_the_card(host: AcquirerHost, client: HostClient) -> None:
    response = client.exchange(sale(amount=2_500))
    assert response["39"] == "00"
    assert len(response["37"]) == 12 and len(response["38"]) == 6
    assert cardholder_balance(host) == -2_500
    assert host.ledger.check_balanced()["ok"]


def test_a_fresh_card_gets_the_default_credit_limit(host: AcquirerHost, client: HostClient) -> None:
    assert client.exchange(sale(pan=MASTERCARD, amount=1))["39"] == "00"
    account = host.ledger.card_account(host.ledger.token(MASTERCARD), None, "156")
    assert account.credit_limit == host.ledger.default_credit_limit == 5_000_000
    assert account.masked_pan == "555555******4444"


def test_rrns_are_unique(client: HostClient) -> None:
    rrns = {client.exchange(sale(amount=1))["37"] for _ in range(20)}
    assert len(rrns) == 20


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"pan": BAD_LUHN}, "14"),
        ({"pan": "411111111111"}, "14"),  # 12 digits: too short for a card
        ({"expiry": "2505"}, "54"),  # May 2025, host date 15 June 2025
        ({"expiry": "2513"}, "54"),
        ({"amount": 0}, "13"),
        ({"amount": 1_000_001}, "61"),  # over max_per_transaction
        ({"amount": 1_000_000}, "00"),  # exactly the limit
    ],
)
def test_card_checks_decline_with_their_codes(client: HostClient, override: dict[str, object], code: str) -> None:
    response = client.exchange(sale(**override))
    assert response["39"] == code


def test_card_valid_through_its_expiry_month(client: HostClient) -> None:
    assert client.exchange(sale(expiry="2506"))["39"] == "00"


def test_unionpay_is_exempt_from_luhn(client: HostClient) -> None:
    assert client.exchange(sale(pan=UNIONPAY_NO_LUHN))["39"] == "00"
    assert client.exchange(sale(pan="4" + UNIONPAY_NO_LUHN[1:]))["39"] == "14"


def test_insufficient_funds_declines_51_without_moving_money(host: AcquirerHost, client: HostClient) -> None:
    host.ledger.set_card(VISA, credit_limit=5_000)
    assert client.exchange(sale(amount=4_000))["39"] == "00"
    before = transfer_count(host)
    assert client.exchange(sale(amount=1_001))["39"] == "51"
    assert transfer_count(host) == before
    assert client.exchange(sale(amount=1_000))["39"] == "00"


def test_balance_adds_to_the_credit_limit(host: AcquirerHost, client: HostClient) -> None:
    host.ledger.set_card(VISA, credit_limit=0, balance=700)
    assert client.exchange(sale(amount=701))["39"] == "51"
    assert client.exchange(sale(amount=700))["39"] == "00"
    assert host.ledger.check_balanced()["ok"]


def test_blocked_card_is_declined_62(host: AcquirerHost, client: HostClient) -> None:
    host.ledger.set_card(VISA, blocked=True)
    assert client.exchange(sale())["39"] == "62"
    host.ledger.set_card(VISA, blocked=False)
    assert client.exchange(sale())["39"] == "00"


def test_issuer_unavailable_fault_declines_91_and_records_nothing(host: AcquirerHost, client: HostClient) -> None:
    request = sale()
    host.set_faults({"decline": {"mtis": ["0200"]}})
    assert client.exchange(request)["39"] == "91"
    assert client.exchange(iso.echo_request(stan=next_stan(), terminal_id=TERMINAL))["39"] == "00"
    host.set_faults(None)
    assert client.exchange(request)["39"] == "00"  # same STAN: nothing was recorded the first time


def test_missing_required_field_is_a_format_error(client: HostClient) -> None:
    request = sale()
    del request["62"]
    response = client.exchange(request)
    assert response["39"] == "30" and "62" in response["63"]


def test_unknown_processing_code_is_invalid_transaction(client: HostClient) -> None:
    assert client.exchange({**sale(), "3": "310000"})["39"] == "12"


def test_refund_credits_the_card(host: AcquirerHost, client: HostClient) -> None:
    assert client.exchange(iso.refund_request(**card(amount=300)))["39"] == "00"
    assert cardholder_balance(host) == 300
    assert host.ledger.check_balanced()["ok"]


# --- duplicates --------------------------------------------------------------------------------------


def test_same_request_twice_gets_the_same_response_and_one_ledger_effect(
    host: AcquirerHost, client: HostClient
) -> None:
    request = sale(amount=1_234)
    first = client.exchange(request)
    retransmitted = {**request, "7": "0615103059"}  # a retransmission carries a new field 7
    second = client.exchange(retransmitted)
    assert first == second
    assert cardholder_balance(host) == -1_234
    assert len(host.ledger.authorizations()) == 1


def test_a_duplicate_decline_is_the_same_decline(client: HostClient) -> None:
    request = sale(pan=BAD_LUHN)
    assert client.exchange(request) == client.exchange(request)


def test_same_key_with_different_content_is_94(host: AcquirerHost, client: HostClient) -> None:
    request = sale(amount=100)
    assert client.exchange(request)["39"] == "00"
    assert client.exchange({**request, "4": "000000000200"})["39"] == "94"
    assert cardholder_balance(host) == -100


# --- voids ---------------------------------------------------------------------------------------------


def void_of(request: dict[str, str], response: dict[str, str], **overrides: object) -> dict[str, str]:
    args = card(amount=int(request["4"]), invoice=int(request["62"]))
    args.update(overrides)
    return iso.void_request(original_rrn=response["37"], original_auth_code=response["38"], **args)


def test_void_cancels_the_sale(host: AcquirerHost, client: HostClient) -> None:
    request = sale(amount=800)
    approved = client.exchange(request)
    voided = client.exchange(void_of(request, approved))
    assert voided["39"] == "00" and voided["37"] != approved["37"]
    assert cardholder_balance(host) == 0
    assert host.ledger.find(TERMINAL, request["13"], request["11"], TODAY.year).status == "voided"  # type: ignore[union-attr]
    assert client.exchange(void_of(request, approved))["39"] == "12"  # a second void, new STAN
    assert host.ledger.check_balanced()["ok"]


def test_void_checks_sale_amount_and_card(client: HostClient) -> None:
    request = sale(amount=800)
    approved = client.exchange(request)
    assert client.exchange(void_of(request, approved, amount=799))["39"] == "13"
    assert client.exchange(void_of(request, approved, pan=MASTERCARD))["39"] == "12"
    unknown = iso.void_request(original_rrn="999999999999", **card())
    assert client.exchange(unknown)["39"] == "12"


def test_void_after_settlement_is_refused(client: HostClient) -> None:
    request = sale(amount=500, batch=7)
    approved = client.exchange(request)
    settle = iso.settlement_request(
        totals=iso.BatchTotals(1, 500, 0, 0), stan=next_stan(), terminal_id=TERMINAL, merchant_id=MERCHANT,
        batch=7, currency="156",
    )  # fmt: skip
    assert client.exchange(settle)["39"] == "00"
    assert client.exchange(void_of(request, approved, batch=7))["39"] == "12"


# --- reversals -------------------------------------------------------------------------------------------


def test_reversal_restores_the_balance_and_is_idempotent(host: AcquirerHost, client: HostClient) -> None:
    request = sale(amount=600)
    approved = client.exchange(request)
    reversal = iso.reversal_request(request)
    first = client.exchange(reversal)
    assert (first["t"], first["39"], first["37"]) == ("0410", "00", approved["37"])
    assert cardholder_balance(host) == 0
    transfers = transfer_count(host)
    assert client.exchange(reversal)["39"] == "00"
    assert client.exchange(iso.reversal_request(request, repeat=True))["t"] == "0430"
    assert transfer_count(host) == transfers
    assert host.ledger.check_balanced()["ok"]


def test_reversal_of_an_unknown_original_is_acknowledged_and_blocks_a_late_original(
    host: AcquirerHost, client: HostClient
) -> None:
    request = sale(amount=900)
    reversal = {k: v for k, v in iso.reversal_request(request).items() if k != "2"}  # no PAN at recovery
    assert client.exchange(reversal)["39"] == "00"
    late = client.exchange(request)
    assert late["39"] == "12"
    assert cardholder_balance(host) == 0 and transfer_count(host) == 0


def test_reversal_of_a_declined_sale_changes_nothing(host: AcquirerHost, client: HostClient) -> None:
    request = sale(pan=BAD_LUHN)
    assert client.exchange(request)["39"] == "14"
    assert client.exchange(iso.reversal_request(request))["39"] == "00"
    record = host.ledger.find(TERMINAL, request["13"], request["11"], TODAY.year)
    assert record is not None and record.status == "declined"


def test_reversal_of_a_void_restores_the_sale_which_can_be_voided_again(host: AcquirerHost, client: HostClient) -> None:
    request = sale(amount=450)
    approved = client.exchange(request)
    void = void_of(request, approved)
    assert client.exchange(void)["39"] == "00"
    assert client.exchange(iso.reversal_request(void))["39"] == "00"
    assert cardholder_balance(host) == -450
    assert host.ledger.find(TERMINAL, request["13"], request["11"], TODAY.year).status == "approved"  # type: ignore[union-attr]
    assert client.exchange(void_of(request, approved))["39"] == "00"
    assert cardholder_balance(host) == 0
    assert host.ledger.check_balanced()["ok"]


# --- advice ------------------------------------------------------------------------------------------------


def test_advice_is_recorded_even_over_the_limit_and_idempotent(host: AcquirerHost, client: HostClient) -> None:
    host.ledger.set_card(VISA, credit_limit=100)
    advice = iso.advice_request(offline_auth_code="Y1OFFL", **card(amount=5_000))
    first = client.exchange(advice)
    assert (first["t"], first["39"], first["38"]) == ("0230", "00", "Y1OFFL")
    assert client.exchange(advice) == first
    record = host.ledger.find(TERMINAL, advice["13"], advice["11"], TODAY.year)
    assert record is not None and record.status == "advised" and record.auth_code == "Y1OFFL"
    assert cardholder_balance(host) == -5_000


def test_advice_of_a_luhn_invalid_card_is_still_recorded(client: HostClient) -> None:
    advice = iso.advice_request(offline_auth_code="Y1OFFL", **card(pan=BAD_LUHN))
    assert client.exchange(advice)["39"] == "00"


# --- settlement and batch upload ---------------------------------------------------------------------------


def test_settlement_balanced_and_out_of_balance(host: AcquirerHost, client: HostClient) -> None:
    batch = 3
    sales = [sale(amount=a, batch=batch) for a in (1_000, 2_000, 3_000)]
    responses = [client.exchange(s) for s in sales]
    client.exchange(void_of(sales[0], responses[0], batch=batch))
    client.exchange(iso.reversal_request(sales[1]))
    client.exchange(iso.refund_request(**card(amount=500, batch=batch)))
    client.exchange(iso.advice_request(offline_auth_code="Y1OFFL", **card(amount=50, batch=batch)))
    client.exchange(sale(amount=99, batch=batch + 1))  # another batch

    ours = host.ledger.batch_totals(TERMINAL, batch)
    assert (ours.sales_count, ours.sales_amount, ours.refunds_count, ours.refunds_amount) == (2, 3_050, 1, 500)
    assert (ours.sales_reversal_count, ours.sales_reversal_amount) == (2, 3_000)

    def settle(totals: iso.BatchTotals, *, after_upload: bool = False) -> dict[str, str]:
        return client.exchange(iso.settlement_request(
            totals=totals, stan=next_stan(), terminal_id=TERMINAL, merchant_id=MERCHANT, batch=batch,
            currency="156", after_upload=after_upload,
        ))  # fmt: skip

    wrong = settle(iso.BatchTotals(3, 6_050, 1, 500))
    assert wrong["39"] == "95"
    assert iso.BatchTotals.from_fields(wrong) == ours  # the 0510 carries the host's totals
    assert settle(iso.BatchTotals(2, 3_050, 1, 500))["39"] == "00"


def test_batch_upload_makes_the_host_agree_and_is_idempotent(host: AcquirerHost, client: HostClient) -> None:
    batch = 5
    known = sale(amount=1_000, batch=batch)
    known_response = client.exchange(known)
    missed = sale(amount=2_000, batch=batch)  # the host never saw this one (offline, advice lost)
    terminal_totals = iso.BatchTotals(2, 3_000, 0, 0)
    settle = iso.settlement_request(
        totals=terminal_totals, stan=next_stan(), terminal_id=TERMINAL, merchant_id=MERCHANT, batch=batch,
        currency="156",
    )  # fmt: skip
    assert client.exchange(settle)["39"] == "95"

    transfers = transfer_count(host)
    assert client.exchange(upload_of(known, known_response))["39"] == "00"
    assert transfer_count(host) == transfers  # already live: nothing moves
    upload_missed = upload_of(missed, {})
    assert client.exchange(upload_missed)["t"] == "0330"
    assert client.exchange(upload_missed)["39"] == "00"
    assert client.exchange(upload_of(missed, {}))["39"] == "00"  # re-upload with a new STAN
    assert transfer_count(host) == transfers + 1
    assert cardholder_balance(host) == -3_000

    after = iso.settlement_request(
        totals=terminal_totals, stan=next_stan(), terminal_id=TERMINAL, merchant_id=MERCHANT, batch=batch,
        currency="156", after_upload=True,
    )  # fmt: skip
    assert client.exchange(after)["39"] == "00"
    assert host.ledger.batch_settled(TERMINAL, batch)
    assert host.ledger.check_balanced()["ok"]


def test_upload_without_pan_of_an_unknown_transaction_posts_to_suspense(host: AcquirerHost, client: HostClient) -> None:
    missed = {k: v for k, v in sale(amount=321, batch=9).items() if k != "2"}
    assert client.exchange(upload_of(missed, {}))["39"] == "00"
    suspense = host.ledger.accounts("suspense")
    assert len(suspense) == 1 and suspense[0].balance == -321


def test_upload_of_a_reversed_transaction_reinstates_it(host: AcquirerHost, client: HostClient) -> None:
    request = sale(amount=700, batch=11)
    response = client.exchange(request)
    client.exchange(iso.reversal_request(request))
    assert client.exchange(upload_of(request, response))["39"] == "00"
    assert host.ledger.batch_totals(TERMINAL, 11).sales_amount == 700
    assert cardholder_balance(host) == -700


# --- garbage --------------------------------------------------------------------------------------------


def raw_exchange(host: AcquirerHost, payload: bytes) -> bytes | None:
    """Send one frame on a fresh connection; the reply, or None if the host closed."""
    with socket.create_connection(("127.0.0.1", int(host.address.rsplit(":", 1)[1])), timeout=2) as sock:
        send_frame(sock, payload)
        try:
            return recv_frame(sock)
        except EOFError:
            return None


def test_garbage_with_a_readable_mti_gets_a_format_error(host: AcquirerHost) -> None:
    raw = iso.encode(sale(stan=4242))
    reply = raw_exchange(host, raw[:-2] + b"\xff\xff")
    assert reply is not None
    response = iso.decode(reply)
    assert (response["t"], response["39"], response["11"], response["41"]) == ("0210", "30", "004242", TERMINAL)


def test_unreadable_garbage_closes_the_connection(host: AcquirerHost) -> None:
    assert raw_exchange(host, b"\x00\x01garbage") is None


def test_a_response_mti_sent_to_the_host_closes_the_connection(host: AcquirerHost) -> None:
    assert raw_exchange(host, iso.encode(iso.response_for(sale(), response_code="00"))) is None


def test_one_connection_carries_many_messages_from_many_threads(host: AcquirerHost) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with HostClient(host.address, timeout=5) as c:
                for _ in range(10):
                    assert c.exchange(sale(amount=10))["39"] == "00"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cardholder_balance(host) == -800
    assert host.ledger.check_balanced()["ok"]


# --- the ledger stays double-entry whatever happens -------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_ledger_debits_equal_credits_after_random_sequences(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ledger = HostLedger(tmp_path / f"h{seed}", secret=SECRET, default_credit_limit=20_000)
    processor = MessageProcessor(ledger, max_per_transaction=15_000, today=lambda: TODAY)
    pans = [VISA, MASTERCARD, UNIONPAY_NO_LUHN, BAD_LUHN]
    sent: list[tuple[dict[str, str], dict[str, str]]] = []
    for step in range(120):
        action = rng.choice(["sale", "sale", "refund", "void", "reverse", "advice", "duplicate", "upload"])
        when = WHEN + timedelta(minutes=step)
        args = card(pan=rng.choice(pans), amount=rng.choice([0, 1, 999, 5_000, 16_000]), when=when,
                    batch=rng.choice([1, 2]))  # fmt: skip
        if action == "sale":
            request = iso.sale_request(**args)
        elif action == "refund":
            request = iso.refund_request(**args)
        elif action == "advice":
            request = iso.advice_request(offline_auth_code="Y1OFFL", **args)
        elif not sent:
            continue
        else:
            old_request, old_response = rng.choice(sent)
            if action == "duplicate":
                request = old_request
            elif action == "reverse" and old_request["t"] in ("0200", "0220"):
                request = iso.reversal_request(old_request, repeat=rng.random() < 0.3)
            elif action == "void" and "37" in old_response and old_request["3"] == "000000":
                request = iso.void_request(original_rrn=old_response["37"], **{**args, "pan": old_request["2"],
                                           "amount": int(old_request["4"])})  # fmt: skip
            elif action == "upload" and old_request["t"] in ("0200", "0220") and old_request["3"] != "020000":
                request = upload_of(old_request, old_response)
            else:
                continue
        response = processor.handle(request)
        assert response["39"] in iso.RESPONSE_CODES
        sent.append((request, response))
    report = ledger.check_balanced()
    assert report["ok"], report["problems"]
    assert sum(a.balance for a in ledger.accounts()) == 0
    ledger.close()


# --- no PAN at rest -------------------------------------------------------------------------------------------


def test_host_never_writes_a_pan_in_clear_to_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "host"
    pans = [VISA, MASTERCARD, UNIONPAY_NO_LUHN, BAD_LUHN]
    with AcquirerHost(data, today=lambda: TODAY) as host, HostClient(host.address, timeout=2) as c:
        for pan in pans:
            request = sale(pan=pan, amount=100)
            response = c.exchange(request)
            c.exchange(request)
            c.exchange(iso.reversal_request(request))
            c.exchange(iso.advice_request(offline_auth_code="Y1OFFL", **card(pan=pan)))
            if response["39"] == "00":
                c.exchange(upload_of(request, response))
            host.ledger.set_card(pan, credit_limit=1, balance=5, blocked=True)
            raw_exchange(host, iso.encode(request)[:-1] + b"\xff")  # garbage carrying the PAN
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name.startswith("host-ledger") for p in files)
    for path in files:
        content = path.read_bytes()
        for pan in pans:
            assert pan.encode() not in content, f"{pan} in clear in {path.name}"
            assert pan.encode("utf-16-le") not in content


def test_logged_fingerprint_is_the_sha256_of_the_sorted_json_with_the_pan_as_its_token(tmp_path: Path) -> None:
    # Fingerprints written by earlier versions must keep matching: the formula is pinned.
    ledger = HostLedger(tmp_path / "h", secret=SECRET)
    processor = MessageProcessor(ledger, today=lambda: TODAY)
    request = sale()
    assert processor.handle(request)["39"] == "00"
    content = {k: v for k, v in request.items() if k not in ("7", "128")}
    content["2"] = ledger.token(request["2"])
    expected = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    (record,) = ledger.authorizations()
    assert record.fingerprint == expected
    assert processor.handle({**request, "7": "0101000000"}) == json.loads(record.response_json or "")
    ledger.close()


def test_refunds_never_return_more_than_the_sale_and_a_partly_refunded_sale_is_not_voided(
    client: HostClient,
) -> None:
    args = card(amount=10_000)
    paid = client.exchange(iso.sale_request(**args))
    assert paid["39"] == "00"

    def refund(amount: int) -> dict[str, str]:
        return client.exchange(iso.refund_request(original_rrn=paid["37"], **card(amount=amount)))

    assert refund(6_000)["39"] == "00"
    second = refund(6_000)  # 12,000 back on a 10,000 sale: declined, the reason says why
    assert second["39"] == "13" and "above its amount 10000" in second.get("63", ""), second
    assert refund(4_000)["39"] == "00"  # exactly what was left
    assert refund(1)["39"] == "13"
    void = client.exchange(
        iso.void_request(original_rrn=paid["37"], original_auth_code=paid["38"], **{**args, "stan": next_stan()})
    )
    assert void["39"] == "12" and "partly refunded" in void.get("63", ""), void
    # A voided sale has nothing left to refund.
    other = card(amount=2_000)
    sold = client.exchange(iso.sale_request(**other))
    voided = client.exchange(
        iso.void_request(original_rrn=sold["37"], original_auth_code=sold["38"], **{**other, "stan": next_stan()})
    )
    assert voided["39"] == "00"
    late = client.exchange(iso.refund_request(original_rrn=sold["37"], **card(amount=500)))
    assert late["39"] == "13" and "voided" in late.get("63", ""), late


def test_an_offline_refund_advice_counts_against_the_sale_it_names(client: HostClient) -> None:
    paid = client.exchange(iso.sale_request(**card(amount=10_000)))
    assert paid["39"] == "00"
    advice = iso.advice_request(offline_auth_code="Y10001", **card(amount=10_000))
    advice["3"], advice["37"] = iso.PROC_REFUND, paid["37"]  # an offline refund of the whole sale
    assert client.exchange(advice)["39"] == "00"  # taken offline already: it cannot be declined
    more = client.exchange(iso.refund_request(original_rrn=paid["37"], **card(amount=100)))
    assert more["39"] == "13" and "above its amount 10000" in more.get("63", ""), more
