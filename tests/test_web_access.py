"""The dashboard's doors: sign-in and CSRF on every mutating route (found by enumerating the app's routes, so a new
route cannot slip through), sign-in on every page unless DASHBOARD_PUBLIC, no stored key in any page, security
headers, static files, the login limiter, and clear messages when the api is away. The dashboard runs in this
process against a real `cg-api serve`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError

from cg_web.access import ANONYMOUS_MUTATIONS, SAFE_METHODS, SIGNED_IN_ONLY
from cg_web.app import ROUTERS, create_app
from cg_web.routes.overview import EVENTS_PATH
from cg_web.settings import WebSettings
from tests.conftest import ADMIN_KEY, web_env_for
from tests.support.keys import fake_openai_key
from tests.support.nats_users import env_as
from tests.support.processes import ServiceProcess, free_port, running_api, script, start_service

CSRF_IN_PAGE = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN = "/dashboard/login"


@pytest.fixture
def api_process(api_env: dict[str, str], tmp_path: Path) -> Iterator[ServiceProcess]:
    with running_api(api_env, tmp_path / "api.log") as api:
        yield api


def web_settings(env: dict[str, str]) -> WebSettings:
    """The dashboard's settings from these variables alone; NATS as the web's own user."""
    return WebSettings.model_validate({k.lower(): v for k, v in env_as(env, "web").items()})


@asynccontextmanager
async def dashboard(settings: WebSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard app with its real lifespan; each `client` is a browser of its own (its own cookies)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def another_browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=client._transport, base_url="http://web.test")


async def csrf_of(client: httpx.AsyncClient, path: str = LOGIN) -> str:
    match = CSRF_IN_PAGE.search((await client.get(path)).text)
    assert match, f"no CSRF token in {path}"
    return match.group(1)


async def signed_in(client: httpx.AsyncClient) -> str:
    """Signs `client` in; returns its session's CSRF token (a fresh one: signing in replaces it)."""
    response = await client.post(LOGIN, data={"api_key": ADMIN_KEY, "csrf_token": await csrf_of(client)})
    assert response.status_code == 303, response.text
    return await csrf_of(client, "/dashboard/keys")


def routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from its OpenAPI document: FastAPI's own complete list, included
    routers and all (the test below fails if a route hides from it)."""
    app: FastAPI = client.app  # type: ignore[attr-defined]
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, operations in paths.items() for method in operations]


def concrete(path: str, key_id: int) -> str:
    return path.replace("{key_id}", str(key_id)).replace("{budget_id}", "1").replace("{token_id}", "1")


def store_key(api: ServiceProcess, secret: str, label: str = "guarded") -> int:
    response = httpx.post(
        api.url + "/keys", json={"label": label, "api_key": secret}, headers={"X-API-Key": ADMIN_KEY}, timeout=10
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def stored_keys(api: ServiceProcess) -> list[dict[str, object]]:
    keys: list[dict[str, object]] = httpx.get(api.url + "/keys", headers={"X-API-Key": ADMIN_KEY}, timeout=10).json()
    return keys


async def test_every_mutating_route_needs_the_csrf_token_and_a_signed_in_admin(
    api_env: dict[str, str], api_process: ServiceProcess
) -> None:
    key_id = store_key(api_process, fake_openai_key())
    before = stored_keys(api_process)
    async with dashboard(web_settings(web_env_for(api_env, api_process.url))) as admin:
        token = await signed_in(admin)
        mutating = [(m, p) for m, p in routes(admin) if m not in SAFE_METHODS]
        assert {p for _, p in mutating} >= {LOGIN, "/dashboard/keys", "/dashboard/keys/{key_id}/delete"}
        assert all(route.include_in_schema for route in _api_routes(admin.app))  # type: ignore[attr-defined]
        async with another_browser(admin) as anonymous:
            anonymous_token = await csrf_of(anonymous)
            for method, path in mutating:
                url = concrete(path, key_id)
                for headers in ({}, {"HX-Request": "true"}):
                    # Signed in, but no token, or another session's token: refused, nothing done.
                    for data in ({}, {"csrf_token": anonymous_token}, {"csrf_token": token + "x"}):
                        response = await admin.request(method, url, data=data, headers=headers)
                        assert response.status_code == 403, (method, path, data, response.status_code)
                    # A token but nobody signed in: sent to sign in, nothing done.
                    if path not in ANONYMOUS_MUTATIONS:
                        response = await anonymous.request(
                            method, url, data={"csrf_token": anonymous_token}, headers=headers
                        )
                        assert response.status_code in (303, 401), (method, path, response.status_code)
                        assert LOGIN in response.headers.get("location", response.headers.get("hx-redirect", ""))
        assert stored_keys(api_process) == before
        # The header form of the token (what htmx sends) works for the admin.
        response = await admin.post(
            f"/dashboard/keys/{key_id}/active", data={"active": "false"}, headers={"X-CSRF-Token": token}
        )
        assert response.status_code == 303
        assert stored_keys(api_process)[0]["active"] is False


async def test_pages_need_sign_in_unless_the_dashboard_is_public(
    api_env: dict[str, str], api_process: ServiceProcess, tmp_path: Path
) -> None:
    """DASHBOARD_PUBLIC is set on both: the dashboard shows pages without sign-in, the api lets the dashboard's own
    credential read without a session."""
    key_id = store_key(api_process, fake_openai_key())
    public_api = {**api_env, "DASHBOARD_PUBLIC": "true"}
    with running_api(public_api, tmp_path / "public-api.log") as public_api_process:
        for public in (False, True):
            api_url = public_api_process.url if public else api_process.url
            env = web_env_for(api_env, api_url, DASHBOARD_PUBLIC=str(public).lower())
            async with dashboard(web_settings(env)) as anonymous:
                pages = [p for m, p in routes(anonymous) if m == "GET" and p not in ("/", "/healthz", LOGIN)]
                assert "/dashboard/keys" in pages
                for path in pages:
                    if public and path == EVENTS_PATH:
                        continue  # an endless stream; its guard is the same one
                    response = await anonymous.get(concrete(path, key_id))
                    if public and not path.startswith(SIGNED_IN_ONLY):
                        assert response.status_code == 200, (path, response.status_code)
                    else:
                        assert response.status_code == 303, (path, response.status_code)
                        assert response.headers["location"].startswith(LOGIN)
                if public:
                    keys_page = (await anonymous.get("/dashboard/keys")).text
                    assert "Add key" not in keys_page and "Delete key" not in keys_page


async def test_no_page_or_export_ever_holds_a_stored_key(api_env: dict[str, str], api_process: ServiceProcess) -> None:
    secrets = [fake_openai_key(), fake_openai_key("sk-")]
    async with dashboard(web_settings(web_env_for(api_env, api_process.url))) as admin:
        token = await signed_in(admin)
        bodies = []
        for secret, headers in zip(secrets, ({}, {"HX-Request": "true"}), strict=True):
            response = await admin.post(
                "/dashboard/keys", data={"label": "leak check", "api_key": secret, "csrf_token": token}, headers=headers
            )
            assert response.status_code in (200, 303)
            bodies.append(response.text)
        # The same key again (409) and a malformed one (422): the answer does not echo it either.
        for secret in (secrets[0], secrets[0] + "!"):
            response = await admin.post(
                "/dashboard/keys", data={"label": "again", "api_key": secret, "csrf_token": token}
            )
            assert response.status_code in (409, 422)
            bodies.append(response.text)
        key_id = int(stored_keys(api_process)[0]["id"])  # type: ignore[call-overload]
        for method, path in routes(admin):
            if method == "GET" and path != EVENTS_PATH:
                bodies.append((await admin.get(concrete(path, key_id), follow_redirects=True)).text)
        assert len(bodies) > 8
        for secret in secrets:
            assert not [body for body in bodies if secret in body or secret[-12:] in body]


async def test_security_headers_and_static_files(api_env: dict[str, str], api_process: ServiceProcess) -> None:
    async with dashboard(web_settings(web_env_for(api_env, api_process.url))) as admin:
        await signed_in(admin)
        page = await admin.get("/dashboard")
        for response in (page, await admin.get("/nowhere"), await admin.get(LOGIN)):
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in page.text and "style=" not in page.text and "http" not in page.text.split("<body")[1]
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert len(assets) >= 3
        for asset in assets:
            assert re.search(r"\.[0-9a-f]{12}\.\w+$", asset)
            response = await admin.get(asset, headers={"Accept-Encoding": "br, gzip"})
            assert response.status_code == 200
            assert "immutable" in response.headers["cache-control"]
            assert "max-age=3" in response.headers["cache-control"]
            if not asset.endswith(".svg"):
                assert response.headers["content-encoding"] == "br"
    async with dashboard(web_settings(web_env_for(api_env, api_process.url))) as fresh:
        cookie = (await fresh.get(LOGIN)).headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()


async def test_sign_in_attempts_are_rate_limited(api_env: dict[str, str], api_process: ServiceProcess) -> None:
    env = web_env_for(api_env, api_process.url, LOGIN_ATTEMPTS_PER_MINUTE="3")
    async with dashboard(web_settings(env)) as client:
        token = await csrf_of(client)
        codes = [
            (await client.post(LOGIN, data={"api_key": "guess", "csrf_token": token})).status_code for _ in range(5)
        ]
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429]
        # Even the right key waits: the limiter counts attempts, not failures.
        refused = await client.post(LOGIN, data={"api_key": ADMIN_KEY, "csrf_token": token})
        assert refused.status_code == 429 and "Too many" in refused.text


async def test_an_absent_api_is_a_clear_message_never_a_trace(api_env: dict[str, str], tmp_path: Path) -> None:
    with running_api(api_env, tmp_path / "api.log") as api:
        env = web_env_for(api_env, api.url, DASHBOARD_PUBLIC="true")
        async with dashboard(web_settings(env)) as client:
            token = await signed_in(client)
            api.stop()  # the api goes away under a signed-in dashboard
            await _shows_the_api_is_away(client, token)


async def _shows_the_api_is_away(client: httpx.AsyncClient, token: str) -> None:
    refused = await client.post(LOGIN, data={"api_key": ADMIN_KEY, "csrf_token": token})
    assert refused.status_code == 502 and "cannot be reached" in refused.text
    token = await csrf_of(client, "/dashboard/login")
    for path in ("/dashboard", "/dashboard/keys", "/dashboard/usage"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "cannot be reached" in response.text and "Traceback" not in response.text
    overview = (await client.get("/dashboard")).text
    assert "Spend is unknown right now" in overview and "Health is unknown" in overview
    response = await client.post(
        "/dashboard/keys", data={"label": "x", "api_key": fake_openai_key(), "csrf_token": token}
    )
    assert response.status_code == 502 and "cannot be reached" in response.text
    response = await client.post("/dashboard/keys/1/test", data={"csrf_token": token}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Test failed: The api cannot be reached" in response.text
    export = await client.get("/dashboard/usage/export.csv")
    assert export.status_code == 502 and "cannot be reached" in export.text


def test_production_refuses_dev_defaults(api_env: dict[str, str]) -> None:
    env = web_env_for(api_env, "http://127.0.0.1:5001", ENV="production")
    with pytest.raises(ValidationError, match="DASHBOARD_API_KEY is too weak"):
        web_settings({**env, "DASHBOARD_API_KEY": "changeme"})
    with pytest.raises(ValidationError, match="SESSION_SECRET"):
        web_settings({**env, "DASHBOARD_API_KEY": "0123456789abcdef" * 3, "SESSION_SECRET": "short"})
    strong = web_settings({**env, "DASHBOARD_API_KEY": "0123456789abcdef" * 3})
    assert strong.cookie_secret != strong.dashboard_api_key and len(strong.cookie_secret) >= 32


def _api_routes(_app: FastAPI) -> list[APIRoute]:
    """The routers' own routes (FastAPI keeps included routers nested); none may be left out of the schema."""
    return [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]


async def test_a_malformed_request_is_a_page_not_json(api_env: dict[str, str], api_process: ServiceProcess) -> None:
    async with dashboard(web_settings(web_env_for(api_env, api_process.url))) as admin:
        token = await signed_in(admin)
        response = await admin.post("/dashboard/keys/not-a-number/active", data={"csrf_token": token})
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("text/html") and "was not valid" in response.text


def test_cg_web_serve_starts_stops_on_sigterm_and_names_a_bad_setting(
    api_env: dict[str, str], api_process: ServiceProcess, tmp_path: Path
) -> None:
    env = web_env_for(api_env, api_process.url)
    bad = subprocess.run(
        [*script("cg-web"), "serve"],
        env={k: v for k, v in env.items() if k != "REDIS_URL"} | {"PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert bad.stderr.startswith("invalid configuration: REDIS_URL")
    port = free_port()
    web = start_service(
        [*script("cg-web"), "serve", "--host", "127.0.0.1"],
        {**env, "WEB_PORT": str(port)},
        tmp_path / "web.log",
        url=f"http://127.0.0.1:{port}",
        ready_path="/healthz",
    )
    # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught, so that its parent sees why it ended.
    assert web.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in web.log_text()
