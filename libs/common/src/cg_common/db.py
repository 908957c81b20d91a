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


async def open_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = "cg",
    wait_secs: float = 10.0,
    configure: Callable[[Connection], Awaitable[None]] | None = None,
) -> AsyncConnectionPool[Connection]:
    """An open pool whose connections return rows as dicts; fails within `wait_secs` if Postgres does not answer.

    `configure` runs once on every new connection (session set-up such as temporary tables)."""
    pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=wait_secs,
        kwargs={"row_factory": dict_row, "application_name": name},
        connection_class=AsyncConnection[dict[str, Any]],
        configure=configure,
    )
    await pool.open(wait=True, timeout=wait_secs)
    return pool
