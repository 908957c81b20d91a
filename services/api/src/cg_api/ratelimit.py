"""A token bucket per client, held in Redis so that every api replica draws from the same one.

Each decision is one Lua script run, timed by the Redis server's own clock: replicas whose clocks disagree still
refill the bucket at exactly RATE_LIMIT_RPM. When Redis does not answer within REDIS_TIMEOUT_MS, the request is
decided by RATE_LIMIT_FAIL_MODE at once, and Redis is left alone for a short cool-down instead of making every
request wait out the same timeout against a hung server.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Literal

from cg_common.logging import get_logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = get_logger(__name__)

HITS_KEY = "cg:ratelimit:hits"

# KEYS[1] bucket hash, KEYS[2] hit counter; ARGV[1] tokens per second, ARGV[2] capacity.
# Returns {admitted (0/1), milliseconds until a token is available}.
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local admitted = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  admitted = 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
  redis.call('INCR', KEYS[2])
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {admitted, wait_ms}
"""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    retry_after_secs: int = 0
    degraded: bool = False  # decided without Redis


class RedisTokenBucket:
    """Shared token buckets; `check(client_id)` admits or refuses one request."""

    def __init__(
        self,
        redis: Redis,
        *,
        rpm: int,
        burst: int,
        timeout_secs: float,
        fail_mode: Literal["open", "closed"],
        cooldown_secs: float = 1.0,
    ) -> None:
        self._redis = redis
        self._rate = rpm / 60.0
        self._burst = burst
        self._timeout = timeout_secs
        self._fail_open = fail_mode == "open"
        self._cooldown = cooldown_secs
        self._skip_redis_until = 0.0
        self._script = redis.register_script(BUCKET_SCRIPT)

    async def check(self, client_id: str) -> Decision:
        if time.monotonic() < self._skip_redis_until:
            return self._degraded()
        try:
            async with asyncio.timeout(self._timeout):
                admitted, wait_ms = await self._script(
                    keys=[bucket_key(client_id), HITS_KEY], args=[self._rate, self._burst]
                )
        except (RedisError, OSError, TimeoutError) as error:
            self._skip_redis_until = time.monotonic() + self._cooldown
            log.warning("rate limiter cannot reach redis", error=type(error).__name__, fail_mode=self._mode)
            return self._degraded()
        if admitted:
            return Decision(admitted=True)
        return Decision(admitted=False, retry_after_secs=max(1, math.ceil(int(wait_ms) / 1000)))

    @property
    def _mode(self) -> str:
        return "open" if self._fail_open else "closed"

    def _degraded(self) -> Decision:
        return Decision(admitted=self._fail_open, retry_after_secs=0 if self._fail_open else 1, degraded=True)


def bucket_key(client_id: str) -> str:
    """Redis key of a client's bucket: a hash, so an admin key never appears in Redis."""
    return "cg:ratelimit:" + hashlib.sha256(client_id.encode()).hexdigest()[:32]


async def rate_limit_hits(redis: Redis) -> int | None:
    """Requests refused so far by every replica; None when Redis cannot say."""
    try:
        value = await redis.get(HITS_KEY)
    except (RedisError, OSError):
        return None
    return int(value or 0)
