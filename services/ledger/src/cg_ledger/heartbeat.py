"""The ledger's liveness beat in Redis, which the api reports under `/metrics` `pipeline.ledger`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cg_common.heartbeats import beat
from cg_common.logging import get_logger

log = get_logger(__name__)

BEAT_EVERY_SECS = 2.0
BEAT_TTL_SECS = 10  # a ledger silent this long is reported dead


async def keep_beating(redis: Redis, healthy: Callable[[], bool]) -> None:
    """Beat while `healthy()` holds (NATS connected); Redis being away only costs the beat, never the ledger."""
    while True:
        if healthy():
            try:
                await beat(redis, "ledger", ttl_secs=BEAT_TTL_SECS)
            except (RedisError, OSError) as error:
                log.warning("heartbeat not stored", error=type(error).__name__)
        await asyncio.sleep(BEAT_EVERY_SECS)
