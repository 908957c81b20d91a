"""Admits decided in batches: every request waiting when a worker is free goes into one transaction, one call of
`admit_reservations` and one commit. On a contended budget each admit must wait for the one before it to commit
(they hold the same lock), and a commit is a disk flush: batching pays that flush once per batch instead of once
per admit, while PostgreSQL still decides each request in order under the budgets' locks."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool

from cg_api import admission_repo
from cg_common.db import Connection

MAX_BATCH = 200
WORKERS = 4  # batches in flight per replica: admits against different budgets need not wait for each other


class AdmissionBatcher:
    def __init__(self, db: AsyncConnectionPool[Connection]) -> None:
        self._db = db
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._arrived = asyncio.Event()
        self._stopping = False
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(WORKERS)]

    async def stop(self) -> None:
        """Batches in hand are decided and answered; nothing more is taken. (Not by cancelling: psycopg turns a
        cancellation mid-query into a cancelled query, which a worker would answer and carry on from.)"""
        self._stopping = True
        self._arrived.set()
        await asyncio.gather(*self._workers)

    async def admit(self, request: dict[str, Any]) -> dict[str, Any]:
        """The decision for one request (`admit_reservations`' row); raises what the database raised."""
        decided: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, decided))
        self._arrived.set()
        return await decided

    async def _work(self) -> None:
        while not self._stopping:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                async with self._db.connection() as conn, conn.transaction():
                    rows = await admission_repo.admit_batch(conn, [request for request, _ in batch])
            except Exception as error:  # every waiting request hears of it: a 503 for a database fault
                for _, decided in batch:
                    if not decided.done():
                        decided.set_exception(error)
                continue
            for (_, decided), row in zip(batch, rows, strict=True):
                if not decided.done():  # a caller that gave up: its reservation expires with its ttl
                    decided.set_result(row)
