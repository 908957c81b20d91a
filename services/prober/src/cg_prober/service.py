"""The prober process: connections, the probe-request consumer, the health port, heartbeats, a clean SIGTERM."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from cg_common.cache import connect_redis
from cg_common.consumer import ConsumerSpec, ConsumerStatsCollector, PerMessageConsumer
from cg_common.crypto import KeyCipher, new_master_key
from cg_common.db import Connection, open_pool
from cg_common.health_server import readiness_server
from cg_common.heartbeats import keep_beating
from cg_common.logging import get_logger
from cg_common.messaging import close_nats, connect_nats
from cg_common.signals import on_termination
from cg_common.subjects import (
    BILLING_STREAM,
    DLQ,
    DLQ_STREAM,
    PROBE_REQUEST_STREAM,
    PROBE_RESULT_STREAM,
    USAGE_STREAM,
)
from cg_common.topology import Needs, Topology, require
from cg_prober import upstream
from cg_prober.handler import ProbeHandler
from cg_prober.org_state import OrganizationState
from cg_prober.organization import OrganizationPuller
from cg_prober.settings import ProberSettings

log = get_logger(__name__)


MAX_FETCH = 256


def needs(topology: Topology) -> Needs:
    """What the prober reads and writes in JetStream."""
    return Needs(
        streams=(PROBE_REQUEST_STREAM, PROBE_RESULT_STREAM, USAGE_STREAM, BILLING_STREAM, DLQ_STREAM),
        consumers=(topology.prober_requests,),
        buckets=(topology.prober_state,),
    )


def probe_consumer_spec(settings: ProberSettings, topology: Topology) -> ConsumerSpec:
    return ConsumerSpec(
        topology.prober_requests,
        dlq_subject=f"{DLQ}.probe",
        batch_size=MAX_FETCH,
        max_deliveries=max(20, 2 * settings.probe_max_attempts),
    )


async def run(settings: ProberSettings) -> None:
    """Run until SIGTERM or SIGINT; then stop fetching, let in-flight probes finish (or hand them back), exit."""
    if settings.master_keys:
        cipher = KeyCipher(settings.master_keys)
    else:  # development only (production refuses to start without it): no stored key can be opened
        log.warning("MASTER_KEY is not set: no stored key can be decrypted; every probe will find the key unavailable")
        cipher = KeyCipher([new_master_key()])
    db = await open_pool(settings.database_url, name="cg-prober", max_size=8, configure=_read_only)
    nats = await connect_nats(settings.nats_url, name="cg-prober")
    redis = connect_redis(settings.redis_url, timeout_secs=1.0)
    client = upstream.new_client(
        base_url=settings.openai_base_url,
        timeout_secs=settings.probe_timeout_secs,
        concurrency=settings.prober_concurrency,
    )
    try:
        js = nats.jetstream()
        topology = Topology.from_settings(settings)
        await require(js, topology, needs(topology))
        state = OrganizationState(await js.key_value(topology.prober_state.name))
        organization = OrganizationPuller(nats, state, client, lookback_hours=settings.org_usage_lookback_hours)
        handler = ProbeHandler(settings, db, cipher, client, organization)
        consumer = PerMessageConsumer(
            nats,
            probe_consumer_spec(settings, topology),
            handler.handle,
            concurrency=settings.prober_concurrency,
            grace_secs=settings.probe_timeout_secs + 2,
        )
        REGISTRY.register(ConsumerStatsCollector("cg_prober_requests", consumer.stats))
        health = readiness_server(db, nats, port=settings.prober_port)
        await health.start()
        on_termination(consumer.stop)
        heartbeat = asyncio.create_task(keep_beating(redis, "prober", healthy=lambda: nats.is_connected))
        log.info(
            "prober started",
            mode=settings.probe_mode,
            concurrency=settings.prober_concurrency,
            health_port=settings.prober_port,
        )
        try:
            await consumer.run()
        finally:
            heartbeat.cancel()
            await health.stop()
        log.info("prober stopped")
    finally:
        await client.aclose()
        await close_nats(nats)
        await db.close()
        await redis.aclose()


async def _read_only(conn: Connection) -> None:
    """The prober never writes PostgreSQL, and the server holds it to that; autocommit spares a COMMIT per probe."""
    await conn.set_autocommit(True)
    await conn.execute("SET default_transaction_read_only = on")
