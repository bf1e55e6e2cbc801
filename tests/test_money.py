from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from margin.money import format_usd, from_micros, per_million, to_decimal, to_micros

tokens = st.integers(min_value=0, max_value=10**12)
prices = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)


@given(tokens, tokens, prices)
def test_cost_is_linear_in_tokens(a, b, price):
    assert per_million(a + b, price) == per_million(a, price) + per_million(b, price)


@given(tokens, prices, st.integers(min_value=0, max_value=10**6))
def test_cost_scales_exactly_with_volume(n, price, k):
    assert per_million(n * k, price) == per_million(n, price) * k


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_micros_round_trip_is_exact(micros):
    assert to_micros(from_micros(micros)) == micros


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=9, allow_nan=False, allow_infinity=False))
def test_to_micros_is_within_half_a_micro(amount):
    assert abs(from_micros(to_micros(amount)) - amount) <= Decimal("0.0000005")


def test_to_micros_rounds_half_even():
    assert to_micros(Decimal("0.0000005")) == 0
    assert to_micros(Decimal("0.0000015")) == 2


def test_floats_are_refused_as_money():
    with pytest.raises(TypeError, match="float"):
        to_decimal(0.1)
    assert to_decimal("0.1") == Decimal("0.1")


@pytest.mark.parametrize(
    ("amount", "shown"),
    [("1234.567", "$1,234.57"), ("0.000085", "$0.0000850"), ("0.0135", "$0.0135"), ("-2.5", "-$2.50"), ("0", "$0.00")],
)
def test_format_usd(amount, shown):
    assert format_usd(Decimal(amount)) == shown


def test_format_usd_fixed_places_and_sign():
    assert format_usd(Decimal("0.004"), places=2) == "$0.00"
    assert format_usd(Decimal("3"), sign=True) == "+$3.00"
