"""`cg.cost.batch.recorded` from a real ledger: one notice per committed batch that recorded something new, naming
the UTC days it touched with their events and cost, and none for a batch of re-sends."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from cg_common.cost_batches import CostBatchRecorded
from cg_common.subjects import COST_BATCH_RECORDED, USAGE_STREAM
from tests.support.processes import ServiceProcess, running_ledger
from tests.support.usage import encode, publish_mixed, usage_event

EVENTS = 3_000
BATCH_SIZE = 500  # several batches for these few events
MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=20)
PLUS_FIVE = timezone(timedelta(hours=5))


def make_events(count: int) -> list[dict[str, Any]]:
    """Seven minutes apart (about two weeks), a tenth of them unpriced, a third stamped at +05:00 (some on another
    local day than their UTC one)."""
    events = []
    for n in range(count):
        at = MIDNIGHT + timedelta(minutes=7 * (n - count // 2))
        event = usage_event(
            source="//notices/test",
            event_id=f"notice-{n}",
            model="gpt-cg-unknown" if n % 10 == 0 else "gpt-4o-mini-2024-07-18",
            input_tokens=1_000 + n,
            time_=at,
        )
        if n % 3 == 0:  # the same instant written at +05:00: its UTC day is what counts
            event["time"] = at.astimezone(PLUS_FIVE).isoformat()
        events.append(event)
    return events


async def until(condition: Callable[[], Awaitable[bool] | bool], message: str) -> None:
    """`wait_until` for a test in an event loop (the notices arrive in it): up to a minute."""
    for _ in range(1200):
        met = condition()
        if await met if inspect.isawaitable(met) else met:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(message)


def metric(ledger: ServiceProcess, name: str) -> float:
    text = httpx.get(ledger.url + "/metrics", headers={"Accept": "text/plain"}, timeout=5).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def recorded_per_day(database_url: str) -> dict[date, tuple[int, Decimal]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT (occurred_at AT TIME ZONE 'UTC')::date, count(*), coalesce(sum(cost), 0)
               FROM usage_events GROUP BY 1"""
        ).fetchall()
    return {day: (count, cost) for day, count, cost in rows}


async def all_acknowledged(nc: NATS) -> bool:
    """The ledger has settled every message in the stream: each batch's notice went out before its acks."""
    js = nc.jetstream()
    last = (await js.stream_info(USAGE_STREAM.name)).state.last_seq
    info = await js.consumer_info(USAGE_STREAM.name, "ledger")
    return (info.ack_floor.stream_seq if info.ack_floor else 0) == last and not info.num_ack_pending


async def test_one_notice_per_batch_with_its_days_and_totals_and_none_for_resends(
    ledger_env: dict[str, str], nc: NATS, tmp_path: Path
) -> None:
    notices: list[CostBatchRecorded] = []

    async def collect(msg: Msg) -> None:
        notices.append(CostBatchRecorded.model_validate_json(msg.data))

    await nc.subscribe(COST_BATCH_RECORDED, cb=collect)
    await nc.flush()
    events = [encode(event) for event in make_events(EVENTS)]
    env = {**ledger_env, "LEDGER_BATCH_SIZE": str(BATCH_SIZE)}
    with running_ledger(env, tmp_path / "ledger.log") as ledger:
        await publish_mixed(env["NATS_URL"], events, "first")
        # A batch is counted once its cost.recorded messages are acknowledged, after its notice went out.
        await until(lambda: sum(n.events for n in notices) >= EVENTS, "the notices do not add up to every event")
        await until(lambda: metric(ledger, "cg_ledger_batch_seconds_count") == len(notices), "not one notice per batch")
        batches = len(notices)
        assert batches >= EVENTS / BATCH_SIZE

        per_day: Counter[date] = Counter()
        cost_per_day: dict[date, Decimal] = {}
        for notice in notices:
            days = [d.day for d in notice.days]
            assert days == sorted(set(days))
            assert notice.events == sum(d.events for d in notice.days)
            assert notice.cost == sum((d.cost for d in notice.days), Decimal(0))
            for d in notice.days:
                per_day[d.day] += d.events
                cost_per_day[d.day] = cost_per_day.get(d.day, Decimal(0)) + d.cost
        recorded = recorded_per_day(env["DATABASE_URL"])
        assert {day: (per_day[day], cost_per_day[day]) for day in per_day} == recorded
        assert sum(n.cost for n in notices) == sum(cost for _, cost in recorded.values()) > 0
        assert len(recorded) >= 14

        # The same events again, in new messages: every batch records nothing new, and announces nothing.
        announced = len(notices)
        await publish_mixed(env["NATS_URL"], events, "again")
        await until(lambda: all_acknowledged(nc), "the re-sends were not settled")
        await nc.flush()
        assert metric(ledger, "cg_ledger_duplicates_total") == EVENTS
        assert metric(ledger, "cg_ledger_batch_seconds_count") > batches
    assert len(notices) == announced
