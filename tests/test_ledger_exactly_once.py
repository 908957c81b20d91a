"""Every event counted exactly once and priced exactly, through re-sends and a ledger killed twice mid-ingest."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import psycopg
from genai_prices import Usage, calc_price

from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import COST_STREAM, USAGE
from tests.support.processes import start_ledger
from tests.support.usage import count_rows, encode, usage_event, wait_until
from tests.support.usage_rows import rollup_totals

EVENTS = 20_000
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-mini", "o3-mini", "gpt-3.5-turbo")


def make_events(count: int, rng: random.Random) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = []
    for n in range(count):
        input_tokens = rng.randint(0, 50_000)
        events.append(
            usage_event(
                source=f"//service-{n % 7}/prod",
                event_id=f"evt-{n}",
                model=rng.choice(MODELS),
                input_tokens=input_tokens,
                cached_input_tokens=rng.randint(0, input_tokens),
                output_tokens=rng.randint(0, 5_000),
                time_=start + timedelta(seconds=rng.randint(0, 20 * 86_400)),
            )
        )
    return events


def expected_cost(events: list[dict[str, Any]]) -> Decimal:
    """Priced independently of the ledger, straight from genai-prices."""
    total = Decimal(0)
    for event in events:
        data = event["data"]
        usage = Usage(
            input_tokens=data["input_tokens"],
            cache_read_tokens=data["cached_input_tokens"],
            output_tokens=data["output_tokens"],
        )
        when = datetime.fromisoformat(event["time"])
        total += calc_price(usage, data["model"], provider_id="openai", genai_request_timestamp=when).total_price
    return total


async def publish(nats_url: str, messages: list[dict[str, Any]]) -> None:
    """Each message stored by JetStream as its own message: re-sends are the ledger's to recognise, not JetStream's."""
    nc = await nats.connect(nats_url)
    try:
        outgoing = [Outgoing(f"{USAGE}.test", encode(event), msg_id=f"copy-{n}") for n, event in enumerate(messages)]
        for start in range(0, len(outgoing), 2000):
            await publish_all(nc, outgoing[start : start + 2000])
    finally:
        await nc.close()


async def cost_messages(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(COST_STREAM.name)
        return info.state.messages
    finally:
        await nc.close()


def totals(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        raw = conn.execute("SELECT count(*), sum(cost), sum(input_tokens) FROM usage_events").fetchone()
        hourly = rollup_totals(conn, "usage_rollup_hourly", ("events", "cost", "input_tokens"))
        daily = rollup_totals(conn, "usage_rollup_daily", ("events", "cost", "input_tokens"))
        pending = conn.execute("SELECT count(*) FROM usage_rollup_pending").fetchone()
    return {"raw": raw, "hourly": hourly, "daily": daily, "pending": pending}


def test_exactly_once_through_resends_and_two_sigkills(ledger_env: dict[str, str], tmp_path: Path) -> None:
    rng = random.Random(20261126)
    events = make_events(EVENTS, rng)
    resent = [events[i] for i in rng.sample(range(EVENTS), EVENTS // 10)]
    messages = events + resent
    rng.shuffle(messages)
    asyncio.run(publish(ledger_env["NATS_URL"], messages))
    database_url = ledger_env["DATABASE_URL"]
    # Small batches and frequent folds: many folds of pending roll-up sums interleave with commits and kills.
    env = {**ledger_env, "LEDGER_BATCH_SIZE": "200", "LEDGER_FOLD_INTERVAL_SECS": "0.2"}

    killed_at = []
    for fraction in (0.3, 0.6):
        ledger = start_ledger(env, tmp_path / "ledger.log")
        target = EVENTS * fraction
        wait_until(
            lambda target=target: count_rows(database_url) >= target,  # type: ignore[misc]
            timeout=120,
            message=f"ledger stuck below {target}",
        )
        ledger.kill()
        killed_at.append(count_rows(database_url))
    assert all(count < EVENTS for count in killed_at), f"the kills came too late to test anything: {killed_at}"
    print(f"ledger killed at {killed_at} of {EVENTS} events")

    ledger = start_ledger(env, tmp_path / "ledger.log")
    try:
        wait_until(lambda: count_rows(database_url) >= EVENTS, timeout=120, message="ledger did not finish")
        # Let redeliveries of the killed ledgers' unacknowledged messages come back and be recognised.
        wait_until(
            lambda: asyncio.run(cost_messages(ledger_env["NATS_URL"])) >= EVENTS, timeout=60, message="costs missing"
        )
    finally:
        assert ledger.stop() == 0

    result = totals(database_url)
    assert result["raw"][0] == EVENTS
    assert result["raw"][1] == expected_cost(events)
    assert result["hourly"] == result["daily"] == result["raw"]
    assert result["pending"] == (0,), "a ledger stopped by SIGTERM folds what its last batches left pending"
    # Subscribers of cg.cost.recorded.* saw each event once: no loss, no double, whatever the crashes.
    assert asyncio.run(cost_messages(ledger_env["NATS_URL"])) == EVENTS
