"""Moves the roll-up sums that batches leave pending into the roll-ups, every few moments, off the write path, and
sums the history of a dimension grouping that lacks it (`dimension_rollups.rebuild`), and publishes the budget
alerts a batch decided but could not publish.

Summaries count pending sums too, so folding changes no figure: it only keeps the pending table small and turns the
many small sums that thousands of batches leave for one (hour, key, source, model) into one roll-up update.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from cg_common.db import Connection
from cg_common.logging import get_logger
from cg_ledger import dimension_rollups, metrics
from cg_ledger.alert_publisher import AlertPublisher
from cg_ledger.store import fold_pending

log = get_logger(__name__)


class RollupFolder:
    """Folds every `interval_secs` until stopped, and once more on the way out."""

    def __init__(
        self, db: AsyncConnectionPool[Connection], *, interval_secs: float, alerts: AlertPublisher | None = None
    ) -> None:
        self._db = db
        self._alerts = alerts
        self._interval_secs = interval_secs
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval_secs)
            await self.fold_once()
            await self.rebuild_incomplete()
            if self._alerts is not None:
                await self._publish_left_over()

    async def fold_once(self) -> int:
        """One fold; a database fault is logged and left for the next round (pending sums wait safely)."""
        try:
            async with self._db.connection() as conn, conn.transaction():
                moved = await fold_pending(conn)
        except (psycopg.Error, PoolTimeout) as error:
            log.warning("roll-up fold failed; retrying next round", error=f"{type(error).__name__}: {error}"[:300])
            return 0
        metrics.PENDING_FOLDED.inc(moved)
        return moved

    async def _publish_left_over(self) -> None:
        """Alerts a batch decided but could not publish (a crash, a NATS fault) go out now."""
        assert self._alerts is not None  # noqa: S101 - checked by the caller
        try:
            await self._alerts.publish()
        except (psycopg.Error, PoolTimeout) as error:
            log.warning("budget alerts left for the next round", error=f"{type(error).__name__}: {error}"[:300])

    async def rebuild_incomplete(self) -> list[str]:
        """Sum the history of groupings added since usage was stored; one replica does it, the others' folds wait."""
        try:
            async with self._db.connection() as conn:
                if not await dimension_rollups.incomplete(conn):
                    return []
            rebuilt = await dimension_rollups.rebuild(self._db)
        except (psycopg.Error, PoolTimeout) as error:
            log.warning("roll-up rebuild failed; retrying next round", error=f"{type(error).__name__}: {error}"[:300])
            return []
        if rebuilt:
            log.info("dimension roll-ups rebuilt from the stored usage", groupings=rebuilt)
        return rebuilt
