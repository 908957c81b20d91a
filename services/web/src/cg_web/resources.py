"""What the dashboard holds while it runs: the api client, the live cost feed, the chart's day cache and the
login limiter. Opened in the app's lifespan, closed on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request

from cg_common.messaging import close_nats, connect_nats
from cg_common.ratelimit import RedisTokenBucket
from cg_web.access import session_of
from cg_web.api_client import Api
from cg_web.live import CostFeed
from cg_web.overview_data import DayCache
from cg_web.settings import WebSettings


@dataclass(frozen=True)
class Resources:
    settings: WebSettings
    http: httpx.AsyncClient
    feed: CostFeed
    day_cache: DayCache
    login_limiter: RedisTokenBucket

    def api_for(self, request: Request) -> Api:
        """The api as the person behind this request may use it: their session, the dashboard's credential."""
        return Api(self.http, session=session_of(request))

    @property
    def api(self) -> Api:
        """The api without anyone's session: only what the dashboard's credential may do alone (sign people in)."""
        return Api(self.http)


@asynccontextmanager
async def open_resources(settings: WebSettings) -> AsyncIterator[Resources]:
    day_cache = DayCache()
    feed = CostFeed(on_day_changed=day_cache.forget)
    # Sign-in attempts are limited per client address in the shared Redis, so that every replica counts them
    # together; when Redis does not answer, sign-in is refused rather than left open to guessing.
    limiter = RedisTokenBucket(
        settings.redis_url,
        rpm=settings.login_attempts_per_minute,
        burst=settings.login_attempts_per_minute,
        timeout_secs=settings.redis_timeout_ms / 1000,
        fail_mode="closed",
    )
    async with Api.client(settings.api_url, settings.dashboard_api_key, settings.api_timeout_secs) as http:
        nats = await connect_nats(settings.nats_url, name="cg-web")
        try:
            await feed.start(nats)
            yield Resources(settings, http, feed, day_cache, limiter)
        finally:
            await feed.close()
            await close_nats(nats)
            await limiter.close()


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]
