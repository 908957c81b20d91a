"""Liveness beats of background services, kept in Redis so that any api replica can report them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cg_common.logging import get_logger

log = get_logger(__name__)

BEAT_EVERY_SECS = 2.0
BEAT_TTL_SECS = 10  # a service silent this long is reported dead


def heartbeat_key(service: str) -> str:
    return f"cg:heartbeat:{service}"


async def beat(redis: Redis, service: str, *, ttl_secs: int = BEAT_TTL_SECS) -> None:
    """Say `service` is alive for the next `ttl_secs`; a missing key means it is not."""
    await redis.set(heartbeat_key(service), datetime.now(UTC).isoformat(), ex=ttl_secs)


async def keep_beating(
    redis: Redis,
    service: str,
    *,
    healthy: Callable[[], bool],
    every_secs: float = BEAT_EVERY_SECS,
    ttl_secs: int = BEAT_TTL_SECS,
) -> None:
    """Beat every `every_secs` while `healthy()` says the service does its work, until cancelled. Redis being away
    only costs the beat (which is what it is for), never the service."""
    while True:
        if healthy():
            try:
                await beat(redis, service, ttl_secs=ttl_secs)
            except (RedisError, OSError) as error:
                log.warning("heartbeat not stored", service=service, error=type(error).__name__)
        await asyncio.sleep(every_secs)


async def last_beat(redis: Redis, service: str) -> datetime | None:
    value = await redis.get(heartbeat_key(service))
    if not value:
        return None
    return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
