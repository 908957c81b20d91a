"""`budget.forecast` alerts, decided by the ledger's SQL in the transaction that records the spend (real PostgreSQL):
once per budget and period when the projected spend first exceeds the amount; not while it projects under; not for a
late event's past period; not before enough of the period has passed; and the api shows the same projection.

Periods are days in a fixed-offset zone chosen so that its local time now is where the test needs it (noon: half the
day gone, half to come; or just past midnight), whatever the hour the test runs at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from cg_common import forecast
from tests.support.usage_rows import UsageRow, record

ZONES = [f"Etc/GMT{offset:+d}" if offset else "Etc/GMT" for offset in range(-14, 13)]


def zone_at_local_hour(hour: float) -> str:
    """The fixed-offset zone whose local time now is nearest `hour` o'clock."""
    now = datetime.now(UTC)

    def distance(zone: str) -> float:
        local = now.astimezone(ZoneInfo(zone))
        return abs(local.hour + local.minute / 60 - hour)

    return min(ZONES, key=distance)


@pytest.fixture
async def db(api: httpx.AsyncClient, database_url: str) -> AsyncIterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


async def make_budget(api: httpx.AsyncClient, zone: str, amount: str = "10") -> dict[str, Any]:
    body = {"name": f"b-{zone}", "amount": amount, "period": "day", "timezone": zone, "thresholds": [1000]}
    made = await api.post("/budgets", json=body)
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


def spend(db: psycopg.Connection[Any], cost: str, *, ago: timedelta = timedelta(minutes=30), name: str = "") -> None:
    when = datetime.now(UTC) - ago
    record(db, [UsageRow(occurred_at=when, cost=Decimal(cost), event_id=name or f"e-{cost}-{ago.total_seconds()}")])


def forecasts(db: psycopg.Connection[Any]) -> list[tuple[int, datetime, Decimal, Decimal]]:
    return [
        (row[0], row[1], row[2], row[3])
        for row in db.execute(
            "SELECT budget_id, period_start, spent, forecast FROM budget_alerts WHERE type = 'budget.forecast'"
        )
    ]


async def test_a_forecast_alert_once_when_the_projection_first_exceeds_the_amount(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    budget = await make_budget(api, zone_at_local_hour(12))  # about half the day gone
    spend(db, "3", name="first")  # 3 so far, at that pace about 6 by midnight: under 10
    assert forecasts(db) == []
    shown = (await api.get(f"/budgets/{budget['id']}")).json()["current"]
    assert Decimal("4") < Decimal(shown["forecast"]) < Decimal("9")
    spend(db, "3", name="second")  # 6 so far: about 12 by midnight
    ((budget_id, period_start, spent, projected),) = forecasts(db)
    assert budget_id == budget["id"] and spent == Decimal(6) and projected > Decimal(10)
    assert period_start == datetime.fromisoformat(shown["period_start"])
    shown = (await api.get(f"/budgets/{budget['id']}")).json()["current"]
    assert abs(Decimal(shown["forecast"]) - projected) < Decimal("0.1")  # the same method, a moment later

    spend(db, "3", name="third")  # further over: said already
    record(db, [UsageRow(occurred_at=datetime.now(UTC), cost=Decimal(3), event_id="second")])  # a re-send
    assert len(forecasts(db)) == 1
    listed = (await api.get("/alerts", params={"budget_id": budget["id"]})).json()
    assert [(a["type"], a["threshold"]) for a in listed] == [("budget.forecast", 100)]
    assert Decimal(listed[0]["forecast"]) == projected


async def test_no_forecast_alert_for_a_late_event_in_a_past_period(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    zone = zone_at_local_hour(12)
    budget = await make_budget(api, zone, amount="1")
    start = datetime.fromisoformat((await api.get(f"/budgets/{budget['id']}")).json()["current"]["period_start"])
    db.execute("UPDATE budgets SET opening_period_start = %s WHERE id = %s", (start - timedelta(days=1), budget["id"]))
    spend(db, "50", ago=datetime.now(UTC) - (start - timedelta(hours=1)), name="yesterday")  # far over, but past
    assert forecasts(db) == []
    assert db.execute("SELECT count(*) FROM budget_spend").fetchone() == (1,)  # counted in its own period


async def test_no_forecast_alert_before_enough_of_the_period_has_passed(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    budget = await make_budget(api, zone_at_local_hour(0.6))  # about half an hour into the day
    spend(db, "5", ago=timedelta(minutes=10), name="burst")  # projects to ~100 by midnight
    assert forecasts(db) == []
    shown = (await api.get(f"/budgets/{budget['id']}")).json()["current"]
    assert Decimal(shown["forecast"]) > Decimal(10)  # shown all the same: only the alert waits


def test_the_guard_waits_a_tenth_of_the_period_or_a_day() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    day, month = start + timedelta(days=1), start + timedelta(days=31)
    assert not forecast.judged(start, day, start + timedelta(hours=2))
    assert forecast.judged(start, day, start + timedelta(hours=2, minutes=30))
    assert not forecast.judged(start, month, start + timedelta(hours=23))
    assert forecast.judged(start, month, start + timedelta(days=1))
    assert forecast.project(Decimal(6), Decimal(6), start, start + timedelta(hours=12), day) == Decimal(12)
