"""The scheduler process: connections, the tick loop, heartbeats, the health port, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib

from cg_common.cache import connect_redis
from cg_common.db import open_pool
from cg_common.health_server import readiness_server
from cg_common.heartbeats import keep_beating
from cg_common.logging import get_logger
from cg_common.messaging import close_nats, connect_nats
from cg_common.signals import on_termination
from cg_common.subjects import PROBE_REQUEST_STREAM
from cg_common.topology import Needs, Topology, require
from cg_scheduler.scheduler import Scheduler
from cg_scheduler.settings import SchedulerSettings

log = get_logger(__name__)

MAX_TICK_SECS = 1.0  # how late a key may be published after its moment; also how soon a deactivation takes effect


def tick_secs(interval_secs: int) -> float:
    return min(MAX_TICK_SECS, interval_secs / 20)


async def run(settings: SchedulerSettings) -> None:
    """Run until SIGTERM or SIGINT; a stop mid-tick finishes the tick (its publishes are acknowledged) first."""
    db = await open_pool(settings.database_url, name="cg-scheduler", max_size=2)
    nats = await connect_nats(settings.nats_url, name="cg-scheduler")
    redis = connect_redis(settings.redis_url, timeout_secs=1.0)
    try:
        js = nats.jetstream()
        # The probe requests' duplicate window must outlive a slot: checked here, provisioned by the migration step.
        await require(js, Topology.from_settings(settings), Needs(streams=(PROBE_REQUEST_STREAM,)))
        health = readiness_server(db, nats, port=settings.scheduler_port)
        await health.start()
        stopping = asyncio.Event()
        on_termination(stopping.set)
        log.info("scheduler started", interval_secs=settings.probe_interval_secs, health_port=settings.scheduler_port)
        scheduler = Scheduler(db, nats, interval_secs=settings.probe_interval_secs)
        # The heartbeat says "scheduling works": it is only given while the last tick read the keys and published.
        beating = asyncio.create_task(keep_beating(redis, "scheduler", healthy=lambda: scheduler.working))
        try:
            await _loop(scheduler, stopping, settings)
        finally:
            beating.cancel()
            await health.stop()
        log.info("scheduler stopped")
    finally:
        await close_nats(nats)
        await redis.aclose()
        await db.close()


async def _loop(scheduler: Scheduler, stopping: asyncio.Event, settings: SchedulerSettings) -> None:
    period = tick_secs(settings.probe_interval_secs)
    while not stopping.is_set():
        await scheduler.tick()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=period)
