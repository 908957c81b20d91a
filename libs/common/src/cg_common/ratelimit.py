"""A token bucket per client (as GCRA), held in Redis so that every api replica draws from the same one.

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
from typing import Literal

from redis.asyncio import Connection, ConnectionPool, Redis
from redis.exceptions import NoScriptError, RedisError

from cg_common.logging import get_logger

log = get_logger(__name__)

HITS_KEY = "cg:ratelimit:hits"

# The token bucket as GCRA (generic cell rate algorithm): the same admissions as a bucket of ARGV capacity refilled
# one token per interval, stored as one number per client (its "theoretical arrival time") instead of a hash of two,
# so that each decision costs Redis one GET and one SET.
# KEYS[1] the client's arrival time in µs, KEYS[2] refusal counter; ARGV[1] µs per token, ARGV[2] capacity × that.
# Returns {admitted (0/1), milliseconds until the next request would be admitted}.
BUCKET_SCRIPT = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - now - tolerance
if wait > 0 then
  redis.call('INCR', KEYS[2])
  return {0, math.ceil(wait / 1000)}
end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {1, 0}
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
    round trip and one system call per batch instead of per request. The limiter owns one connection and sends at
    most one batch at a time, so it needs neither redis-py's pool and pipeline objects nor their per-read timers:
    one deadline covers the whole batch, and a connection that missed it is dropped and made anew.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        rpm: int,
        burst: int,
        timeout_secs: float,
        fail_mode: Literal["open", "closed"],
        cooldown_secs: float = 1.0,
    ) -> None:
        self._connection_kwargs = {
            **ConnectionPool.from_url(redis_url).connection_kwargs,
            "socket_timeout": None,
            "socket_connect_timeout": timeout_secs,
        }
        self._connection: Connection | None = None
        self._interval_us = round(60_000_000 / rpm)
        self._burst = burst
        self._timeout = timeout_secs
        self._fail_open = fail_mode == "open"
        self._cooldown = cooldown_secs
        self._skip_redis_until = 0.0
        self._sha = hashlib.sha1(BUCKET_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._pending: list[tuple[tuple[str, int, int], asyncio.Future[Decision]]] = []
        self._in_flight: asyncio.Task[None] | None = None

    async def check(self, client_id: str, *, rpm: int | None = None, burst: int | None = None) -> Decision:
        """One request of `client_id` against its bucket: the limiter's rate and capacity, or the ones given (a
        token's own)."""
        if time.monotonic() < self._skip_redis_until:
            return self._degraded()
        interval = self._interval_us if rpm is None else round(60_000_000 / rpm)
        tolerance = interval * (burst or self._burst)
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append(((bucket_key(client_id), interval, tolerance), future))
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

    async def _decide(self, batch: list[tuple[tuple[str, int, int], asyncio.Future[Decision]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._run_scripts([bucket for bucket, _ in batch])
            decisions = [self._decision(admitted, wait_ms) for admitted, wait_ms in replies]
        except (RedisError, OSError, TimeoutError) as error:
            await self._drop_connection()
            self._skip_redis_until = time.monotonic() + self._cooldown
            log.warning("rate limiter cannot reach redis", error=type(error).__name__, fail_mode=self._mode)
            decisions = [self._degraded()] * len(batch)
        for (_, future), decision in zip(batch, decisions, strict=True):
            if not future.done():  # the request may have been cancelled meanwhile
                future.set_result(decision)

    async def _run_scripts(self, buckets: list[tuple[str, int, int]]) -> list[list[int]]:
        """One pipelined write of EVALSHA calls, then their replies; loads the script if Redis lost it."""
        connection = await self._connect()
        commands = [
            ("EVALSHA", self._sha, 2, key, HITS_KEY, interval, tolerance) for key, interval, tolerance in buckets
        ]
        try:
            await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
            return [await connection.read_response() for _ in buckets]
        except NoScriptError:
            # Redis restarted or its script cache was flushed; replies after the first may be pending, so start clean.
            await self._drop_connection()
            connection = await self._connect()
            await connection.send_command("SCRIPT", "LOAD", BUCKET_SCRIPT)
            await connection.read_response()
            return await self._run_scripts(buckets)

    async def _connect(self) -> Connection:
        if self._connection is None:
            connection = Connection(**self._connection_kwargs)
            await connection.connect()  # type: ignore[no-untyped-call]
            self._connection = connection
        return self._connection

    async def _drop_connection(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.disconnect(nowait=True)

    async def close(self) -> None:
        await self._drop_connection()

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
