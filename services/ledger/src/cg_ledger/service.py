"""The ledger process: connections, the usage consumer, the health port, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib

from nats.js.client import JetStreamContext
from prometheus_client import REGISTRY

from cg_common.cache import connect_redis
from cg_common.consumer import BatchConsumer, ConsumerSpec, ConsumerStatsCollector
from cg_common.db import open_pool
from cg_common.health_server import readiness_server
from cg_common.heartbeats import keep_beating
from cg_common.logging import get_logger
from cg_common.messaging import close_nats, connect_nats
from cg_common.pricing import Pricer
from cg_common.signals import on_termination
from cg_common.subjects import (
    ALERT_STREAM,
    BILLING_STREAM,
    COST_STREAM,
    DLQ,
    DLQ_STREAM,
    PROBE_RESULT_STREAM,
    USAGE_STREAM,
)
from cg_common.topology import Needs, Topology, require
from cg_ledger import dimension_rollups, metrics
from cg_ledger.alert_publisher import AlertPublisher
from cg_ledger.billing import BilledCostRecorder
from cg_ledger.folding import RollupFolder
from cg_ledger.key_health import KeyHealthRecorder
from cg_ledger.recorder import UsageRecorder
from cg_ledger.settings import LedgerSettings
from cg_ledger.store import create_staging_table

log = get_logger(__name__)

LAG_REFRESH_SECS = 5.0


def needs(topology: Topology) -> Needs:
    """What the ledger reads and writes in JetStream."""
    return Needs(
        streams=(USAGE_STREAM, PROBE_RESULT_STREAM, BILLING_STREAM, COST_STREAM, DLQ_STREAM, ALERT_STREAM),
        consumers=(topology.ledger_usage, topology.ledger_probe_results, topology.ledger_billing),
    )


def usage_consumer_spec(settings: LedgerSettings, topology: Topology) -> ConsumerSpec:
    return ConsumerSpec(
        topology.ledger_usage,
        dlq_subject=f"{DLQ}.usage",
        batch_size=settings.ledger_batch_size,
        max_in_flight=settings.ledger_max_in_flight,
    )


def probe_result_consumer_spec(topology: Topology) -> ConsumerSpec:
    return ConsumerSpec(topology.ledger_probe_results, dlq_subject=f"{DLQ}.probe_result", batch_size=500)


def billing_consumer_spec(topology: Topology) -> ConsumerSpec:
    return ConsumerSpec(topology.ledger_billing, dlq_subject=f"{DLQ}.billing", batch_size=500, max_in_flight=1)


async def run(settings: LedgerSettings) -> None:
    """Run until SIGTERM or SIGINT, then finish the batch in hand, acknowledge it and exit."""
    db = await open_pool(
        settings.database_url,
        name="cg-ledger",
        max_size=settings.ledger_max_in_flight + 4,
        configure=create_staging_table,
    )
    nats = await connect_nats(settings.nats_url, name="cg-ledger")
    redis = connect_redis(settings.redis_url, timeout_secs=1.0)
    try:
        js = nats.jetstream()
        topology = Topology.from_settings(settings)
        await require(js, topology, needs(topology))
        async with db.connection() as conn:
            changes = await dimension_rollups.bring_list_to(conn, settings.groupings())
        if changes.added or changes.removed or changes.retiered:
            log.info(
                "rolled-up groupings changed",
                added=changes.added,
                removed=changes.removed,
                tier_changed=changes.retiered,
                awaiting_rebuild=changes.incomplete,
            )
        spec = usage_consumer_spec(settings, topology)
        consumer = BatchConsumer(nats, spec, UsageRecorder(db, nats, Pricer(), AlertPublisher(db, nats)))
        billing = BatchConsumer(nats, billing_consumer_spec(topology), BilledCostRecorder(db))
        health_consumer = BatchConsumer(nats, probe_result_consumer_spec(topology), KeyHealthRecorder(db))
        REGISTRY.register(ConsumerStatsCollector("cg_ledger", consumer.stats))
        REGISTRY.register(ConsumerStatsCollector("cg_ledger_probe_results", health_consumer.stats))
        health = readiness_server(db, nats, port=settings.ledger_port)
        await health.start()
        on_termination(consumer.stop, billing.stop, health_consumer.stop)
        lag = asyncio.create_task(_track_lag(js, spec))
        beating = asyncio.create_task(keep_beating(redis, "ledger", healthy=lambda: nats.is_connected))
        folder = RollupFolder(db, interval_secs=settings.ledger_fold_interval_secs, alerts=AlertPublisher(db, nats))
        folding = asyncio.create_task(folder.run())
        log.info("ledger started", consumer=spec.durable, health_port=settings.ledger_port)
        try:
            await asyncio.gather(consumer.run(), billing.run(), health_consumer.run())
        finally:
            lag.cancel()
            beating.cancel()
            folder.stop()
            await folding  # its last round folds what the final batches left pending
            await health.stop()
        log.info("ledger stopped")
    finally:
        await close_nats(nats)
        await redis.aclose()
        await db.close()


async def _track_lag(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Keep the lag gauges current: how far the ledger is behind what other systems have reported."""
    while True:
        with contextlib.suppress(Exception):
            info = await js.consumer_info(spec.stream, spec.durable)
            metrics.LAG.set(info.num_pending or 0)
            metrics.ACK_PENDING.set(info.num_ack_pending or 0)
        await asyncio.sleep(LAG_REFRESH_SECS)
