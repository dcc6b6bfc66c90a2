"""The ISO 8583 dialect: round trips, strict decoding, builders, totals and their sign convention."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tests.host.conftest import MERCHANT, TERMINAL, VISA, WHEN, card, sale

from tillvault.domain import iso8583 as iso
from tillvault.errors import MessageError

# --- strategies ---------------------------------------------------------------------------------

_ALPHABETS = {
    "n": "0123456789",
    "an": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
    "hex": "0123456789ABCDEF",
}


@st.composite
def field_value(draw: st.DrawFn, key: str) -> str:
    kind, prefix, length, _ = iso._FIELDS[key]
    size = length if prefix == 0 else draw(st.integers(0, min(length, 40)))
    if kind == "x+n":
        return draw(st.sampled_from("CD")) + draw(st.text(_ALPHABETS["n"], min_size=16, max_size=16))
    return draw(st.text(_ALPHABETS[kind], min_size=size, max_size=size))


@st.composite
def messages(draw: st.DrawFn) -> dict[str, str]:
    mti = draw(st.sampled_from(sorted(iso.REQUEST_MTIS | iso._RESPONSE_MTIS)))
    keys = draw(st.sets(st.sampled_from(sorted(iso._DATA_FIELDS)), max_size=12))
    return {"t": mti, **{k: draw(field_value(k)) for k in keys}}


def _valid_messages() -> list[bytes]:
    totals = iso.BatchTotals(3, 3_000, 1, 500, 1, 100, 0, 0)
    original = sale()
    return [
        iso.encode(original),
        iso.encode(iso.reversal_request(original, when=WHEN)),
        iso.encode(iso.settlement_request(totals=totals, stan=9, terminal_id=TERMINAL, merchant_id=MERCHANT,
                                          batch=1, currency="156", when=WHEN)),
        iso.encode(iso.sign_on_request(stan=3, terminal_id=TERMINAL, when=WHEN)),
    ]  # fmt: skip


VALID = _valid_messages()

# --- round trips --------------------------------------------------------------------------------


@given(messages())
def test_any_spec_message_round_trips(message: dict[str, str]) -> None:
    assert iso.decode(iso.encode(message)) == message


@given(
    pan=st.text("0123456789", min_size=12, max_size=19),
    amount=st.integers(0, 10**12 - 1),
    stan=st.integers(1, 999_999),
    batch=st.integers(0, 999_999),
    invoice=st.integers(0, 999_999),
    terminal=st.text(_ALPHABETS["ans"], min_size=1, max_size=8),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)),
)
def test_builders_round_trip(
    pan: str, amount: int, stan: int, batch: int, invoice: int, terminal: str, when: datetime
) -> None:
    args = card(pan=pan, amount=amount, stan=stan, batch=batch, invoice=invoice, terminal_id=terminal, when=when)
    for message in (
        iso.sale_request(**args),
        iso.refund_request(**args),
        iso.void_request(original_rrn="000000000042", **args),
        iso.advice_request(offline_auth_code="Y1A2B3", **args),
    ):
        decoded = iso.decode(iso.encode(message))
        assert decoded == message
        assert iso.field_int(decoded, "4") == amount
        assert decoded["41"] == terminal.ljust(8)
        assert decoded["7"] == when.strftime("%m%d%H%M%S")
        assert iso.field_int(decoded, "60") == batch and iso.field_int(decoded, "62") == invoice


def test_wire_form_is_ascii_with_hex_bitmap_and_ll_pan() -> None:
    raw = iso.encode({"t": "0200", "2": VISA, "3": "000000"})
    assert raw == b"0200" + b"6000000000000000" + b"16" + VISA.encode() + b"000000"


def test_secondary_bitmap_appears_for_fields_above_64() -> None:
    raw = iso.encode({"t": "0800", "11": "000001", "70": "301"})
    assert raw[:36] == b"0800" + b"8020000000000000" + b"0400000000000000"


# --- decode never raises anything but MessageError ------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decode_of_random_bytes_raises_only_message_error(data: bytes) -> None:
    with contextlib.suppress(MessageError):  # anything else fails the test
        iso.decode(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])),
             min_size=1, max_size=4),
)  # fmt: skip
def test_decode_of_mutated_messages_raises_only_message_error(
    original: bytes, edits: list[tuple[int, int, str]]
) -> None:
    data = bytearray(original)
    for position, byte, op in edits:
        position %= len(data) + 1
        if op == "insert":
            data.insert(position, byte)
        elif position < len(data):
            if op == "set":
                data[position] = byte
            else:
                del data[position]
    try:
        decoded = iso.decode(bytes(data))
    except MessageError:
        return
    assert iso.encode(decoded) == bytes(data)  # whatever decodes is canonical


@given(st.integers(0, 400))
def test_truncated_messages_are_refused(cut: int) -> None:
    original = VALID[0]
    assume(cut < len(original))
    with pytest.raises(MessageError):
        iso.decode(original[:cut])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"9999" + b"0" * 16, "unknown message type"),
        (b"0200" + b"zzzzzzzzzzzzzzzz", "primary bitmap"),
        (iso.encode({"t": "0200", "13": "0615", "14": "2712"}).lower(), "primary bitmap"),
        (b"0200" + b"0800000000000000" + b"1", "field 5"),
        (iso.encode({"t": "0200", "3": "000000"}) + b"X", "Extra data"),
        (b"0200" + b"2000000000000000" + b"AB0000", "field 3"),
        (b"0200" + b"4000000000000000" + b" 9" + b"411111111", "canonical"),
        (b"0200" + b"\xff" * 16, "primary bitmap"),
    ],
)
def test_decode_names_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        iso.decode(data)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(MessageError, match="bytes"):
        iso.decode("0200")  # type: ignore[arg-type]


# --- encode validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"t": "0201"}, "unknown message type"),
        ({"t": "0200", "4": "12"}, "must be 12 characters"),
        ({"t": "0200", "4": "00000000001A"}, "characters not allowed"),
        ({"t": "0200", "2": "4" * 20}, "longer than 19"),
        ({"t": "0200", "5": "1"}, "not part of"),
        ({"t": "0200", "4": 12}, "must be text"),
        ({"t": "0200", "41": "T\u00e9RMINAL"}, "characters not allowed"),
    ],
)
def test_encode_refuses_bad_fields(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        iso.encode(fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"pan": "4111"}, "PAN"),
        ({"amount": -1}, "amount"),
        ({"amount": 10**12}, "amount"),
        ({"stan": 0}, "STAN"),
        ({"stan": 1_000_000}, "STAN"),
        ({"terminal_id": "T123456789"}, "terminal id"),
        ({"currency": "CNY"}, "currency"),
        ({"expiry": "12/27"}, "expiry"),
        ({"batch": 1_000_000}, "batch"),
    ],
)
def test_builders_refuse_values_that_cannot_be_carried(override: dict[str, object], reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        iso.sale_request(**card(**override))


# --- builders' field content -----------------------------------------------------------------------------


def test_sale_refund_void_carry_their_processing_codes() -> None:
    assert sale()["3"] == "000000"
    assert iso.refund_request(**card())["3"] == "200000"
    void = iso.void_request(original_rrn="000000000007", original_auth_code="123456", **card())
    assert (void["3"], void["37"], void["38"]) == ("020000", "000000000007", "123456")


def test_advice_carries_offline_auth_code_and_the_offline_sales_time() -> None:
    advice = iso.advice_request(offline_auth_code="Y1OFFL", **card())
    assert advice["t"] == "0220" and advice["38"] == "Y1OFFL"
    assert (advice["7"], advice["12"], advice["13"]) == ("0615103000", "103000", "0615")


def test_reversal_keeps_key_fields_and_names_the_original_in_field_90() -> None:
    original = sale(stan=4321)
    reversal = iso.reversal_request(original, when=datetime(2025, 6, 15, 10, 31, tzinfo=UTC))
    assert reversal["t"] == "0400"
    assert all(reversal[k] == original[k] for k in ("3", "4", "11", "12", "13", "41", "42", "49", "60", "62"))
    assert reversal["90"] == "0200" + "004321" + "0615103000" + "00010000001" + "0" * 11
    assert len(reversal["90"]) == 42
    assert iso.reversal_request(original, repeat=True)["t"] == "0420"


def test_reversal_without_pan_or_transmission_time() -> None:
    original = {k: v for k, v in sale().items() if k not in ("2", "7", "14")}
    reversal = iso.reversal_request(original)
    assert "2" not in reversal and reversal["90"][10:20] == "0" * 10
    assert iso.decode(iso.encode(reversal)) == reversal


def test_reversal_of_a_non_financial_message_is_refused() -> None:
    with pytest.raises(MessageError, match="only a 0200 or 0220"):
        iso.reversal_request(iso.echo_request(stan=1, terminal_id=TERMINAL))


def test_network_requests_carry_codes() -> None:
    assert iso.sign_on_request(stan=1, terminal_id=TERMINAL)["70"] == "001"
    assert iso.sign_off_request(stan=1, terminal_id=TERMINAL)["70"] == "002"
    assert iso.echo_request(stan=1, terminal_id=TERMINAL)["70"] == "301"


def test_batch_upload_names_the_original_in_field_61() -> None:
    upload = iso.batch_upload_request(
        stan=77, terminal_id=TERMINAL, merchant_id=MERCHANT, batch=3, invoice=12, original_mti="0200",
        original_stan=55, processing_code="000000", amount=1234, currency="156", original_time="103000",
        original_date="0615", rrn="000000000009", auth_code="654321",
    )  # fmt: skip
    assert upload["t"] == "0320" and upload["61"] == "0200000055" and upload["11"] == "000077"
    assert "2" not in upload
    assert iso.decode(iso.encode(upload)) == upload


def test_response_for_echoes_and_sets_fields_without_the_pan() -> None:
    request = sale()
    response = iso.response_for(request, response_code="51", rrn="000000000001", f63="insufficient funds")
    assert response["t"] == "0210" and response["39"] == "51" and response["37"] == "000000000001"
    assert response["11"] == request["11"] and response["41"] == request["41"]
    assert "2" not in response and "14" not in response
    assert iso.response_for(request, amount=5)["4"] == "000000000005"
    assert "62" not in iso.response_for(request, f62=None)
    with pytest.raises(MessageError, match="unknown field name"):
        iso.response_for(request, colour="red")
    with pytest.raises(MessageError, match="not a request"):
        iso.response_for({"t": "0210"})


def test_response_codes_cover_the_ones_the_host_uses() -> None:
    for code in ("00", "51", "54", "14", "61", "91", "94", "95", "25", "12", "13", "30", "96"):
        assert code in iso.RESPONSE_CODES
    assert iso.response_text("51") == "51 insufficient funds"


def test_salvage_reads_mti_stan_and_terminal_of_a_broken_message() -> None:
    raw = iso.encode(sale(stan=42))
    broken = raw[:-3] + b"\xff\xff\xff"
    assert iso.salvage(broken) == {"t": "0200", "11": "000042", "41": TERMINAL}
    assert iso.salvage(b"\x00garbage") == {}
    assert iso.salvage(raw[:30]) == {"t": "0200"}


def test_redacted_masks_pan_and_expiry() -> None:
    shown = iso.redacted(sale())
    assert shown["2"] == "411111******1111" and shown["14"] == "****"


# --- settlement totals ------------------------------------------------------------------------------


@given(
    st.builds(
        iso.BatchTotals,
        *[st.integers(0, 10**9) for _ in range(8)],
    )
)
def test_batch_totals_round_trip_through_fields(totals: iso.BatchTotals) -> None:
    message = iso.settlement_request(
        totals=totals, stan=1, terminal_id=TERMINAL, merchant_id=MERCHANT, batch=1, currency="156"
    )
    decoded = iso.decode(iso.encode(message))
    assert iso.BatchTotals.from_fields(decoded) == totals


def test_net_settlement_sign_convention() -> None:
    assert iso.BatchTotals(sales_amount=1000, refunds_amount=300).to_fields()["97"] == "D" + "700".zfill(16)
    assert iso.BatchTotals(sales_amount=300, refunds_amount=1000).to_fields()["97"] == "C" + "700".zfill(16)
    assert iso.BatchTotals().to_fields()["97"] == "C" + "0" * 16
    fields = iso.BatchTotals(sales_count=2, sales_amount=50, refunds_count=1, refunds_amount=20).to_fields()
    assert (fields["76"], fields["88"], fields["74"], fields["86"]) == (
        "0000000002", "0000000000000050", "0000000001", "0000000000000020",
    )  # fmt: skip


def test_totals_with_inconsistent_net_are_refused() -> None:
    fields = iso.BatchTotals(sales_amount=10).to_fields()
    fields["97"] = "C" + "10".zfill(16)
    with pytest.raises(MessageError, match="field 97"):
        iso.BatchTotals.from_fields(fields)


def test_settlement_request_processing_codes() -> None:
    common = {"stan": 1, "terminal_id": TERMINAL, "merchant_id": MERCHANT, "batch": 1, "currency": "156"}
    assert iso.settlement_request(totals=iso.BatchTotals(), **common)["3"] == "920000"  # type: ignore[arg-type]
    after = iso.settlement_request(totals=iso.BatchTotals(), after_upload=True, **common)  # type: ignore[arg-type]
    assert after["3"] == "960000"


def test_balance_comparison_ignores_reversal_figures() -> None:
    ours = iso.BatchTotals(1, 100, 0, 0, sales_reversal_count=2, sales_reversal_amount=50)
    assert ours.balances_with(iso.BatchTotals(1, 100, 0, 0))
    assert not ours.balances_with(iso.BatchTotals(1, 101, 0, 0))


def test_batch_totals_refuse_negative_figures() -> None:
    with pytest.raises(MessageError, match="sales_amount"):
        iso.BatchTotals(sales_amount=-1)


def test_the_host_never_shows_more_than_it_must_of_a_short_card_number() -> None:
    from tillvault.domain import cards
    from tillvault.domain.iso8583 import mask_pan
    from tillvault.host.fees import brand_of

    # A 12-digit Maestro number: first 6 + last 4 would hide only 2 digits; the host keeps the
    # issuer's 6 (its fee rules price by brand), nothing of the tail.
    assert mask_pan("501800000009") == "501800******" and brand_of(mask_pan("501800000009")) == "maestro"
    assert mask_pan("4111111111111111") == cards.mask_pan("4111111111111111") == "411111******1111"
    assert mask_pan("1234567890") == "**********"
