"""Budgets through the api: made, read, changed, deleted; clear 422s for what is not a budget; and each budget's
current period, whose spend is exactly the recorded cost of the usage in scope with its event time in the period."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from cg_api import summary_repo
from cg_api.budget_periods import window_at
from cg_api.budget_status import current_period
from tests.support.keys import fake_openai_key
from tests.support.usage_rows import UsageRow, fold, insert_usage, record, roll_up

BUDGET = {"name": "search team", "amount": "100.00", "period": "month"}


@pytest.fixture
async def db(api: httpx.AsyncClient, database_url: str) -> AsyncIterator[psycopg.Connection[Any]]:
    await roll_up(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


async def test_a_budget_is_made_read_changed_and_deleted(api: httpx.AsyncClient, db: psycopg.Connection[Any]) -> None:
    made = await api.post("/budgets", json={**BUDGET, "scope": {"attributes": {"team": "search"}}})
    assert made.status_code == 201, made.text
    budget = made.json()
    assert {k: budget[k] for k in ("name", "amount", "period", "timezone", "scope", "thresholds", "hard")} == {
        "name": "search team",
        "amount": "100",
        "period": "month",
        "timezone": "UTC",
        "scope": {"attributes": {"team": "search"}},
        "thresholds": [50, 80, 100],
        "hard": False,
    }
    assert budget["current"] | {"period_start": None, "period_end": None} == {
        "period_start": None,
        "period_end": None,
        "spent": "0",
        "reserved": "0",
        "remaining": "100",
        "percent": 0.0,
        "forecast": "0",
        "overrun": "0",
        "refusals": 0,
    }
    assert (await api.get(f"/budgets/{budget['id']}")).json() == budget
    assert [b["id"] for b in (await api.get("/budgets")).json()] == [budget["id"]]

    changed = await api.patch(f"/budgets/{budget['id']}", json={"amount": "250.5", "thresholds": [90, 25]})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["amount"], changed.json()["thresholds"], changed.json()["name"]) == (
        "250.5",
        [25, 90],
        "search team",
    )
    twin = await api.post("/budgets", json=BUDGET)
    assert twin.status_code == 409
    assert "already named 'search team'" in twin.text

    assert (await api.delete(f"/budgets/{budget['id']}")).status_code == 204
    assert (await api.get(f"/budgets/{budget['id']}")).status_code == 404
    assert (await api.delete(f"/budgets/{budget['id']}")).status_code == 404
    assert (await api.post("/budgets", json=BUDGET)).status_code == 201  # the name is free again


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"amount": "0"}, "positive decimal"),
        ({"amount": "-5"}, "positive decimal"),
        ({"amount": 12.5}, "decimal string"),
        ({"amount": "ten"}, "amount"),
        ({"amount": "1.0000000000001"}, "at most 12 decimal places"),
        ({"thresholds": [0]}, "from 1 to 1000, not 0"),
        ({"thresholds": [50, 1001]}, "from 1 to 1000, not 1001"),
        ({"thresholds": [80, 80]}, "must differ"),
        ({"thresholds": []}, "thresholds"),
        ({"timezone": "Mars/Olympus_Mons"}, "not an IANA time zone"),
        ({"period": "fortnight"}, "period"),
        ({"scope": {"attributes": {"weather": "rain"}}}, "'weather' is not a dimension"),
        ({"scope": {"key_id": 424242}}, "no stored key has id 424242"),
        ({"scope": {"team": "search"}}, "team"),
        ({"colour": "red"}, "colour"),
        ({"name": ""}, "name"),
    ],
)
async def test_what_is_not_a_budget_is_a_clear_422(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], change: dict[str, Any], says: str
) -> None:
    response = await api.post("/budgets", json={**BUDGET, **change})
    assert response.status_code == 422, response.text
    assert says in response.text
    assert (await api.get("/budgets")).json() == []


async def test_a_patch_cannot_blank_a_field(api: httpx.AsyncClient, db: psycopg.Connection[Any]) -> None:
    budget = (await api.post("/budgets", json=BUDGET)).json()
    response = await api.patch(f"/budgets/{budget['id']}", json={"amount": None})
    assert response.status_code == 422
    assert "leave it out to keep it" in response.text


async def test_spent_is_the_usage_in_scope_and_in_the_period(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    key = (await api.post("/keys", json={"label": "search key", "api_key": fake_openai_key()})).json()
    now = datetime.now(UTC)
    month = window_at(now, "month", ZoneInfo("UTC"))
    cost = Decimal("1.25")
    rows = [
        UsageRow(occurred_at=month.start, attributes={"team": "search"}, cost=cost, key_id=key["id"]),
        UsageRow(occurred_at=now - timedelta(seconds=5), attributes={"team": "search"}, cost=cost),
        UsageRow(occurred_at=month.start - timedelta(microseconds=1), attributes={"team": "search"}, cost=cost),
        UsageRow(occurred_at=now, attributes={"team": "ads"}, cost=cost),
        UsageRow(occurred_at=now, attributes={"team": "search"}, cost=None, model="mystery"),
    ]
    insert_usage(db, rows[:2])
    fold(db)
    insert_usage(db, rows[2:])
    assert record(db, rows[:1]) == {}  # a re-sent event changes nothing
    whole = (await api.post("/budgets", json={**BUDGET, "name": "all"})).json()
    team = (await api.post("/budgets", json={**BUDGET, "scope": {"attributes": {"team": "search"}}})).json()
    both = (
        await api.post(
            "/budgets",
            json={**BUDGET, "name": "key", "scope": {"key_id": key["id"], "attributes": {"team": "search"}}},
        )
    ).json()
    assert whole["current"]["spent"] == "3.75"  # the late event of last month is last month's
    assert team["current"]["spent"] == "2.5"
    assert team["current"]["remaining"] == "97.5"
    assert team["current"]["percent"] == 2.5
    assert both["current"]["spent"] == "1.25"
    assert datetime.fromisoformat(team["current"]["period_start"]) == month.start
    assert datetime.fromisoformat(team["current"]["period_end"]) == month.end
    assert Decimal(team["current"]["forecast"]) >= Decimal("2.5")


async def test_an_event_a_second_either_side_of_a_dst_boundary(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], database_url: str
) -> None:
    """Berlin's day of 25 October 2026 has 25 hours; New York's 8 March 23: an event a second before its first
    instant belongs to the day before, one at its last second to it, one at its end to the next."""
    for zone, day_start, day_end in (
        ("Europe/Berlin", datetime(2026, 10, 24, 22, tzinfo=UTC), datetime(2026, 10, 25, 23, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC)),
    ):
        db.execute("SELECT clear_usage()")
        second = timedelta(seconds=1)
        insert_usage(
            db,
            [
                UsageRow(occurred_at=day_start - second, cost=Decimal("1")),
                UsageRow(occurred_at=day_start, cost=Decimal("10")),
                UsageRow(occurred_at=day_end - second, cost=Decimal("100")),
                UsageRow(occurred_at=day_end, cost=Decimal("1000")),
            ],
        )
        budget = {
            "id": 0,
            "definition": 1,
            "opening_period_start": datetime(2026, 1, 1, tzinfo=UTC),
            "period": "day",
            "timezone": zone,
            "scope": {},
            "amount": Decimal(500),
        }
        async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
            rolled = await summary_repo.rolled_up(conn)
            seen = {
                label: (await current_period(conn, budget, rolled, now=moment)).spent
                for label, moment in (
                    ("before", day_start - second),
                    ("first", day_start),
                    ("last", day_end - second),
                    ("after", day_end),
                )
            }
        assert seen == {"before": 1, "first": 110, "last": 110, "after": 1000}, zone
