"""A budget's forecast: the projected spend at its period's end, the one method the api shows and the ledger alerts
on (docs/budgets.md, "Forecast", with its error measured on a replayed history by `bench/forecast_error.py`).

forecast = spent + recent × (time left) / (time the recent spend took), where `recent` is the spend of the whole
hours of the last period-length (a day for a day budget) or week, whichever is shorter, reaching back into earlier
periods; since the budget's definition began, if that is later (hours as the ledger keeps them,
`budget_spend_hourly`). A whole day or week of pace carries a day's or a week's rhythm (busy office hours, quiet
nights and weekends) instead of projecting the part of it that happens to be recent. A forecast alert is only
judged once MIN_SHARE of the period has passed, or a day: before that, a burst projects absurdly and says nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

LONGEST_WINDOW = timedelta(days=7)
MIN_SHARE = Decimal("0.1")  # of the period
MIN_ELAPSED = timedelta(days=1)  # enough on its own, for week and month periods
PLACES = Decimal("1e-12")  # numeric(30, 12), as every stored cost


def recent_start(period_start: datetime, period_end: datetime, definition_start: datetime, now: datetime) -> datetime:
    """Where the recent spend starts: a period-length (at most a week) of whole hours back, not before the
    definition's first period (no hourly spend is kept before it)."""
    window = min(period_end - period_start, LONGEST_WINDOW)
    return max(definition_start, (now - window).replace(minute=0, second=0, microsecond=0))


def project(spent: Decimal, recent: Decimal, since: datetime, now: datetime, period_end: datetime) -> Decimal:
    """`spent` plus `recent` (spent over [since, now)) carried on at the same pace to `period_end`."""
    if now >= period_end or now <= since:
        return spent
    pace = recent / Decimal((now - since).total_seconds())
    return (spent + pace * Decimal((period_end - now).total_seconds())).quantize(PLACES)


def judged(period_start: datetime, period_end: datetime, now: datetime) -> bool:
    """Whether enough of the period has passed for its forecast to alert."""
    elapsed = now - period_start
    return elapsed >= MIN_ELAPSED or Decimal(elapsed.total_seconds()) >= MIN_SHARE * Decimal(
        (period_end - period_start).total_seconds()
    )
