"""Live updates: one core NATS subscription to `cg.cost.batch.recorded` per replica (one small notice per batch the
ledger commits, not one message per event), fanned out to every open server-sent-event stream. Bursts are coalesced
(each stream holds at most one pending notice and sends at most one per second), so a ledger recording thousands of
events a second costs each browser one refresh a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import date

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from cg_common.cost_batches import CostBatchRecorded
from cg_common.logging import get_logger
from cg_common.subjects import COST_BATCH_RECORDED

log = get_logger(__name__)

HEARTBEAT_SECS = 15.0  # a comment line now and then keeps proxies from closing an idle stream
MIN_GAP_SECS = 1.0
EVENT_NAME = "cost"


class CostFeed:
    def __init__(self, on_day_changed: Callable[[date], None]) -> None:
        self._listeners: set[asyncio.Queue[None]] = set()
        self._on_day_changed = on_day_changed
        self._subscription: Subscription | None = None
        self._closed = asyncio.Event()

    async def start(self, nc: NATS) -> None:
        self._subscription = await nc.subscribe(COST_BATCH_RECORDED, cb=self._on_message)

    async def close(self) -> None:
        self._closed.set()
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        try:
            notice = CostBatchRecorded.model_validate_json(msg.data)
        except ValidationError:
            # Costs were recorded all the same: the browsers still refresh, only the cached days stay until they expire.
            log.warning("unreadable cost batch notice")
        else:
            for day in notice.days:
                self._on_day_changed(day.day)
        for queue in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def stream(self) -> AsyncIterator[str]:
        """The SSE body for one browser: `event: cost` after costs were recorded, a comment as heartbeat."""
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._listeners.add(queue)
        try:
            yield "retry: 5000\n\n"
            while not self._closed.is_set():
                try:
                    await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_SECS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {EVENT_NAME}\ndata: recorded\n\n"
                await asyncio.sleep(MIN_GAP_SECS)
        finally:
            self._listeners.discard(queue)
