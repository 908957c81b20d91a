"""Liveness beats of background services, kept in Redis so that any api replica can report them."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis


def heartbeat_key(service: str) -> str:
    return f"cg:heartbeat:{service}"


async def beat(redis: Redis, service: str, *, ttl_secs: int) -> None:
    """Say `service` is alive for the next `ttl_secs`; a missing key means it is not."""
    await redis.set(heartbeat_key(service), datetime.now(UTC).isoformat(), ex=ttl_secs)


async def last_beat(redis: Redis, service: str) -> datetime | None:
    value = await redis.get(heartbeat_key(service))
    if not value:
        return None
    return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
