"""Reservations whose ttl has passed, ended as expired, their money given back to their budgets: every api replica
sweeps once a second (replicas do not step on each other: each reservation ends once, under its budgets' locks), so
an unsettled reservation is released within a few seconds of its ttl, whichever replicas are alive."""

from __future__ import annotations

import asyncio
import contextlib

from psycopg_pool import AsyncConnectionPool

from cg_api import admission_repo
from cg_common.db import TRANSIENT_DB_ERRORS, Connection
from cg_common.logging import get_logger

log = get_logger(__name__)

SWEEP_EVERY_SECS = 1.0
BATCH = 1000


async def sweep_until(stopping: asyncio.Event, db: AsyncConnectionPool[Connection]) -> None:
    """Rounds until `stopping` is set; the round in hand finishes first. (Stopped by an event, not by cancelling:
    psycopg turns a cancellation mid-query into a cancelled query, an error like any other.)"""
    while not stopping.is_set():
        try:
            while True:
                async with db.connection() as conn:
                    ended = await admission_repo.expire(conn, BATCH)
                if ended < BATCH:
                    break
        except TRANSIENT_DB_ERRORS as error:  # PostgreSQL away: the next round tries again
            log.debug("reservations not swept", error=str(error)[:200])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=SWEEP_EVERY_SECS)
