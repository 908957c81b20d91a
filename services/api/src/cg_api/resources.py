"""What the api holds while it runs: database pool, Redis, NATS, the key cipher, the rate limiter and the
credentials it recognises; and what it does meanwhile: answering admission over NATS, sweeping expired reservations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from cg_api.admission_batcher import AdmissionBatcher
from cg_api.admission_nats import AdmitResponder
from cg_api.credentials import Credentials
from cg_api.reservation_sweeper import sweep_until
from cg_api.settings import ApiSettings
from cg_api.vault import key_cipher
from cg_common.cache import connect_redis
from cg_common.crypto import KeyCipher
from cg_common.db import Connection, open_pool
from cg_common.messaging import close_nats, connect_nats
from cg_common.ratelimit import RedisTokenBucket


@dataclass(frozen=True)
class Resources:
    settings: ApiSettings
    db: AsyncConnectionPool[Connection]
    redis: Redis
    nats: NATS
    js: JetStreamContext
    cipher: KeyCipher
    limiter: RedisTokenBucket
    credentials: Credentials
    admissions: AdmissionBatcher


@asynccontextmanager
async def open_resources(settings: ApiSettings) -> AsyncIterator[Resources]:
    """Open every connection and close them all on the way out."""
    cipher = key_cipher(settings)
    db = await open_pool(settings.database_url, name="cg-api", wait_secs=settings.database_wait_secs)
    redis = connect_redis(settings.redis_url, timeout_secs=settings.redis_timeout_ms / 1000)
    nats = await connect_nats(settings.nats_url, name="cg-api")
    limiter = RedisTokenBucket(
        settings.redis_url,
        rpm=settings.rate_limit_rpm,
        burst=settings.rate_limit_burst,
        timeout_secs=settings.redis_timeout_ms / 1000,
        fail_mode=settings.rate_limit_fail_mode,
    )
    stopping = asyncio.Event()
    sweeping = asyncio.create_task(sweep_until(stopping, db))
    admissions = AdmissionBatcher(db)
    admissions.start()
    try:
        admits = await AdmitResponder(admissions).subscribe(nats)
        js = nats.jetstream()
        yield Resources(settings, db, redis, nats, js, cipher, limiter, Credentials(settings, db), admissions)
        await admits.unsubscribe()
    finally:
        stopping.set()
        await sweeping  # its connection back in the pool, its transaction ended, before the pool closes
        await admissions.stop()
        await limiter.close()
        await close_nats(nats)
        await redis.aclose()
        await db.close()
