"""PostgreSQL access: one async psycopg pool per process, opened by the service's lifespan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

Connection = AsyncConnection[dict[str, Any]]

# Faults of the database or the network rather than of the data: the same work, tried again later, can succeed.
TRANSIENT_DB_ERRORS = (
    psycopg.OperationalError,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.LockNotAvailable,
    PoolTimeout,
)


# psycopg_pool retries a failed connection with a delay that doubles each time (1, 2, 4 … s) until it gives up after
# `reconnect_timeout` (5 min by default): after an outage of a minute, a pool could wait half a minute more before it
# noticed PostgreSQL was back. Giving up after a few seconds bounds that: the next request that finds the pool empty
# starts a fresh attempt at once.
RECONNECT_GIVE_UP_SECS = 3.0
CONNECT_TIMEOUT_SECS = 2  # libpq's, for a server that does not answer at all (a dropped route, a frozen host)
# JIT compilation pays off for queries of seconds; ours take milliseconds, and a summary grouping thousands of values
# (a customer dimension) crosses jit_above_cost, where compiling would cost more than running.
SESSION_OPTIONS = "-c jit=off"


async def open_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = "cg",
    wait_secs: float = 10.0,
    open_wait_secs: float = 10.0,
    configure: Callable[[Connection], Awaitable[None]] | None = None,
) -> AsyncConnectionPool[Connection]:
    """An open pool whose connections return rows as dicts. Opening fails within `open_wait_secs` if PostgreSQL does
    not answer; asking for a connection raises `PoolTimeout` after `wait_secs` without one.

    A connection is checked as it is handed out, so one broken by a restart of PostgreSQL is replaced rather than
    failing its caller; `configure` runs once on every new connection (session set-up such as temporary tables)."""
    pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=wait_secs,
        reconnect_timeout=RECONNECT_GIVE_UP_SECS,
        kwargs={
            "row_factory": dict_row,
            "application_name": name,
            "connect_timeout": CONNECT_TIMEOUT_SECS,
            # DATABASE_URL's own `options`, where it has some, are the operator's and win.
            **({} if "options=" in database_url else {"options": SESSION_OPTIONS}),
        },
        connection_class=AsyncConnection[dict[str, Any]],
        configure=configure,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=open_wait_secs)
    return pool
