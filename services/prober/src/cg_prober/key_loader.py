"""Key look-ups shared by concurrent probes: every key asked for while a query is on its way is read by the next
query, in one `WHERE id = ANY(…)`, instead of one round trip (and its share of CPU) per probe.

Nothing is cached: each probe reads its key at the moment it runs, so a key deleted or deactivated a moment ago is
seen as such.
"""

from __future__ import annotations

import asyncio

from psycopg_pool import AsyncConnectionPool

from cg_common.db import Connection
from cg_prober.keys_repo import StoredKey, load_keys

MAX_BATCH = 500
QUERIES_IN_FLIGHT = 2


class KeyLoader:
    def __init__(self, db: AsyncConnectionPool[Connection]) -> None:
        self._db = db
        self._waiting: dict[int, list[asyncio.Future[StoredKey | None]]] = {}
        self._queries = asyncio.Semaphore(QUERIES_IN_FLIGHT)
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self, key_id: int) -> StoredKey | None:
        """The key as stored now (None when no such row); raises what PostgreSQL raised."""
        found: asyncio.Future[StoredKey | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key_id, []).append(found)
        if not self._scheduled:
            self._scheduled = True
            self._spawn()
        return await found

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self._query())
        self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _query(self) -> None:
        async with self._queries:
            self._scheduled = False
            ids = list(self._waiting)[:MAX_BATCH]
            batch = {key_id: self._waiting.pop(key_id) for key_id in ids}
            if self._waiting and not self._scheduled:  # more than one batch's worth: the rest go next
                self._scheduled = True
                self._spawn()
            try:
                async with self._db.connection() as conn:
                    keys = await load_keys(conn, ids)
            except Exception as error:  # every waiting probe gets the failure, whatever it is; none hangs
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                return
            for key_id, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(keys.get(key_id))
