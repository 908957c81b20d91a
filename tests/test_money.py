"""Money as text: plain decimal strings, exact to the last digit that numeric(30, 12) can hold."""

from __future__ import annotations

from decimal import Decimal

import pytest

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
