"""The notifier process: connections, the alert consumer, the delivery loop, test requests, the health port, and a
clean stop on SIGTERM."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY

from cg_common.cache import connect_redis
from cg_common.consumer import ConsumerSpec, ConsumerStatsCollector, PerMessageConsumer
from cg_common.crypto import KeyCipher
from cg_common.db import open_pool
from cg_common.health_server import readiness_server
from cg_common.heartbeats import keep_beating
from cg_common.logging import get_logger
from cg_common.messaging import close_nats, connect_nats
from cg_common.settings import fail
from cg_common.signals import on_termination
from cg_common.subjects import ALERT_STREAM, DLQ, DLQ_STREAM
from cg_common.topology import Needs, Topology, require
from cg_notifier.dispatcher import Dispatcher
from cg_notifier.intake import AlertIntake
from cg_notifier.settings import NotifierSettings
from cg_notifier.webhook_tests import WebhookTestResponder

log = get_logger(__name__)

INTAKE_CONCURRENCY = 16  # alerts turned into deliveries at once: each is one short transaction


def needs(topology: Topology) -> Needs:
    return Needs(streams=(ALERT_STREAM, DLQ_STREAM), consumers=(topology.notifier_alerts,))


async def run(settings: NotifierSettings) -> None:
    """Run until SIGTERM or SIGINT; attempts in hand get their timeout to finish."""
    if not settings.master_keys:
        fail("invalid configuration: MASTER_KEY: the notifier needs the api's MASTER_KEY to open webhook secrets")
    cipher = KeyCipher(settings.master_keys)
    db = await open_pool(settings.database_url, name="cg-notifier", max_size=8)
    nats = await connect_nats(settings.nats_url, name="cg-notifier")
    redis = connect_redis(settings.redis_url, timeout_secs=1.0)
    limits = httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=32)
    client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)
    try:
        topology = Topology.from_settings(settings)
        await require(nats.jetstream(), topology, needs(topology))
        dispatcher = Dispatcher(db, cipher, client, settings)
        intake = PerMessageConsumer(
            nats,
            ConsumerSpec(topology.notifier_alerts, dlq_subject=f"{DLQ}.alert", batch_size=INTAKE_CONCURRENCY),
            AlertIntake(db, made=dispatcher.wake),
            concurrency=INTAKE_CONCURRENCY,
            grace_secs=5.0,
        )
        REGISTRY.register(ConsumerStatsCollector("cg_notifier_alerts", intake.stats))
        tests = await WebhookTestResponder(db, dispatcher, lease_secs=settings.lease_secs).subscribe(nats)
        health = readiness_server(db, nats, port=settings.notifier_port)
        await health.start()
        on_termination(intake.stop, dispatcher.stop)
        beating = asyncio.create_task(
            keep_beating(redis, "notifier", healthy=lambda: nats.is_connected and dispatcher.working)
        )
        log.info("notifier started", consumer=topology.notifier_alerts.durable, health_port=settings.notifier_port)
        try:
            await asyncio.gather(intake.run(), dispatcher.run())
        finally:
            await tests.unsubscribe()
            beating.cancel()
            await health.stop()
        log.info("notifier stopped")
    finally:
        await client.aclose()
        await close_nats(nats)
        await redis.aclose()
        await db.close()
