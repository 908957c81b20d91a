"""Budget spend and threshold alerts, kept by the ledger's SQL in the transaction that records the usage: exactly one
alert per (budget, period, threshold) under re-sends, concurrent batches, late events and repricing."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from cg_ledger.store import Repriced, apply_reprices
from tests.support.usage_rows import UsageRow, record, roll_up

NOW = datetime.now(UTC)


@pytest.fixture
async def db(api: httpx.AsyncClient, database_url: str) -> AsyncIterator[psycopg.Connection[Any]]:
    await roll_up(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


async def make_budget(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "search", "amount": "10", "period": "day", "scope": {"attributes": {"team": "search"}}, **fields}
    response = await api.post("/budgets", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def alerts(db: psycopg.Connection[Any]) -> list[tuple[int, int, datetime]]:
    return [
        (row[0], row[1], row[2])
        for row in db.execute(
            """SELECT budget_id, threshold, period_start FROM budget_alerts WHERE type = 'budget.threshold'
               ORDER BY 1, 3, 2"""
        )
    ]


def spent(db: psycopg.Connection[Any], budget_id: int) -> dict[datetime, Decimal]:
    return dict(
        db.execute("SELECT period_start, spent FROM budget_spend WHERE budget_id = %s", (budget_id,)).fetchall()
    )


def usage(cost: str, *, team: str = "search", at: datetime = NOW, event_id: str | None = None) -> UsageRow:
    row = UsageRow(occurred_at=at, attributes={"team": team}, cost=Decimal(cost))
    return replace(row, event_id=event_id) if event_id else row


async def test_each_threshold_alerts_once_and_resends_change_nothing(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    budget = await make_budget(api)
    today = datetime.fromisoformat(budget["current"]["period_start"])
    first = usage("4.5", event_id="a")
    record(db, [first, usage("99", team="ads")])  # 45%; another team's usage is not this budget's
    assert alerts(db) == []
    record(db, [usage("0.5", event_id="b"), first])  # 50%, and a re-send of the first
    assert alerts(db) == [(budget["id"], 50, today)]
    record(db, [usage("5", event_id="c"), usage("1", event_id="d")])  # 105%: 80 and 100 at once
    record(db, [usage("1", event_id="c"), usage("7", event_id="e")])  # a re-sent id and more: no second alert
    assert alerts(db) == [(budget["id"], t, today) for t in (50, 80, 100)]
    assert spent(db, budget["id"]) == {today: Decimal("18")}
    assert (await api.get(f"/budgets/{budget['id']}")).json()["current"]["spent"] == "18"
    listed = [
        a
        for a in (await api.get("/alerts", params={"budget_id": budget["id"]})).json()
        if a["type"] == "budget.threshold"
    ]
    assert sorted(a["threshold"] for a in listed) == [50, 80, 100]
    assert listed[0]["budget"]["name"] == "search" and listed[0]["type"] == "budget.threshold"
    assert {a["spent"] for a in listed if a["threshold"] == 50} == {"5"}


async def test_a_budget_made_mid_period_starts_from_the_usage_already_recorded(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    record(db, [usage("6")])
    budget = await make_budget(api)
    record(db, [usage("0.5")])  # its first batch: 65%, 60% of it from before: 50% is said now
    today = datetime.fromisoformat(budget["current"]["period_start"])
    assert spent(db, budget["id"]) == {today: Decimal("6.5")}
    assert alerts(db) == [(budget["id"], 50, today)]


async def test_a_late_event_counts_in_its_own_period_and_none_before_the_budget(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    budget = await make_budget(api, period="day", timezone="Europe/Berlin")
    # As if it had been made two days ago: periods before a budget's definition are not counted.
    db.execute("UPDATE budgets SET opening_period_start = opening_period_start - interval '2 days'")
    yesterday = NOW - timedelta(days=1)
    record(db, [usage("8", at=yesterday)])  # arrives today, happened yesterday: yesterday's 80%
    periods = spent(db, budget["id"])
    assert list(periods.values()) == [Decimal("8")]
    (start,) = periods
    assert start < datetime.fromisoformat(budget["current"]["period_start"])
    assert alerts(db) == [(budget["id"], 50, start), (budget["id"], 80, start)]
    record(db, [usage("9", at=NOW - timedelta(days=5))])  # before the budget existed: not its concern
    assert list(spent(db, budget["id"]).values()) == [Decimal("8")]


async def test_reprice_lowering_below_a_threshold_never_alerts_it_twice(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], database_url: str
) -> None:
    budget = await make_budget(api)
    ids = record(db, [usage("9", event_id="big")])
    assert [t for _, t, _ in alerts(db)] == [50, 80]
    (row_id,) = ids.values()

    async def reprice(old: str, new: str) -> None:
        change = Repriced(row_id, NOW, None, "//tests/usage", "openai", "gpt-4o-mini-2024-07-18",
                          Decimal(old), Decimal(new), "test")  # fmt: skip
        connecting = psycopg.AsyncConnection.connect(database_url, row_factory=dict_row)
        async with await connecting as conn, conn.transaction():
            await apply_reprices(conn, [change])

    await reprice("9", "2")  # spend falls to 20%
    assert list(spent(db, budget["id"]).values()) == [Decimal("2")]
    await reprice("2", "9")  # and rises past 50% and 80% again: already said, not again
    record(db, [usage("2")])  # 110%: only 100 is new
    assert [t for _, t, _ in alerts(db)] == [50, 80, 100]
    assert list(spent(db, budget["id"]).values()) == [Decimal("11")]


async def test_concurrent_batches_cross_each_threshold_once(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], database_url: str
) -> None:
    """Eight writers, each its own connection, 25 batches of 0.1 each into one budget of 10: spend 20 (200%)."""
    budget = await make_budget(api, thresholds=[10, 25, 50, 75, 90, 100, 150, 200])
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                for batch in range(25):
                    record(conn, [usage("0.1", event_id=f"w{n}-{batch}")])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert list(spent(db, budget["id"]).values()) == [Decimal("20")]
    assert [t for _, t, _ in alerts(db)] == [10, 25, 50, 75, 90, 100, 150, 200]


async def test_a_new_scope_counts_afresh_from_the_current_period(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    budget = await make_budget(api)
    record(db, [usage("3"), usage("6", team="ads")])
    changed = await api.patch(f"/budgets/{budget['id']}", json={"scope": {"attributes": {"team": "ads"}}})
    assert changed.json()["current"]["spent"] == "6"
    record(db, [usage("1", team="ads")])  # the ads team now: 70%
    assert [t for _, t, _ in alerts(db)] == [50]
    rows = db.execute(
        "SELECT definition, spent FROM budget_spend WHERE budget_id = %s ORDER BY 1", (budget["id"],)
    ).fetchall()
    assert rows == [(1, Decimal("3")), (2, Decimal("7"))]
