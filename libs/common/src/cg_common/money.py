"""Money on the wire: a Decimal written as a plain decimal string, never a float, never an exponent."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer


def money_text(value: Decimal) -> str:
    """`Decimal("0.000345000000")` → `"0.000345"`, `Decimal("1E+2")` → `"100"`: no exponent, no trailing zeros."""
    # str() is the fast path (the ledger writes one per event); it uses an exponent only below 1E-6 or for
    # exponents above zero, where format "f" takes over. Trailing zeros are cut as text (normalize costs 4x more).
    text = str(value)
    if "E" in text:
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# A pydantic field of money: a Decimal in Python, written as `money_text` in JSON; read from a string or a number.
Money = Annotated[Decimal, PlainSerializer(money_text, return_type=str)]
