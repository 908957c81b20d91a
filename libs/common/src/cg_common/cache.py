"""Redis client for shared, rebuildable state; fails fast instead of redis-py's minute of retries."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect_redis(url: str, *, timeout_secs: float = 0.1) -> Redis:
    """A client whose every call gives up after `timeout_secs`, without retrying: callers decide what to do."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_secs,
        socket_connect_timeout=timeout_secs,
        retry=Retry(NoBackoff(), retries=0),
        health_check_interval=0,
        decode_responses=False,
    )
