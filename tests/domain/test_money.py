"""Money: ISO 4217 lookup and exact parsing/formatting of minor units."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillvault.domain.money import Currency, currencies, currency_info, format_amount, parse_amount
from tillvault.errors import InvalidInput


@pytest.mark.parametrize(
    ("code", "alpha", "numeric", "exponent"),
    [
        ("CNY", "CNY", "156", 2),
        ("156", "CNY", "156", 2),
        (156, "CNY", "156", 2),
        ("usd", "USD", "840", 2),
        ("JPY", "JPY", "392", 0),
        ("410", "KRW", "410", 0),
        ("VND", "VND", "704", 0),
        ("KWD", "KWD", "414", 3),
        ("048", "BHD", "048", 3),
        ("036", "AUD", "036", 2),
        ("TWD", "TWD", "901", 2),
        ("IDR", "IDR", "360", 2),
    ],
)
def test_currency_info_by_alpha_or_numeric(code: str | int, alpha: str, numeric: str, exponent: int) -> None:
    assert currency_info(code) == Currency(alpha, numeric, exponent, currency_info(alpha).name)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("XYZ", "currency 'XYZ' is not an ISO 4217 code"),
        ("999", "currency '999' is not an ISO 4217 code"),
        ("RMB", "currency 'RMB' is not an ISO 4217 code"),
        ("C N Y", "currency 'C N Y' is not an ISO 4217 code (3 letters or 3 digits)"),
        ("", "currency '' is not an ISO 4217 code (3 letters or 3 digits)"),
    ],
)
def test_unknown_currency_names_the_code(code: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        currency_info(code)
    assert str(info.value) == message


def test_table_has_unique_numeric_codes() -> None:
    table = currencies()
    assert len(table) > 150
    assert len({c.numeric for c in table}) == len(table)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "CNY", 1234),
        ("12.3", "CNY", 1230),
        ("12", "CNY", 1200),
        ("0.01", "CNY", 1),
        (" 7.5 ", "USD", 750),
        ("1000", "JPY", 1000),
        ("1.234", "KWD", 1234),
        ("0", "CNY", 0),
        ("007.10", "CNY", 710),
    ],
)
def test_parse_amount_is_exact(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("12.345", "CNY", "amount '12.345' has 3 decimals; CNY allows at most 2"),
        ("100.5", "JPY", "amount '100.5' has decimals, but JPY has no minor unit"),
        ("-1.00", "CNY", "amount '-1.00' is negative; amounts are never negative"),
        ("+1", "CNY", "amount '+1' has a sign; write it without '+'"),
        ("", "CNY", "amount is empty; write it like 12.34"),
        ("NaN", "CNY", "amount 'NaN' is not a number"),
        ("inf", "CNY", "amount 'inf' is not a number"),
        ("1e3", "CNY", "amount '1e3' uses an exponent; write the plain number, like 1234.56"),
        ("1,234.56", "CNY", "thousands separators are ambiguous"),
        ("1 234", "CNY", "thousands separators are ambiguous"),
        ("12,34", "EUR", "thousands separators are ambiguous"),
        (".5", "CNY", "amount '.5' needs a digit before the '.', like 0.5"),
        ("5.", "CNY", "amount '5.' ends with '.'"),
        ("1.2.3", "CNY", "amount '1.2.3' has more than one '.'"),
        ("１２", "CNY", "is not a plain decimal number like 12.34 (ASCII digits only)"),
        ("12元", "CNY", "is not a plain decimal number"),
        ("9" * 30, "CNY", "is too large"),
    ],
)
def test_parse_amount_refuses_ambiguous_text_clearly(text: str, currency: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_amount(text, currency)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1234, "CNY", "12.34"),
        (5, "CNY", "0.05"),
        (0, "USD", "0.00"),
        (1234, "JPY", "1234"),
        (1, "KWD", "0.001"),
        (-150, "CNY", "-1.50"),
    ],
)
def test_format_amount(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


def test_format_amount_refuses_floats() -> None:
    with pytest.raises(InvalidInput):
        format_amount(12.34, "CNY")  # type: ignore[arg-type]


@given(st.integers(0, 10**15), st.sampled_from(["CNY", "JPY", "KWD", "CLF", "VND"]))
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    assert parse_amount(format_amount(minor, currency), currency) == minor


@pytest.mark.parametrize("text", ["4242424242424242", ";4242424242424242=30121011000?", "5555555555554444.00"])
def test_a_card_number_typed_as_a_sale_amount_is_refused_without_echoing_it(text: str) -> None:
    from tillvault.domain.money import parse_transaction_amount

    with pytest.raises(InvalidInput, match="is it a card number typed into the amount") as caught:
        parse_transaction_amount(text, "CNY")
    assert "4242" not in str(caught.value) and "5555" not in str(caught.value)
    assert parse_transaction_amount("999999999999.99", "CNY") == 99_999_999_999_999


@pytest.mark.parametrize("text", ["0", "0.00", "000"])
def test_a_zero_sale_amount_is_named_as_zero_not_in_minor_units(text: str) -> None:
    from tillvault.domain.money import parse_transaction_amount

    with pytest.raises(InvalidInput, match="is zero: a sale or refund moves some money"):
        parse_transaction_amount(text, "CNY")
    assert parse_transaction_amount("0.01", "CNY") == 1
