"""What a webhook receives: the alert as published (format `json`), or a Slack message saying the same (`slack`).

The body is made once, when the delivery is, and stored: every attempt sends and signs the very same bytes.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

CENTS = Decimal("0.01")


def bodies(alert: dict[str, Any], raw: bytes) -> dict[str, str]:
    """The body for each format: `json` is the published alert byte for byte."""
    return {"json": raw.decode(), "slack": orjson.dumps({"text": slack_text(alert)}).decode()}


def slack_text(alert: dict[str, Any]) -> str:
    budget = alert.get("budget") or {}
    name = budget.get("name", "?")
    amount = _money(budget.get("amount"))
    period = f"{budget.get('period', '?')} ({budget.get('timezone', 'UTC')}) from {alert.get('period_start', '?')}"
    if alert.get("type") == "budget.forecast":
        return (
            f":crystal_ball: Budget *{name}* is forecast to spend ${_money(alert.get('forecast'))} by the end of its "
            f"{period}, over its ${amount}; spent so far ${_money(alert.get('spent'))}."
        )
    if alert.get("type") == "webhook.test":
        return ":white_check_mark: Cost Guardian test delivery: this webhook receives budget alerts."
    return (
        f":warning: Budget *{name}* reached {alert.get('threshold', '?')}% of its ${amount} for the {period}: "
        f"spent ${_money(alert.get('spent'))}."
    )


def _money(value: object) -> str:
    try:
        return str(Decimal(str(value)).quantize(CENTS))
    except (InvalidOperation, ValueError):
        return "?"
