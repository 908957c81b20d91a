"""The scheduler's ticks on a clock the test moves (real NATS and PostgreSQL): each active key requested once per
slot at its own moment, by two replicas at once, through a restart mid-slot, a deactivation, and a tick that comes
late across a slot's end. Nothing here waits for the wall clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import nats
import pytest
from psycopg_pool import AsyncConnectionPool

from cg_common.db import Connection, open_pool
from cg_common.probes import ProbeRequest, scheduled_request_id
from cg_devstack.servers import Stack
from cg_scheduler.plan import offset_secs
from cg_scheduler.scheduler import Scheduler
from tests.support.probes import insert_key, pending_requests

INTERVAL = 60
STEP = 0.5  # seconds between ticks: the service ticks at most a second apart
FIRST_SLOT = 29_000_000  # somewhere in 2025; any slot will do
# Each test its own slots: request ids are (key, slot), and JetStream remembers ids past a purge of the stream.
LATE_SLOT = FIRST_SLOT + 100


class Clock:
    """The time the schedulers read, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(
    database_url: str, clean_state: None, clean_streams: None
) -> AsyncIterator[AsyncConnectionPool[Connection]]:
    pool = await open_pool(database_url, name="scheduler-test", max_size=4)
    yield pool
    await pool.close()


async def run_until(clock: Clock, until: float, *schedulers: Scheduler) -> None:
    """Tick every scheduler every STEP seconds of the test's clock up to `until`; each tick must succeed."""
    while clock.now < until:
        clock.now = min(until, clock.now + STEP)
        for scheduler in schedulers:
            assert await scheduler.tick()


async def published(stack: Stack) -> list[ProbeRequest]:
    return await pending_requests(stack.nats_url)


async def test_replicas_restarts_and_deactivation_give_each_active_key_one_request_per_slot_at_its_moment(
    db: AsyncConnectionPool[Connection], database_url: str, stack: Stack
) -> None:
    keys = [insert_key(database_url) for _ in range(6)]
    inactive = insert_key(database_url, active=False)
    nc = await nats.connect(stack.nats_url)
    try:
        clock = Clock(FIRST_SLOT * INTERVAL)
        a, b = (Scheduler(db, nc, interval_secs=INTERVAL, clock=clock) for _ in range(2))
        await run_until(clock, (FIRST_SLOT + 0.5) * INTERVAL, a, b)
        a = Scheduler(db, nc, interval_secs=INTERVAL, clock=clock)  # restarted mid-slot: remembers nothing
        await run_until(clock, (FIRST_SLOT + 1) * INTERVAL, a, b)

        # Deactivated at the start of the second slot: requested in the first only.
        await db_execute(db, "UPDATE api_keys SET active = false WHERE id = %s", keys[0])
        await run_until(clock, (FIRST_SLOT + 2) * INTERVAL, a, b)
    finally:
        await nc.close()

    requests = await published(stack)
    counts = Counter((r.key_id, r.slot) for r in requests)
    assert set(counts.values()) == {1}
    assert set(counts) == {(k, FIRST_SLOT) for k in keys} | {(k, FIRST_SLOT + 1) for k in keys[1:]}
    assert inactive not in {r.key_id for r in requests}
    for request in requests:
        assert request.request_id == scheduled_request_id(request.key_id, request.slot or 0)
        # Out at the first tick on or after its moment: spread over the slot, not a burst at its start.
        moment = request.requested_at.timestamp() - (request.slot or 0) * INTERVAL
        due = offset_secs(request.key_id, INTERVAL)
        assert due <= moment < due + STEP, (request, due)
    assert len({int(offset_secs(k, INTERVAL) // STEP) for k in keys}) > 1


async def test_a_tick_late_across_a_slot_end_still_requests_what_the_slot_had_left(
    db: AsyncConnectionPool[Connection], database_url: str, stack: Stack
) -> None:
    keys = [insert_key(database_url) for _ in range(8)]
    nc = await nats.connect(stack.nats_url)
    try:
        scheduler = Scheduler(db, nc, interval_secs=INTERVAL, clock=(clock := Clock(0.0)))
        clock.now = LATE_SLOT * INTERVAL
        assert await scheduler.tick()
        clock.now = (LATE_SLOT + 1) * INTERVAL + 0.1  # the process stalled for a whole slot's worth of ticks
        assert await scheduler.tick()
    finally:
        await nc.close()
    first_slot = {r.key_id for r in await published(stack) if r.slot == LATE_SLOT}
    assert first_slot == set(keys)  # every key of the slot that ended, none lost to the stall


async def db_execute(db: AsyncConnectionPool[Connection], statement: str, *values: object) -> None:
    async with db.connection() as conn:
        await conn.execute(statement, values)
