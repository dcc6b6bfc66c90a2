"""Fee rules: per-transaction half-up rounding, minimum then cap, named lines that sum exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillvault.errors import InvalidInput
from tillvault.host.fees import (
    FeeCharge,
    FeeRule,
    FeeSchedule,
    brand_of,
    fee_lines,
    format_rate,
    parse_rate,
    percentage_fee,
)

amounts = st.integers(min_value=0, max_value=10**12)
rates = st.integers(min_value=0, max_value=1_000_000)
optional_money = st.none() | st.integers(min_value=0, max_value=10**7)


def test_rounding_is_half_up_to_the_minor_unit() -> None:
    rule = FeeRule(6000)  # 0.60%
    assert rule.fee(125) == 1  # 0.75 → 1
    assert rule.fee(83) == 0  # 0.498 → 0
    assert rule.fee(250) == 2  # 1.5 → 2 (half up, not to even)
    assert rule.fee(10_000) == 60
    assert FeeRule(5000).fee(100) == 1  # 0.5 exactly → up


def test_debit_cap_limits_the_fee_per_transaction() -> None:
    debit = FeeRule(5000, cap=2000, card_type="debit")  # 0.50% capped at 20.00
    assert debit.fee(399_900) == 2000  # 19.995 → 20.00 (the cap)
    assert debit.fee(1_000_000) == 2000
    assert debit.fee(100_000) == 500
    assert debit.name == "MDR debit 0.50% cap 20.00"


def test_minimum_applies_before_the_cap_and_never_exceeds_the_amount() -> None:
    rule = FeeRule(3800, minimum=50, cap=1000)
    assert rule.fee(1_000) == 50  # 3.8 → minimum 0.50
    assert rule.fee(30) == 30  # minimum 0.50 > amount 0.30: the fee is the amount
    assert rule.fee(10_000_000) == 1000
    with pytest.raises(InvalidInput, match="cannot exceed its cap"):
        FeeRule(3800, minimum=2000, cap=1000)


@given(amounts, rates, optional_money, optional_money)
def test_fee_is_the_documented_formula_and_within_bounds(
    amount: int, rate: int, cap: int | None, minimum: int | None
) -> None:
    if cap is not None and minimum is not None and minimum > cap:
        cap, minimum = minimum, cap
    fee = FeeRule(rate, cap=cap, minimum=minimum).fee(amount)
    expected = (amount * rate + 500_000) // 1_000_000
    if minimum is not None:
        expected = max(expected, minimum)
    if cap is not None:
        expected = min(expected, cap)
    assert fee == min(expected, amount)
    assert 0 <= fee <= amount
    if cap is not None:
        assert fee <= cap


@given(amounts, amounts, rates, optional_money)
def test_fee_never_decreases_as_the_amount_grows(a: int, b: int, rate: int, cap: int | None) -> None:
    rule = FeeRule(rate, cap=cap)
    low, high = sorted((a, b))
    assert rule.fee(low) <= rule.fee(high)


@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(-(10**6), 10**6))))
def test_fee_lines_sum_to_the_charges_exactly(items: list[tuple[str, int]]) -> None:
    charges = [FeeCharge(name, amount) for name, amount in items] + [FeeCharge(None, 0)]
    lines = fee_lines(charges)
    assert sum(line["amount"] for line in lines) == sum(amount for _, amount in items)
    assert sum(line["count"] for line in lines) == len(items)
    assert [line["name"] for line in lines] == sorted({name for name, _ in items})


def test_the_first_matching_rule_prices_the_card() -> None:
    schedule = FeeSchedule(
        (
            FeeRule(5000, cap=2000, card_type="debit", brand="unionpay"),
            FeeRule(6000, card_type="credit", brand="unionpay"),
            FeeRule(20_000),
        )
    )
    assert schedule.charge("sale", 1_000_000, "debit", "unionpay") == FeeCharge(
        "MDR debit unionpay 0.50% cap 20.00", 2000
    )
    assert schedule.charge("sale", 10_000, "credit", "unionpay").amount == 60
    assert schedule.charge("sale", 10_000, "debit", "visa") == FeeCharge("MDR 2.00%", 200)
    assert schedule.charge("sale", 10_000, None, None).amount == 200  # no type: "unknown"


def test_the_reference_workload_fee_is_one_schedule() -> None:
    """UnionPay debit 0.5% capped at 20.00, UnionPay credit 0.6%, others 2% (WORKLOAD.md)."""
    schedule = FeeSchedule.from_dict(
        {
            "rules": [
                {"card_type": "debit", "brand": "unionpay", "rate": "0.5%", "cap": 2000},
                {"brand": "unionpay", "rate": "0.6%"},
                {"rate": "2%"},
            ]
        }
    )

    def workload_fee(amount: int, brand: str, card_type: str) -> int:
        if brand == "unionpay":
            if card_type == "debit":
                return min((amount * 50 + 5000) // 10000, 2000)
            return (amount * 60 + 5000) // 10000
        return (amount * 200 + 5000) // 10000

    for amount in (1, 99, 100, 150, 12_345, 399_999, 400_000, 10**9):
        for brand in ("unionpay", "visa"):
            for card_type in ("debit", "credit"):
                assert schedule.charge("sale", amount, card_type, brand).amount == workload_fee(
                    amount, brand, card_type
                )


def test_refunds_keep_the_fee_by_default_and_can_return_it() -> None:
    keep = FeeSchedule.uniform(6000)
    assert keep.charge("refund", 10_000, "credit", None) == FeeCharge(None, 0)
    back = FeeSchedule(keep.rules, refunds_return_fee=True)
    assert back.charge("refund", 10_000, "credit", None) == FeeCharge("MDR 0.60% returned", -60)
    with pytest.raises(InvalidInput):
        keep.charge("void", 10_000, None, None)


def test_no_rule_means_no_fee() -> None:
    assert FeeSchedule().charge("sale", 10_000, "debit", None) == FeeCharge(None, 0)
    assert FeeSchedule((FeeRule(5000, card_type="debit"),)).charge("sale", 10_000, "credit", None).amount == 0


@given(st.integers(min_value=0, max_value=1_000_000))
def test_rates_format_and_parse_back_exactly(ppm: int) -> None:
    assert parse_rate(format_rate(ppm)) == ppm


def test_rate_parsing() -> None:
    assert parse_rate("0.6%") == 6000
    assert parse_rate(" 0.385 % ") == 3850
    assert format_rate(6000) == "0.60%"
    for bad in ("abc", "-1%", "101%", "0.00001%", "nan"):
        with pytest.raises(InvalidInput):
            parse_rate(bad)


def test_schedules_round_trip_and_reject_bad_input() -> None:
    schedule = FeeSchedule(
        (FeeRule(5000, cap=2000, card_type="debit", name="借记卡 0.5% 封顶 20"), FeeRule(6000)), refunds_return_fee=True
    )
    assert FeeSchedule.from_dict(schedule.to_dict()) == schedule
    assert FeeSchedule.from_dict(None) == FeeSchedule()
    bad = [
        {"rules": [{"rate": "0.6%", "colour": "red"}]},
        {"rules": [{"cap": 100}]},
        {"rules": [{"rate": "0.6%", "rate_ppm": 5000}]},
        {"rules": [{"rate": "0.6%", "card_type": "prepaid"}]},
        {"rules": [{"rate": "0.6%", "brand": "nosuch"}]},
        {"rules": [{"rate": "0.6%", "cap": -1}]},
        {"rules": [{"rate": "0.6%"}, {"rate": "0.6%"}]},  # two lines with one name
        {"rules": "0.6%"},
        {"refunds_return_fee": "yes"},
        {"extra": 1},
    ]
    for data in bad:
        with pytest.raises(InvalidInput):
            FeeSchedule.from_dict(data)
    with pytest.raises(InvalidInput):
        FeeRule(6000, name="bad\nname")
    with pytest.raises(InvalidInput):
        FeeRule(6000).fee(-1)


def test_brand_comes_from_the_masked_pan() -> None:
    assert brand_of("621234******1235") == "unionpay"
    assert brand_of("411111******1111") == "visa"
    assert brand_of(None) is None
    assert brand_of("******") is None


def test_percentage_fee_is_exact_for_huge_amounts() -> None:
    assert percentage_fee(10**15, 6000) == 6 * 10**12


def test_a_capped_rule_prices_only_its_own_currency() -> None:
    yen = FeeRule(6000, cap=2_000, minimum=1, currency="JPY")  # ¥2,000 cap, ¥1 minimum
    assert yen.currency == "392" and "cap 2000 JPY" in yen.name and "min 1 JPY" in yen.name
    schedule = FeeSchedule((yen, FeeRule(5000)))
    assert schedule.charge("sale", 1_000_000, None, None, "392") == FeeCharge(yen.name, 2_000)
    # A yuan sale is not capped at 2,000 fen by a yen rule: the bare-rate rule prices it.
    assert schedule.charge("sale", 1_000_000, None, None, "156") == FeeCharge("MDR 0.50%", 5_000)
    assert FeeSchedule((yen,)).charge("sale", 1_000, None, None, "414") == FeeCharge(None, 0)
    again = FeeRule.from_dict(yen.to_dict())
    assert again == yen and yen.to_dict()["currency"] == "392"
    with pytest.raises(InvalidInput, match="currency"):
        FeeRule(6000, cap=10, currency="XYZ")
