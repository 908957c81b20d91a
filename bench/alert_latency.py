"""Alert latency: from the publish of the usage event that crosses a budget's threshold to the signed webhook's
arrival at a receiver, over 200 crossings.

Real processes throughout: `cg-api serve` (to make the budgets and the webhook as a user would), one `cg-ledger run`
(records the event, moves the spend across 100% and decides the alert in the same transaction, publishes it on
`cg.alert.budget` after the commit), one `cg-notifier run` (makes the delivery, signs it, POSTs it), and a local HTTP
receiver noting each arrival. Each of 200 budgets (scope `attributes.team=team-<n>`, threshold 100%) is crossed by one
event; the events are published one every `PACE_SECS`, so each crossing is measured alone rather than queued behind
the others. Baseline in the same run: the same events' `cg.cost.recorded` notices, which the ledger publishes right
after the same commit: what recording alone takes, so what the alert path adds is the difference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
from nats.aio.msg import Msg

from bench.support import drop_database, fresh_database, percentiles, say
from cg_common.pricing import Pricer
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import COST_RECORDED, USAGE
from cg_devstack.servers import Stack
from tests.support.processes import running_api, running_background, running_ledger
from tests.support.usage import encode, usage_event, wait_until
from tests.support.webhook_receiver import WebhookReceiver

NAME = "alerts"
CROSSINGS = 200
PACE_SECS = 0.05
MODEL = "gpt-4o-mini-2024-07-18"
TARGET_P95_MS = 2000.0


def run(stack: Stack, work_dir: Path, env_for: Callable[[str], dict[str, str]]) -> dict[str, Any]:
    database_url = fresh_database(stack.database_url)
    env = {**env_for(database_url), "LOG_LEVEL": "warning", "RATE_LIMIT_ENABLED": "false"}
    receiver = WebhookReceiver().start()
    try:
        with (
            running_ledger(env, work_dir / "ledger-alerts.log"),  # registers the dimensions budgets are scoped by
            running_background("notifier", env, work_dir / "notifier-alerts.log"),
            running_api(env, work_dir / "api-alerts.log") as api,
        ):
            teams = _make_budgets(api.url, env["API_KEY"], receiver.url)
            published, recorded = asyncio.run(_cross(stack.nats_url, teams))
            wait_until(lambda: len(receiver.delivered()) >= CROSSINGS, timeout=120, message="alerts missing")
    finally:
        receiver.stop()
        drop_database(stack.database_url, database_url)
    arrived = {orjson.loads(r.body)["budget"]["name"]: r.at for r in receiver.received if r.status == 200}
    alert_ms = [(arrived[team] - published[team]) * 1000 for team in teams]
    cost_ms = [(recorded[team] - published[team]) * 1000 for team in teams]
    alert = percentiles(alert_ms)
    say(NAME, f"alert p50 {alert['p50']:.0f} ms, p95 {alert['p95']:.0f} ms")
    return {"crossings": len(alert_ms), "alert": alert, "recorded": percentiles(cost_ms)}


def _make_budgets(api_url: str, api_key: str, receiver_url: str) -> list[str]:
    """200 budgets that one event each takes past 100%, and the webhook that hears of them."""
    price = Pricer().price(
        "openai", MODEL, datetime.now(UTC), input_tokens=1200, cached_input_tokens=0, output_tokens=300, requests=1
    )
    cost = price.cost
    assert cost is not None
    teams = [f"team-{n}" for n in range(CROSSINGS)]
    with httpx.Client(base_url=api_url, headers={"X-API-Key": api_key}, timeout=30) as client:
        made = client.post("/webhooks", json={"url": receiver_url, "events": ["budget.threshold"]})
        made.raise_for_status()
        for team in teams:
            body = {
                "name": team,
                "amount": str((cost / 2).quantize(Decimal("1e-12"))),
                "period": "month",
                "timezone": "Europe/Berlin",
                "scope": {"attributes": {"team": team}},
                "thresholds": [100],
            }
            client.post("/budgets", json=body).raise_for_status()
    return teams


async def _cross(nats_url: str, teams: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Publish one crossing event per team, paced; returns when each was published and when its cost record came."""
    nc = await nats.connect(nats_url)
    published: dict[str, float] = {}
    recorded: dict[str, float] = {}
    team_of = {f"alert-latency-{team}": team for team in teams}

    async def on_cost(message: Msg) -> None:
        event_id = orjson.loads(message.data)["data"]["event"]["id"]
        if event_id in team_of:
            recorded.setdefault(team_of[event_id], time.time())

    try:
        await nc.subscribe(f"{COST_RECORDED}.>", cb=on_cost)
        for team in teams:
            event = usage_event(source="//bench/alerts", event_id=f"alert-latency-{team}", attributes={"team": team})
            published[team] = time.time()
            await publish_all(nc, [Outgoing(f"{USAGE}.bench", encode(event), event["id"])])
            await asyncio.sleep(PACE_SECS)
        for _ in range(200):
            if len(recorded) >= len(teams):
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return published, recorded


def markdown(result: dict[str, Any]) -> str:
    alert, recorded = result["alert"], result["recorded"]
    verdict = "met" if alert["p95"] < TARGET_P95_MS else "missed"

    def cells(figures: dict[str, float]) -> str:
        return " | ".join(f"{figures[cut]:.0f} ms" for cut in ("p50", "p95", "p99", "max"))

    return f"""One `cg-ledger run`, one `cg-notifier run`, `cg-api serve`, a local HTTP receiver; {result["crossings"]}
budgets (`attributes.team=team-<n>`, month in Europe/Berlin, threshold 100%) each crossed by one usage event,
published one every {PACE_SECS * 1000:.0f} ms (`bench/alert_latency.py`).

| from the event's publish to | p50 | p95 | p99 | max |
| --- | ---: | ---: | ---: | ---: |
| the signed webhook's arrival at the receiver | {cells(alert)} |
| baseline: its `cg.cost.recorded` notice (the same commit) | {cells(recorded)} |

Target: p95 under {TARGET_P95_MS:.0f} ms — **{verdict}**. The difference between the rows is the alert's own path:
publishing it after the commit, the notifier's consumer making the delivery, and the signed POST.
"""
