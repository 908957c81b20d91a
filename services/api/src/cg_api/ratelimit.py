"""A token bucket per client, held in Redis so that every api replica draws from the same one.

Each decision is one Lua script run, timed by the Redis server's own clock: replicas whose clocks disagree still
refill the bucket at exactly RATE_LIMIT_RPM. When Redis does not answer within REDIS_TIMEOUT_MS, the request is
decided by RATE_LIMIT_FAIL_MODE at once, and Redis is left alone for a short cool-down instead of making every
request wait out the same timeout against a hung server.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from cg_common.logging import get_logger
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

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
    """Shared token buckets; `check(client_id)` admits or refuses one request.

    Decisions that arrive while another round trip is in flight are sent together as one pipeline of script calls
    (natural batching): each decision is still its own atomic script run in Redis, but under load a replica pays one
    round trip, one system call and one reply parse per batch instead of per request.
    """

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
        self._sha = hashlib.sha1(BUCKET_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._pending: list[tuple[str, asyncio.Future[Decision]]] = []
        self._in_flight: asyncio.Task[None] | None = None

    async def check(self, client_id: str) -> Decision:
        if time.monotonic() < self._skip_redis_until:
            return self._degraded()
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append((bucket_key(client_id), future))
        if self._in_flight is None:
            self._in_flight = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Send what is pending, then whatever arrived meanwhile, until nothing is left."""
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._decide(batch)
        finally:
            self._in_flight = None

    async def _decide(self, batch: list[tuple[str, asyncio.Future[Decision]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._run_scripts([key for key, _ in batch])
            decisions = [self._decision(admitted, wait_ms) for admitted, wait_ms in replies]
        except (RedisError, OSError, TimeoutError) as error:
            self._skip_redis_until = time.monotonic() + self._cooldown
            log.warning("rate limiter cannot reach redis", error=type(error).__name__, fail_mode=self._mode)
            decisions = [self._degraded()] * len(batch)
        for (_, future), decision in zip(batch, decisions, strict=True):
            if not future.done():  # the request may have been cancelled meanwhile
                future.set_result(decision)

    async def _run_scripts(self, bucket_keys: list[str]) -> list[list[int]]:
        """One pipeline of EVALSHA calls; loads the script once if Redis lost it (restart, SCRIPT FLUSH)."""
        for _attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in bucket_keys:
                    pipe.evalsha(self._sha, 2, key, HITS_KEY, self._rate, self._burst)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(reply, NoScriptError) for reply in replies):
                errors = [reply for reply in replies if isinstance(reply, Exception)]
                if errors:
                    raise errors[0]
                return replies
            await self._redis.script_load(BUCKET_SCRIPT)
        raise RedisError("the rate-limit script could not be loaded")

    @staticmethod
    def _decision(admitted: int, wait_ms: int) -> Decision:
        if admitted:
            return Decision(admitted=True)
        return Decision(admitted=False, retry_after_secs=max(1, math.ceil(int(wait_ms) / 1000)))

    @property
    def _mode(self) -> str:
        return "open" if self._fail_open else "closed"

    def _degraded(self) -> Decision:
        return Decision(admitted=self._fail_open, retry_after_secs=0 if self._fail_open else 1, degraded=True)


@functools.lru_cache(maxsize=4096)
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
