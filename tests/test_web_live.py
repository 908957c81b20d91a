"""The dashboard's live feed on a real NATS: a `cg.cost.batch.recorded` notice drops the days it names from the chart's
day cache and wakes every open event stream, which still coalesce a burst into at most one refresh a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import pytest
from nats.aio.client import Client as NATS

from cg_common.cost_batches import CostBatchRecorded, DayCost
from cg_common.subjects import COST_BATCH_RECORDED
from cg_web.live import EVENT_NAME, MIN_GAP_SECS, CostFeed
from cg_web.overview_data import DayCache

COST_EVENT = f"event: {EVENT_NAME}\ndata: recorded\n\n"
NOVEMBER = [date(2026, 11, day) for day in range(1, 31)]


def notice(*days: date) -> bytes:
    costs = tuple(DayCost(day=day, events=2, cost=Decimal("0.5")) for day in days)
    batch = CostBatchRecorded(days=costs, events=2 * len(days), cost=Decimal("0.5") * len(days))
    return batch.model_dump_json().encode()


@pytest.fixture
async def feed(nc: NATS) -> AsyncIterator[tuple[CostFeed, DayCache]]:
    cache = DayCache()
    for day in NOVEMBER:
        cache.put(day, {"gpt-4.1": Decimal(1)})
    cost_feed = CostFeed(on_day_changed=cache.forget)
    await cost_feed.start(nc)
    await nc.flush()  # the server has the subscription before anything is published
    yield cost_feed, cache
    await cost_feed.close()


async def opened(cost_feed: CostFeed) -> AsyncIterator[str]:
    """An event stream as a browser holds it, past its opening line (from then on it is listening)."""
    stream = cost_feed.stream()
    assert await anext(stream) == "retry: 5000\n\n"
    return stream


async def test_a_notice_forgets_its_days_and_wakes_every_stream(nc: NATS, feed: tuple[CostFeed, DayCache]) -> None:
    cost_feed, cache = feed
    browsers = [await opened(cost_feed) for _ in range(3)]
    await nc.publish(COST_BATCH_RECORDED, notice(NOVEMBER[2], NOVEMBER[20]))
    for browser in browsers:
        assert await asyncio.wait_for(anext(browser), 5) == COST_EVENT
    assert [day for day in NOVEMBER if cache.get(day) is None] == [NOVEMBER[2], NOVEMBER[20]]

    # An unreadable notice still means costs were recorded: streams wake, and no cached day is dropped.
    await nc.publish(COST_BATCH_RECORDED, b'{"days": "soon"}')
    for browser in browsers:
        assert await asyncio.wait_for(anext(browser), 5) == COST_EVENT
    assert [day for day in NOVEMBER if cache.get(day) is None] == [NOVEMBER[2], NOVEMBER[20]]


async def test_a_burst_of_notices_costs_a_stream_at_most_one_refresh_a_second(
    nc: NATS, feed: tuple[CostFeed, DayCache]
) -> None:
    cost_feed, cache = feed
    browser = await opened(cost_feed)

    async def burst(days: list[date]) -> None:  # a ledger at full rate: a dozen batches a second, each announced
        for day in days:
            await nc.publish(COST_BATCH_RECORDED, notice(day))
        await nc.flush()

    await burst(NOVEMBER[:15])
    assert await asyncio.wait_for(anext(browser), 5) == COST_EVENT
    first = time.monotonic()
    # A second burst while that refresh is under way: one more refresh, a second after the first; then nothing more.
    await burst(NOVEMBER[15:])
    assert await asyncio.wait_for(anext(browser), 5) == COST_EVENT
    assert time.monotonic() - first >= MIN_GAP_SECS
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(browser), MIN_GAP_SECS * 1.5)
    assert all(cache.get(day) is None for day in NOVEMBER)
