"""Budget alerts through the real pipeline: two ledger replicas, 10% re-sends, one replica SIGKILLed while spend
crosses 50/80/100% of several budgets: exactly one alert per (budget, period, threshold) in PostgreSQL, on
`cg.alert.budget` (JetStream holds each once), in GET /alerts and at a webhook receiver (one 2xx delivery each, the
signature checked with svix); each budget's spend equals its usage's cost. The ledgers and the notifier run as their
own PostgreSQL roles."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg

from cg_common import forecast
from cg_common.pricing import Pricer
from cg_common.subjects import ALERT_STREAM
from tests.support.processes import start_background, start_ledger
from tests.support.roles import migration_step_roles
from tests.support.usage import count_rows, usage_event, wait_until
from tests.support.usage_rows import roll_up
from tests.support.webhook_receiver import WebhookReceiver
from tests.test_ledger_exactly_once import publish

EVENTS = 8000
MODEL = "gpt-4o-mini-2024-07-18"
TEAMS = ("search", "ads")


def make_events(now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    return [
        usage_event(
            source=f"//svc/{n % 3}",
            event_id=f"spend-{n}",
            model=MODEL,
            input_tokens=10_000,
            output_tokens=1_000,
            time_=now - timedelta(seconds=rng.randint(1, 600)),
            attributes={"team": TEAMS[n % 2]},
        )
        for n in range(EVENTS)
    ]


def judged_now(budget: dict[str, Any]) -> bool:
    current = budget["current"]
    start, end = (datetime.fromisoformat(current[edge]) for edge in ("period_start", "period_end"))
    return forecast.judged(start, end, datetime.now(UTC))


async def alert_messages(nats_url: str) -> list[dict[str, Any]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(ALERT_STREAM.name)
        first, last = info.state.first_seq, info.state.last_seq
        return [json.loads((await js.get_msg(ALERT_STREAM.name, seq)).data or b"{}") for seq in range(first, last + 1)]
    finally:
        await nc.close()


async def test_one_alert_per_threshold_through_resends_and_a_killed_replica(
    api: httpx.AsyncClient, ledger_env: dict[str, str], api_env: dict[str, str], tmp_path: Path
) -> None:
    receiver = WebhookReceiver().start()
    hook = (await api.post("/webhooks", json={"url": receiver.url, "events": ["budget.threshold"]})).json()
    await roll_up(ledger_env["DATABASE_URL"])  # the dimensions a ledger registers as it starts
    rng = random.Random(15)
    now = datetime.now(UTC).replace(microsecond=0)
    price = Pricer().price(
        "openai", MODEL, now, input_tokens=10_000, cached_input_tokens=0, output_tokens=1_000, requests=1
    )
    assert price.cost is not None
    total = price.cost * EVENTS
    budgets = {}
    for name, amount, scope, zone in (
        ("all", total * Decimal("0.9"), {}, "UTC"),  # 50, 80 and 100 reached
        ("search", total / 2 * Decimal("1.7"), {"attributes": {"team": "search"}}, "Europe/Berlin"),  # 50 only
        ("svc-1", total / 3 / 2, {"source": "//svc/1"}, "America/New_York"),  # 50, 80, 100 and 200
    ):
        body = {
            "name": name,
            "amount": str(amount.quantize(Decimal("1e-9"))),
            "period": "month",
            "timezone": zone,
            "scope": scope,
            "thresholds": [50, 80, 100, 200],
        }
        made = await api.post("/budgets", json=body)
        assert made.status_code == 201, made.text
        budgets[name] = made.json()

    events = make_events(now, rng)
    messages = events + [events[i] for i in rng.sample(range(EVENTS), EVENTS // 10)]
    rng.shuffle(messages)
    await publish(ledger_env["NATS_URL"], messages)
    url = ledger_env["DATABASE_URL"]
    # The ledgers as their own PostgreSQL role, with only the grants docs/architecture.md lists.
    roles = migration_step_roles(url)
    env = {**ledger_env, "DATABASE_URL": roles["ledger"], "LEDGER_BATCH_SIZE": "50", "LEDGER_FOLD_INTERVAL_SECS": "0.2"}
    notifier_env = {**ledger_env, "DATABASE_URL": roles["notifier"], "MASTER_KEY": api_env["MASTER_KEY"]}
    notifier = start_background("notifier", notifier_env, tmp_path / "notifier.log")
    survivor = start_ledger(env, tmp_path / "a.log")
    victim = start_ledger(env, tmp_path / "b.log")
    try:
        await asyncio.to_thread(wait_until, lambda: count_rows(url) >= EVENTS * 0.2, timeout=60, message="slow")
        victim.kill()
        killed_at = count_rows(url)
        assert killed_at < EVENTS * 0.9, f"the kill came too late to test anything: {killed_at}"
        await asyncio.to_thread(wait_until, lambda: count_rows(url) >= EVENTS, timeout=120, message="unfinished")
        expected = {"all": [50, 80, 100], "search": [50], "svc-1": [50, 80, 100, 200]}
        # Each spends half its amount or more in ten minutes of a month: each forecast crosses its amount, once,
        # where enough of the month has passed for a forecast to be judged (not on its first day).
        forecasting = [name for name, budget in budgets.items() if judged_now(budget)]
        alert_count = sum(len(t) for t in expected.values()) + len(forecasting)

        async def published() -> int:
            return len(await alert_messages(ledger_env["NATS_URL"]))

        for _ in range(100):
            if await published() >= alert_count:
                break
            await asyncio.sleep(0.1)
        for _ in range(100):
            if len(receiver.delivered()) >= alert_count - len(forecasting):
                break
            await asyncio.sleep(0.1)
    finally:
        assert survivor.stop() == 0
        assert notifier.stop() == 0
        receiver.stop()

    with psycopg.connect(url) as conn:
        stored = conn.execute(
            """SELECT budget_id, threshold, count(*) FROM budget_alerts WHERE type = 'budget.threshold'
               GROUP BY 1, 2 ORDER BY 1, 2"""
        ).fetchall()
        forecasts = conn.execute(
            "SELECT budget_id, count(*) FROM budget_alerts WHERE type = 'budget.forecast' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        unpublished = conn.execute("SELECT count(*) FROM budget_alerts WHERE published_at IS NULL").fetchone()
        for name, budget in budgets.items():
            spend = conn.execute("SELECT sum(spent) FROM budget_spend WHERE budget_id = %s", (budget["id"],)).fetchone()
            assert spend is not None
            shown = (await api.get(f"/budgets/{budget['id']}")).json()["current"]["spent"]
            assert Decimal(shown) == spend[0], name
    assert stored == [
        (budgets[name]["id"], threshold, 1) for name in ("all", "search", "svc-1") for threshold in expected[name]
    ]
    assert forecasts == [(budgets[name]["id"], 1) for name in forecasting]
    assert unpublished == (0,)
    on_nats = await alert_messages(ledger_env["NATS_URL"])
    assert sorted(m["id"] for m in on_nats) == sorted({m["id"] for m in on_nats})  # each once in the stream
    assert len(on_nats) == alert_count
    listed = (await api.get("/alerts")).json()
    assert sorted(a["id"] for a in listed) == sorted(m["id"] for m in on_nats)
    at_receiver = receiver.delivered()  # the webhook asked for threshold alerts only
    thresholds = [m for m in on_nats if m["type"] == "budget.threshold"]
    assert {alert_id: len(requests) for alert_id, requests in at_receiver.items()} == {m["id"]: 1 for m in thresholds}
    for projected in (m for m in on_nats if m["type"] == "budget.forecast"):
        assert Decimal(projected["forecast"]) > Decimal(projected["budget"]["amount"]) and projected["threshold"] == 100
    receiver.verify_all(hook["secret"])
    one = next(m for m in thresholds if m["budget"]["name"] == "search")
    assert (one["type"], one["threshold"], one["budget"]["timezone"]) == ("budget.threshold", 50, "Europe/Berlin")
    assert Decimal(one["spent"]) >= Decimal(one["budget"]["amount"]) / 2
