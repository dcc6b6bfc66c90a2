"""Transaction limits: each limit refuses with its name and the excess."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillvault.domain.limits import UNITS_PER_CNY, Limits, check_limits, scaled_from_cny
from tillvault.domain.money import currencies
from tillvault.errors import InvalidInput, LimitExceeded

CNY = Limits()  # min 0.01, max 50,000.00, card/day 100,000.00, terminal/day 5,000,000.00


def test_defaults_suit_cny() -> None:
    assert (CNY.min_per_transaction, CNY.max_per_transaction) == (1, 5_000_000)
    assert (CNY.max_per_card_per_day, CNY.max_per_terminal_per_day) == (10_000_000, 500_000_000)
    assert CNY.max_count_per_card_per_day is None and CNY.currency == "CNY"


def test_a_sale_within_every_limit_passes() -> None:
    check_limits(CNY, 5_000_000, 5_000_000, 495_000_000)  # raises if any limit refused it


def test_per_card_daily_limit_names_itself_and_the_excess() -> None:
    with pytest.raises(LimitExceeded) as info:
        check_limits(CNY, 1234, 10_000_000 - 1234 + 1234, 0)
    assert str(info.value) == "per-card daily limit 100000.00 CNY would be exceeded by 12.34 CNY"
    assert info.value.limit == "max_per_card_per_day" and info.value.excess_minor == 1234


def test_per_transaction_limit() -> None:
    with pytest.raises(LimitExceeded) as info:
        check_limits(CNY, 5_000_001, 0, 0)
    assert str(info.value) == "per-transaction limit 50000.00 CNY would be exceeded by 0.01 CNY"
    assert info.value.limit == "max_per_transaction"


def test_per_terminal_daily_limit() -> None:
    with pytest.raises(LimitExceeded) as info:
        check_limits(CNY, 100, 0, 500_000_000)
    assert str(info.value) == "per-terminal daily limit 5000000.00 CNY would be exceeded by 1.00 CNY"
    assert (info.value.limit, info.value.excess_minor) == ("max_per_terminal_per_day", 100)


def test_minimum_per_transaction() -> None:
    with pytest.raises(LimitExceeded) as info:
        check_limits(CNY, 0, 0, 0)
    assert str(info.value) == "amount 0.00 CNY is below the per-transaction minimum 0.01 CNY"
    assert (info.value.limit, info.value.excess_minor) == ("min_per_transaction", 1)


def test_count_per_card_per_day() -> None:
    limits = Limits(max_count_per_card_per_day=3)
    check_limits(limits, 100, 0, 0, card_day_count=2)
    with pytest.raises(LimitExceeded) as info:
        check_limits(limits, 100, 0, 0, card_day_count=3)
    assert info.value.limit == "max_count_per_card_per_day"
    assert "count limit of 3 sales" in str(info.value)


def test_limits_in_another_currency_format_with_its_exponent() -> None:
    jpy = Limits(1, 100_000, 200_000, 1_000_000, currency="JPY")
    with pytest.raises(LimitExceeded, match="per-transaction limit 100000 JPY would be exceeded by 1 JPY"):
        check_limits(jpy, 100_001, 0, 0)
    with pytest.raises(InvalidInput, match="limits are set in JPY"):
        check_limits(jpy, 1, 0, 0, currency="CNY")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_per_transaction": -1},
        {"max_per_transaction": 1.5},
        {"min_per_transaction": 10, "max_per_transaction": 5},
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_negative_amounts_are_invalid_input_not_a_limit() -> None:
    with pytest.raises(InvalidInput, match="amount must be a non-negative int"):
        check_limits(CNY, -5, 0, 0)


def test_round_trip_through_dict() -> None:
    limits = Limits(max_count_per_card_per_day=10, currency="usd")
    assert Limits.from_dict(limits.to_dict()) == limits and limits.currency == "USD"
    with pytest.raises(InvalidInput, match="unknown limit setting"):
        Limits.from_dict({"max_per_week": 1})


@given(st.integers(1, 6_000_000), st.integers(0, 11_000_000), st.integers(0, 600_000_000))
def test_check_passes_exactly_when_every_total_fits(amount: int, card: int, terminal: int) -> None:
    fits = amount <= 5_000_000 and card + amount <= 10_000_000 and terminal + amount <= 500_000_000
    try:
        check_limits(CNY, amount, card, terminal)
    except LimitExceeded as exc:
        assert not fits and exc.excess_minor > 0
    else:
        assert fits


def test_default_limits_are_the_cny_ones_in_a_similar_worth_of_each_currency() -> None:
    assert Limits.for_currency("CNY") == Limits()
    idr, usd, jpy, kwd = (Limits.for_currency(c) for c in ("IDR", "USD", "JPY", "KWD"))
    assert idr.max_per_transaction == 100_000_000_00  # 100 million rupiah, not 50,000 (three dollars)
    assert usd.max_per_transaction == 5_000_00 and jpy.max_per_transaction == 1_000_000
    assert kwd.max_per_transaction == 2_000_000  # three decimals
    assert scaled_from_cny(200, "VND") == 500_000  # the offline floor: 720,000 dong, stepped down


@pytest.mark.parametrize("code", sorted({c.alpha for c in currencies()}))
def test_every_currency_gets_usable_ordered_defaults(code: str) -> None:
    limits = Limits.for_currency(code)
    assert 1 <= limits.max_per_transaction <= limits.max_per_card_per_day <= limits.max_per_terminal_per_day
    worth = UNITS_PER_CNY.get(code, 1)
    # Within a 1-2-5 step of 50,000 yuan's worth (in major units).
    assert worth * 50_000 / 2.5 <= limits.max_per_transaction / 10 ** _exponent(code) <= worth * 50_000


def _exponent(code: str) -> int:
    return next(c.exponent for c in currencies() if c.alpha == code)


def test_a_per_transaction_limit_no_authorization_can_carry_is_refused_naming_the_wire_limit() -> None:
    from tillvault.domain.limits import MAX_WIRE_AMOUNT

    with pytest.raises(InvalidInput, match=r"above the largest amount an authorization can carry \(9999999999\.99 CNY"):
        Limits(max_per_transaction=10**13, max_per_card_per_day=10**13, max_per_terminal_per_day=10**13)
    assert (
        Limits(
            max_per_transaction=MAX_WIRE_AMOUNT, max_per_card_per_day=MAX_WIRE_AMOUNT, max_per_terminal_per_day=10**13
        ).max_per_transaction
        == MAX_WIRE_AMOUNT
    )
