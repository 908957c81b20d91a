"""A dependency that is down is a 503 within 2 s, never a 500 or a hang, and the api recovers by itself: PostgreSQL
stopped for a while under a running api (every route of the app, enumerated from it), then NATS, then Redis (in both
of the limiter's fail modes); and the dashboard says so in a sentence. Each test stops servers of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cg_api.app import create_app
from cg_api.settings import ApiSettings
from cg_common.migrate import apply_migrations
from cg_devstack.nats_server import start_nats
from cg_devstack.postgres_server import start_postgres
from cg_devstack.redis_server import start_redis
from tests.conftest import settings_from
from tests.support.jetstream import provision_for
from tests.support.keys import fake_openai_key
from tests.support.processes import free_port, running_api
from tests.support.routes import EXEMPT, REQUESTS, SOURCE, app_routes, call
from tests.support.usage import usage_event
from tests.test_web_access import dashboard, signed_in, web_settings

OUTAGE_SECS = 20.0  # long enough for a client library's reconnection back-off to have grown
ANSWER_WITHIN_SECS = 2.0
RECOVER_WITHIN_SECS = 5.0


@asynccontextmanager
async def running(settings: ApiSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers={"X-API-Key": settings.api_key}
        ) as c,
    ):
        yield app, c


async def every_route(
    client: httpx.AsyncClient, check: Callable[[tuple[str, str], httpx.Response, float], None]
) -> None:
    for route, (request, _normal, _needs) in REQUESTS.items():
        response, took = await call(client, request, admin_key=client.headers["X-API-Key"])
        check(route, response, took)


async def until(answered: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    started = time.monotonic()
    while not await answered():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not within {within} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_postgres_stopped_under_a_running_api_is_503_on_every_route_then_recovers(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    postgres = start_postgres(tmp_path / "pg", port=port)
    try:
        apply_migrations(postgres.url)
        settings = settings_from({**api_env, "DATABASE_URL": postgres.url, "PROBE_WAIT_SECS": "1"})
        async with running(settings) as (app, client):
            assert app_routes(app) == set(REQUESTS)
            assert (await client.post("/keys", json={"label": "k", "api_key": fake_openai_key()})).json()["id"] == 1

            postgres.stop()
            down_since = time.monotonic()
            while time.monotonic() - down_since < OUTAGE_SECS:  # callers keep coming all along

                def while_down(route: tuple[str, str], response: httpx.Response, took: float) -> None:
                    _request, normal, needs_postgres = REQUESTS[route]
                    assert took < ANSWER_WITHIN_SECS, (route, took)
                    if not needs_postgres:
                        assert response.status_code == normal, (route, response.text)
                    elif route == ("GET", "/ready"):
                        assert response.status_code == 503 and response.json()["checks"]["postgres"] == "down"
                    else:
                        assert response.status_code == 503, (route, response.status_code, response.text)
                        assert response.json()["dependency"] == "postgres", route
                        assert int(response.headers["retry-after"]) >= 1

                await every_route(client, while_down)

            postgres = start_postgres(tmp_path / "pg", port=port)  # same data, same port
            recovery = await until(
                lambda: _answers(client, "/keys", 200), RECOVER_WITHIN_SECS, "GET /keys after PostgreSQL returned"
            )

            def after(route: tuple[str, str], response: httpx.Response, _took: float) -> None:
                assert response.status_code == REQUESTS[route][1], (route, response.status_code, response.text)

            await every_route(client, after)
    finally:
        postgres.stop()
    assert recovery < RECOVER_WITHIN_SECS


async def test_nats_stopped_is_503_on_what_publishes_then_recovers(api_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    server = start_nats(tmp_path / "nats", port=port)
    try:
        provision_for({"NATS_URL": server.url})
        settings = settings_from({**api_env, "NATS_URL": server.url, "PROBE_WAIT_SECS": "1"})
        async with running(settings) as (_app, client):
            key_id = (await client.post("/keys", json={"label": "k", "api_key": fake_openai_key()})).json()["id"]
            event = usage_event(source=SOURCE, event_id="during-the-outage")
            assert (
                await client.post("/usage/events", json=usage_event(source=SOURCE, event_id="before"))
            ).status_code == 202

            server.stop()
            await asyncio.sleep(0.5)  # the client notices the closed socket
            for method, url, body in (("POST", "/usage/events", event), ("POST", f"/keys/{key_id}/probe", None)):
                started = time.monotonic()
                response = await client.request(method, url, json=body)
                assert time.monotonic() - started < ANSWER_WITHIN_SECS, url
                assert response.status_code == 503, (url, response.text)
                assert response.json()["dependency"] == "nats" and int(response.headers["retry-after"]) >= 1
            metrics = await client.get("/metrics")  # what only reads NATS answers, saying it does not know
            assert metrics.status_code == 200 and metrics.json()["pipeline"]["dlq"]["messages"] is None

            server = start_nats(tmp_path / "nats", port=port)
            recovery = await until(
                lambda: _answers(client, "/usage/events", 202, json=event),
                RECOVER_WITHIN_SECS,
                "POST /usage/events after NATS returned",
            )
            probe = await client.post(f"/keys/{key_id}/probe")
            assert probe.status_code == 504  # published, and no prober runs here: its documented answer
    finally:
        server.stop()
    assert recovery < RECOVER_WITHIN_SECS


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_redis_stopped_is_only_felt_where_it_is_needed_then_recovers(
    api_env: dict[str, str], tmp_path: Path, fail_mode: str
) -> None:
    """Redis holds only rebuildable state: while it is away the limiter keeps its fail mode (open: requests pass;
    closed: a 503 naming Redis), /metrics says it cannot count refusals, /ready says Redis is down."""
    port = free_port()
    redis = start_redis(tmp_path / "redis", port=port)
    try:
        env = {**api_env, "REDIS_URL": redis.url, "RATE_LIMIT_FAIL_MODE": fail_mode, "PROBE_WAIT_SECS": "1"}
        async with running(settings_from(env)) as (app, client):
            assert app_routes(app) == set(REQUESTS)
            assert (await client.post("/keys", json={"label": "k", "api_key": fake_openai_key()})).json()["id"] == 1
            redis.stop()

            def while_down(route: tuple[str, str], response: httpx.Response, took: float) -> None:
                _request, normal, _needs = REQUESTS[route]
                assert took < ANSWER_WITHIN_SECS, (route, took)
                if fail_mode == "closed" and route not in EXEMPT:
                    assert response.status_code == 503, (route, response.status_code, response.text)
                    assert response.json()["dependency"] == "redis", route
                    assert int(response.headers["retry-after"]) >= 1
                elif route == ("GET", "/ready"):
                    assert response.status_code == 503 and response.json()["checks"]["redis"] == "down"
                else:
                    assert response.status_code == normal, (route, response.status_code, response.text)
                    if route == ("GET", "/metrics"):
                        assert response.json()["counters"]["rate_limit_hits"] is None

            await every_route(client, while_down)

            redis = start_redis(tmp_path / "redis", port=port)
            recovery = await until(lambda: _answers(client, "/ready", 200), RECOVER_WITHIN_SECS, "/ready after Redis")

            def after(route: tuple[str, str], response: httpx.Response, _took: float) -> None:
                assert response.status_code == REQUESTS[route][1], (route, response.status_code, response.text)

            await every_route(client, after)
    finally:
        redis.stop()
    assert recovery < RECOVER_WITHIN_SECS


async def test_the_dashboard_says_in_a_sentence_that_postgres_is_away_and_recovers(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    postgres = start_postgres(tmp_path / "pg", port=port)
    try:
        apply_migrations(postgres.url)
        env = {**api_env, "DATABASE_URL": postgres.url}
        with running_api(env, tmp_path / "api.log") as api:
            web_env = {
                "ENV": "development",
                "NATS_URL": api_env["NATS_URL"],
                "REDIS_URL": api_env["REDIS_URL"],
                "DASHBOARD_API_KEY": api_env["DASHBOARD_API_KEY"],
                "API_URL": api.url,
                "LOGIN_ATTEMPTS_PER_MINUTE": "1000",
            }
            async with dashboard(web_settings(web_env)) as web:
                await signed_in(web)
                postgres.stop()
                page = await web.get("/dashboard/keys")
                assert "PostgreSQL is not answering right now" in page.text, page.text
                assert ("Traceback" not in page.text and page.status_code < 500) or page.status_code == 503
                postgres = start_postgres(tmp_path / "pg", port=port)
                await until(
                    lambda: _page_without(web, "/dashboard/keys", "not answering"), RECOVER_WITHIN_SECS, "the page"
                )
    finally:
        postgres.stop()


async def _answers(client: httpx.AsyncClient, url: str, status: int, **kwargs: Any) -> bool:
    method = "POST" if "json" in kwargs else "GET"
    return (await client.request(method, url, **kwargs)).status_code == status


async def _page_without(client: httpx.AsyncClient, path: str, words: str) -> bool:
    page = await client.get(path)
    return page.status_code == 200 and words not in page.text
