"""Card checks: brands of public test PANs, lengths, Luhn, expiry, masking, tokens."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tillvault.domain.cards import (
    card_token,
    check_card,
    check_expiry,
    detect_brand,
    luhn_check_digit,
    luhn_ok,
    mask_pan,
    require_valid_card,
)
from tillvault.errors import CardRejected, InvalidInput

TODAY = date(2025, 6, 15)

# Public test card numbers from acquirers' and gateways' documentation: Stripe "Testing"
# (docs.stripe.com/testing), Braintree "Testing and Go Live", Adyen POS test cards V1/V2,
# Authorize.net test cards, PayPal sandbox lists; UnionPay 62/81 numbers from UnionPay
# International test card sets quoted in the brief.
PUBLIC_TEST_PANS = [
    ("4111111111111111", "visa"),
    ("4242424242424242", "visa"),
    ("4012888888881881", "visa"),
    ("4000056655665556", "visa"),
    ("4222222222222", "visa"),  # 13 digits
    ("4007000000027", "visa"),  # Authorize.net, 13 digits
    ("4012888818888", "visa"),
    ("4005519200000004", "visa"),  # Braintree
    ("4009348888881881", "visa"),
    ("4217651111111119", "visa"),
    ("4500600000000061", "visa"),
    ("4151500000000008", "visa"),  # Adyen MSR
    ("5555555555554444", "mastercard"),
    ("5200828282828210", "mastercard"),
    ("5105105105105100", "mastercard"),
    ("2223003122003222", "mastercard"),  # 2-series
    ("2223000048400011", "mastercard"),
    ("5413330089099999", "mastercard"),  # Adyen
    ("5100060000000002", "mastercard"),
    ("2308880000000000", "mastercard"),  # Adyen BR
    ("378282246310005", "amex"),
    ("371449635398431", "amex"),
    ("370000000000002", "amex"),
    ("6011111111111117", "discover"),
    ("6011000990139424", "discover"),
    ("6011981111111113", "discover"),
    ("6011000991300009", "discover"),
    ("6011000000000012", "discover"),
    ("6445644564456445", "discover"),
    ("6555900000604105", "discover"),  # Stripe "BCcard and DinaCard", a Discover-range number
    ("3530111333300000", "jcb"),
    ("3566002020360505", "jcb"),
    ("3088000000000017", "jcb"),  # Authorize.net, legacy JCB range
    ("36227206271667", "diners"),  # 14 digits
    ("30569309025904", "diners"),
    ("3056930009020004", "diners"),  # 16 digits
    ("38520000023237", "diners"),
    ("36259600000004", "diners"),
    ("38000000000006", "diners"),
    ("6200000000000005", "unionpay"),
    ("6200000000000047", "unionpay"),
    ("6205500000000000004", "unionpay"),  # 19 digits
    ("6250941006528599", "unionpay"),
    ("6212345678901265", "unionpay"),
    ("6243030000000001", "unionpay"),
    ("6221261111117766", "unionpay"),  # co-branded Discover range
    ("6223164991230014", "unionpay"),
    ("8171999927660000", "unionpay"),
    ("8171999900000000021", "unionpay"),  # 19 digits
    ("6759649826438453", "maestro"),
    ("6304000000000000", "maestro"),
    ("6000070736169237003", "maestro"),  # Adyen NL, 19 digits
    ("6799998900000099990", "maestro"),
    ("2200000000000004", "mir"),
]


@pytest.mark.parametrize(("pan", "brand"), PUBLIC_TEST_PANS)
def test_public_test_cards_are_valid_with_their_brand(pan: str, brand: str) -> None:
    result = check_card(pan, "3012", today=TODAY)
    assert result.errors == []
    assert result.valid and result.brand == brand
    assert result.masked == mask_pan(pan) and pan not in repr(result)


@pytest.mark.parametrize(
    ("prefix", "brand"),
    [
        ("2205", "borica"),
        ("508500", "rupay"),
        ("652150", "rupay"),
        ("401178", "elo"),
        ("636368", "elo"),
        ("650031", "elo"),
        ("506099", "verve"),
        ("650002", "verve"),
        ("9792", "troy"),
        ("5019", "dankort"),
        ("606282", "hipercard"),
        ("9704", "napas"),
        ("357111", "lankapay"),
        ("622126", "unionpay"),
        ("622925", "unionpay"),
        ("622927", "unionpay"),
        ("644", "discover"),
        ("3095", "diners"),
        ("300", "diners"),
        ("2221", "mastercard"),
        ("2720", "mastercard"),
        ("2721", None),
    ],
)
def test_longest_prefix_wins(prefix: str, brand: str | None) -> None:
    found = detect_brand(prefix.ljust(16, "0"))
    assert (found.id if found else None) == brand


def test_co_branded_unionpay_discover_range_is_unionpay_with_a_note() -> None:
    result = check_card("6221261111117766")
    assert result.brand == "unionpay" and result.co_brand == "discover"
    assert any("co-branded" in w for w in result.warnings)


def test_unionpay_luhn_failure_is_a_warning_not_an_error() -> None:
    result = check_card("6212345678901266")
    assert result.valid and not result.luhn_ok
    assert result.warnings == ["PAN 621234******1266 fails the Luhn check; accepted because UnionPay PANs are exempt"]


def test_luhn_failure_on_other_brands_is_an_error_with_masked_pan() -> None:
    result = check_card("4111111111111112")
    assert not result.valid
    assert result.errors == ["PAN 411111******1112 fails the Luhn check (a digit is probably mistyped)"]


@pytest.mark.parametrize(
    ("pan", "message"),
    [
        ("411111111111111", "PAN has 15 digits; Visa allows 13, 16 or 19"),
        ("37828224631000", "PAN has 14 digits; American Express allows 15"),
        ("353011133330000", "PAN has 15 digits; JCB allows 16 to 19"),
        ("55555555555544441", "PAN has 17 digits; Mastercard allows 16"),
    ],
)
def test_wrong_length_names_the_brand_and_its_lengths(pan: str, message: str) -> None:
    assert message in check_card(pan).errors


def test_letters_and_symbols_are_rejected_naming_the_position() -> None:
    result = check_card("4111 1111 1111 111A")
    assert result.errors == ["PAN contains a letter ('A') at position 19; only digits, spaces and dashes are allowed"]
    assert "position 5" in check_card("4111.1111.1111.1111").errors[0]
    assert check_card("").errors == ["PAN is empty"]
    assert "non-ASCII digit" in check_card("٤111111111111111").errors[0]  # Arabic-Indic: not a card's digit


def test_spaces_and_dashes_are_ignored() -> None:
    assert check_card("4111-1111 1111-1111").valid


@pytest.mark.parametrize(
    "typed",
    [
        "4111\u00a01111\u00a01111\u00a01111",  # no-break spaces (copied from a web page)
        "4111\u202f1111\u20131111\u20141111",  # narrow no-break space, en and em dashes
        " 4111 1111 1111 1111\r\n",  # a line end from a reader or a paste
        "４１１１１１１１１１１１１１１１",  # full-width digits, as a Chinese input method types them
    ],
)
def test_a_card_number_typed_or_pasted_with_unicode_spaces_dashes_or_full_width_digits_is_read(typed: str) -> None:
    result = check_card(typed, "3012", today=TODAY)
    assert result.valid and result.masked == "411111******1111", result.errors


@pytest.mark.parametrize(
    ("pan", "brand"),
    [
        ("5060666666666666666", "verve"),  # Paystack's Verve test cards
        ("507850785078507812", "verve"),
        ("5061460410120223210", "verve"),
        ("6500020000000003", "verve"),
        ("6370950000000005", "hiper"),  # Braintree's Hiper test card
        ("6062826786276634", "hipercard"),
        ("6362970000457013", "elo"),
    ],
)
def test_national_brands_of_public_test_cards(pan: str, brand: str) -> None:
    assert check_card(pan).brand == brand


@pytest.mark.parametrize(("expiry", "expired"), [("9912", True), ("5001", True), ("4912", False), ("3012", False)])
def test_a_two_digit_year_is_read_as_emv_reads_it(expiry: str, expired: bool) -> None:
    from tillvault.host.cardcheck import expiry_problem

    errors = check_card("4111111111111111", expiry, today=TODAY).errors
    assert bool(errors) == expired and (not expired or "(month 19" in errors[0]), errors
    assert (expiry_problem(expiry, TODAY) == "card expired") == expired  # the host reads it the same way


def test_unknown_brand_is_an_error() -> None:
    result = check_card("9999999999999995")
    assert result.brand is None and not result.valid
    assert result.errors == ["PAN 999999******9995 matches no known card brand"]


def test_expiry_is_valid_through_the_last_day_of_the_month() -> None:
    assert check_expiry("2512", today=date(2025, 12, 31)) == []
    assert check_expiry("2512", today=date(2026, 1, 1)) == ["card expired: expiry 2512 (month 2025-12) has passed"]
    assert check_expiry("2601", today=date(2025, 12, 31)) == []


@pytest.mark.parametrize(
    ("expiry", "message"),
    [
        ("2500", "expiry '2500': month 00 is not 01 to 12 (the form is YYMM)"),
        ("2513", "expiry '2513': month 13 is not 01 to 12 (the form is YYMM)"),
        ("25/12", "expiry '25/12' must be 4 digits in YYMM form (year then month), like 2712"),
        ("12A5", "expiry '12A5' must be 4 digits in YYMM form (year then month), like 2712"),
        ("251", "expiry '251' must be 4 digits in YYMM form (year then month), like 2712"),
    ],
)
def test_malformed_expiry_is_rejected(expiry: str, message: str) -> None:
    result = check_card("4111111111111111", expiry, today=TODAY)
    assert result.errors == [message] and not result.valid


def test_require_valid_card_raises_card_rejected_with_every_error() -> None:
    with pytest.raises(CardRejected) as info:
        require_valid_card("4111111111111112", "2001", today=TODAY)
    assert len(info.value.errors) == 2
    assert "4111111111111112" not in str(info.value)
    assert require_valid_card("4111111111111111", "3012", today=TODAY).brand == "visa"


def test_card_token_is_keyed_deterministic_and_ignores_separators() -> None:
    key = b"k" * 16
    token = card_token("4111 1111 1111 1111", key)
    assert token == card_token("4111111111111111", key)
    assert len(token) == 64 and int(token, 16) >= 0
    assert token != card_token("4111111111111111", b"j" * 16)
    assert "4111111111111111" not in token


def test_card_token_refuses_short_keys_and_bad_pans() -> None:
    with pytest.raises(InvalidInput, match="at least 16"):
        card_token("4111111111111111", b"short")
    with pytest.raises(CardRejected):
        card_token("4111x", b"k" * 16)


@given(st.text("0123456789", min_size=1, max_size=18))
def test_luhn_check_digit_completes_and_any_single_change_breaks(partial: str) -> None:
    full = partial + luhn_check_digit(partial)
    assert luhn_ok(full)
    i = len(full) - 1
    changed = full[:i] + str((int(full[i]) + 1) % 10)
    assert not luhn_ok(changed)


@settings(max_examples=200)
@given(st.text("0123456789", min_size=12, max_size=19))
def test_masking_never_reveals_the_middle_digits(digits: str) -> None:
    masked = mask_pan(digits)
    assert len(masked) == len(digits)
    shown = [i for i, c in enumerate(masked) if c != "*"]
    assert all(masked[i] == digits[i] for i in shown)
    if len(digits) >= 13:
        assert masked[6:-4] == "*" * (len(digits) - 10)
    assert len(shown) <= len(digits) - 3
    result = check_card(digits, "9913", today=TODAY)
    text = repr(result) + " ".join(result.errors + result.warnings)
    assert digits not in text


def test_redact_pans_masks_track_data_whole() -> None:
    from tillvault.domain.cards import redact_pans

    # The cardholder's name, the expiry and the service code of a swiped track go with the PAN.
    assert redact_pans("amount '%B4111111111111111^DOE/JOHN^2812101?' is not") == (
        "amount '%B411111******1111^***^***' is not"
    )
    assert redact_pans("amount ';4111111111111111=28121010000000?' is not") == "amount ';411111******1111=***' is not"
    assert redact_pans("rrn 123456789012 = 5, a^b") == "rrn 123456789012 = 5, a^b"
    # Discretionary data with letters goes too, up to the end sentinel.
    assert redact_pans("%B4111111111111111^DOE/JOHN^2512101ABC000? ok") == "%B411111******1111^***^*** ok"
    assert redact_pans("B1234567890123^") == "B1234567890123^"  # not a card: no brand, fails Luhn
    assert redact_pans("archive folder /x/4539578763621486 is missing") == (
        "archive folder /x/453957******1486 is missing"
    )


def test_redact_pans_masks_card_numbers_in_text_and_leaves_other_numbers() -> None:
    from tillvault.domain.cards import redact_pans

    text = (
        "amount '4242424242424242' is above the limit; track ;4111111111111111=30121011000? and "
        "5555 5555 5555 4444 and 3782-822463-10005 and 6212345678901234 (UnionPay, no Luhn)"
    )
    out = redact_pans(text)
    for pan in ("4242424242424242", "4111111111111111", "5555 5555 5555 4444", "3782-822463-10005", "6212345678901234"):
        assert pan not in out
    assert "424242******4242" in out and "555555******4444" in out and "378282*****0005" in out
    kept = (
        "RRN 000000000031, merchant 898310148160001, amount 12.34, invoice 000123, STAN 606701, 2026-12-01, "
        "MID 123456789012345 (not a Luhn number), key ring /k/58c3d685-1323-4139-8c4d-601100000000.json, "
        "digest a4111111111111111b"
    )
    assert redact_pans(kept) == kept
