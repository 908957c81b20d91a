"""Money as text: plain decimal strings, exact to the last digit that numeric(30, 12) can hold."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cg_common.money import money_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0.000345000000", "0.000345"),
        ("1E+2", "100"),
        ("100", "100"),
        ("12.5000", "12.5"),
        ("-3.10", "-3.1"),
        ("-0.000", "0"),
        ("0E-12", "0"),
        ("1E-20", "0.00000000000000000001"),
        # 30 significant digits, more than the default decimal context's 28: nothing may be rounded away.
        ("123456789012345678.123456789012", "123456789012345678.123456789012"),
    ],
)
def test_money_text(value: str, text: str) -> None:
    assert money_text(Decimal(value)) == text


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_money_text_is_the_plain_decimal_reading(value: Decimal) -> None:
    """The str() fast path never differs from format 'f' with its trailing zeros cut, exponents included."""
    plain = format(value, "f")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    assert money_text(value) == ("0" if plain == "-0" else plain)
    assert Decimal(money_text(value)) == value
