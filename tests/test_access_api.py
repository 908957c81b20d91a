"""Access to the api (docs/access.md): every route with every kind of credential answers exactly what the contract
says (2xx, 401, 403); tokens' secrets are shown once and stored only as hashes; an ingest token stays inside its
sources; a token draws from its own bucket; revocation reaches every replica within a second; dashboard sessions end
on sign-out, revocation and a changed API_KEY; every change is in the audit log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
import pytest

from cg_api.app import create_app
from cg_api.settings import ApiSettings
from cg_common.subjects import USAGE_STREAM
from tests.conftest import ADMIN_KEY, DASHBOARD_KEY, api_client, settings_from
from tests.support.keys import fake_openai_key
from tests.support.leaks import database_holds
from tests.support.processes import cg_api_command, running_api
from tests.support.routes import EXEMPT, REQUESTS, app_routes, call
from tests.support.usage import usage_event

SCOPED = ("admin", "read", "ingest", "admit")


def expected(route: tuple[str, str], scopes: frozenset[str]) -> str:
    """The contract's answer for a valid credential with these scopes: 'ok' (the route's normal answer) or '403'."""
    method, path = route
    if route in EXEMPT or "admin" in scopes:
        return "ok"
    if path.startswith("/sessions"):
        return "403"  # only the dashboard's own credential (or the admin) opens and ends sessions
    if method == "GET" and not path.startswith(("/tokens", "/webhooks", "/audit")):
        return "ok" if "read" in scopes else "403"
    if route == ("POST", "/usage/events"):
        return "ok" if "ingest" in scopes else "403"
    if route in {("POST", "/budgets/admit"), ("DELETE", "/budgets/reservations/{reservation_id}")}:
        return "ok" if "admit" in scopes else "403"
    return "403"


@asynccontextmanager
async def app_and_client(env: dict[str, str]) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = settings_from(env)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client,
    ):
        yield app, client


async def new_token(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await admin.post("/tokens", json={"name": "t", "scopes": ["read"], **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_every_route_answers_each_credential_as_the_contract_says(
    api_env: dict[str, str], database_url: str
) -> None:
    env = {**api_env, "PROBE_WAIT_SECS": "0.2"}
    async with app_and_client(env) as (app, client):
        assert app_routes(app) == set(REQUESTS)
        admin = {"X-API-Key": ADMIN_KEY}
        client.headers.update(admin)
        assert (await client.post("/keys", json={"label": "k", "api_key": fake_openai_key()})).status_code == 201
        tokens = {scope: (await new_token(client, name=scope, scopes=[scope]))["token"] for scope in SCOPED}
        revoked = await new_token(client, name="revoked")
        assert (await client.delete(f"/tokens/{revoked['id']}")).status_code == 204
        expired = await new_token(client, name="expired")
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = %s", (expired["id"],)
            )
        del client.headers["X-API-Key"]

        credentials: dict[str, tuple[dict[str, str], frozenset[str] | None]] = {
            "admin key": (admin, frozenset({"admin"})),
            "admin key as bearer": ({"Authorization": f"Bearer {ADMIN_KEY}"}, frozenset({"admin"})),
            **{f"{scope} token": ({"X-API-Key": token}, frozenset({scope})) for scope, token in tokens.items()},
            "read token as bearer": ({"Authorization": f"Bearer {tokens['read']}"}, frozenset({"read"})),
            "none": ({}, None),
            "wrong": ({"X-API-Key": "wrong"}, None),
            "a token's public part with a wrong secret": ({"X-API-Key": tokens["admin"][:20] + "x" * 43}, None),
            "revoked token": ({"X-API-Key": revoked["token"]}, None),
            "expired token": ({"X-API-Key": expired["token"]}, None),
        }
        for label, (headers, scopes) in credentials.items():
            for route, (request, normal, _needs) in REQUESTS.items():
                response, _took = await call(client, request, admin_key=ADMIN_KEY, headers=headers)
                want = "ok" if route in EXEMPT else "401" if scopes is None else expected(route, scopes)
                got = response.status_code
                what = (label, route, got, response.text[:200])
                if want == "ok":
                    assert got == normal, what
                else:
                    assert got == int(want), what
                    assert "detail" in response.json(), what


async def test_a_token_is_shown_once_and_stored_as_a_hash(api: httpx.AsyncClient, database_url: str) -> None:
    created = await new_token(api, name="ci", scopes=["ingest"], sources=["//ci/*"], rate_limit_rpm=120)
    secret = created["token"]
    assert secret.startswith("cg_") and secret.startswith(created["prefix"]) and len(secret) > 40
    listed = (await api.get("/tokens")).json()
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    assert secret not in json.dumps(listed) and secret[len(created["prefix"]) :] not in json.dumps(listed)
    assert database_holds(database_url, secret) == []
    assert database_holds(database_url, secret.rsplit("_", 1)[1]) == []
    assert listed[0]["sources"] == ["//ci/*"] and listed[0]["rate_limit_rpm"] == 120
    assert listed[0]["created_by"] == "admin (API_KEY)" and listed[0]["last_used_at"] is None
    assert (await api.get("/ping", headers={"X-API-Key": secret})).status_code == 200
    await api.post("/usage/events", json=usage_event(source="//ci/a", event_id="e1"), headers={"X-API-Key": secret})
    assert (await api.get("/tokens")).json()[0]["last_used_at"] is not None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x", "scopes": ["read"], "sources": ["//a/*"]}, "ingest"),
        ({"name": "x", "scopes": ["read"], "rate_limit_rpm": 0}, "rate_limit_rpm"),
        ({"name": "x", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"}, "future"),
        ({"name": "x", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"}, "timezone"),
        ({"name": "x", "scopes": ["read"], "owner": "me"}, "owner"),
    ],
)
async def test_a_bad_token_request_is_a_clear_422(api: httpx.AsyncClient, body: dict[str, Any], problem: str) -> None:
    response = await api.post("/tokens", json=body)
    assert response.status_code == 422, response.text
    assert problem in response.text.lower()


async def test_an_ingest_token_reports_only_for_its_sources(api: httpx.AsyncClient, stack: Any) -> None:
    token = (await new_token(api, name="checkout", scopes=["ingest"], sources=["//checkout/*", "//pay"]))["token"]
    nc = await nats.connect(stack.nats_url)
    try:
        before = (await nc.jetstream().stream_info(USAGE_STREAM.name)).state.messages
        batch = [
            usage_event(source="//checkout/prod", event_id="a"),
            usage_event(source="//search/prod", event_id="b"),
            usage_event(source="//pay", event_id="c"),
            usage_event(source="//payroll", event_id="d"),
        ]
        refused = await api.post("/usage/events", json=batch, headers={"X-API-Key": token})
        assert refused.status_code == 403
        assert [problem["index"] for problem in refused.json()["detail"]] == [1, 3]
        assert "//search/prod" in refused.json()["detail"][0]["msg"]
        assert (await nc.jetstream().stream_info(USAGE_STREAM.name)).state.messages == before  # nothing published
        allowed = await api.post("/usage/events", json=[batch[0], batch[2]], headers={"X-API-Key": token})
        assert allowed.status_code == 202
        assert (await nc.jetstream().stream_info(USAGE_STREAM.name)).state.messages == before + 2
    finally:
        await nc.close()


async def test_each_token_draws_from_its_own_bucket(api_env: dict[str, str]) -> None:
    async with api_client(settings_from(api_env)) as admin:
        slow = (await new_token(admin, name="slow", rate_limit_rpm=1, rate_limit_burst=2))["token"]
        other = (await new_token(admin, name="other", rate_limit_rpm=1, rate_limit_burst=2))["token"]
        answers = [(await admin.get("/keys", headers={"X-API-Key": slow})).status_code for _ in range(4)]
        assert answers[:2] == [200, 200] and answers[2:] == [429, 429]
        refused = await admin.get("/keys", headers={"X-API-Key": slow})
        assert int(refused.headers["retry-after"]) >= 1
        assert (await admin.get("/keys", headers={"X-API-Key": other})).status_code == 200
        assert (await admin.get("/keys")).status_code == 200  # the admin key's bucket is its own too


def test_a_forwarded_for_header_from_an_untrusted_peer_mints_no_bucket(api_env: dict[str, str], tmp_path: Path) -> None:
    env = {**api_env, "RATE_LIMIT_RPM": "1", "RATE_LIMIT_BURST": "3"}
    with running_api(env, tmp_path / "api.log") as api:
        statuses = [
            httpx.get(api.url + "/keys", headers={"X-Forwarded-For": f"10.0.{n}.{n}"}).status_code for n in range(6)
        ]
    assert statuses == [401, 401, 401, 429, 429, 429]


def test_a_forwarded_for_header_from_a_trusted_proxy_names_the_client(api_env: dict[str, str], tmp_path: Path) -> None:
    env = {**api_env, "RATE_LIMIT_RPM": "1", "RATE_LIMIT_BURST": "2", "TRUSTED_PROXIES": "127.0.0.0/8"}
    with running_api(env, tmp_path / "api.log") as api:

        def status(forwarded: str) -> int:
            return httpx.get(api.url + "/keys", headers={"X-Forwarded-For": forwarded}).status_code

        # The nearest untrusted hop is the client; a spoofed left-most entry changes nothing.
        assert [status(f"{spoof}, 203.0.113.7") for spoof in ("1.1.1.1", "2.2.2.2", "3.3.3.3")] == [401, 401, 429]
        assert status("198.51.100.9") == 401  # another client, another bucket


async def test_a_revoked_token_is_refused_by_every_replica_within_a_second(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    with running_api(api_env, tmp_path / "a.log") as first, running_api(api_env, tmp_path / "b.log") as second:
        async with httpx.AsyncClient(headers={"X-API-Key": ADMIN_KEY}) as admin:
            created = (await admin.post(first.url + "/tokens", json={"name": "r", "scopes": ["read"]})).json()
            token = {"X-API-Key": created["token"]}
            for replica in (first, second):
                assert (await admin.get(replica.url + "/keys", headers=token)).status_code == 200
            assert (await admin.delete(f"{first.url}/tokens/{created['id']}")).status_code == 204
            revoked_at = time.monotonic()
            refused_after: dict[str, float] = {}
            while len(refused_after) < 2 and time.monotonic() - revoked_at < 3:
                for name, replica in (("first", first), ("second", second)):
                    if name in refused_after:
                        continue
                    if (await admin.get(replica.url + "/keys", headers=token)).status_code == 401:
                        refused_after[name] = time.monotonic() - revoked_at
                await asyncio.sleep(0.02)
    assert set(refused_after) == {"first", "second"}, refused_after
    assert refused_after["first"] < 0.1 and refused_after["second"] < 1.0, refused_after


async def test_dashboard_sessions_end_on_sign_out_revocation_and_a_new_api_key(api_env: dict[str, str]) -> None:
    env = api_env
    web = {"X-API-Key": DASHBOARD_KEY}
    async with app_and_client(env) as (_app, client):
        admin = {"X-API-Key": ADMIN_KEY}
        read_token = (await client.post("/tokens", json={"name": "viewer", "scopes": ["read"]}, headers=admin)).json()
        ingest_token = (await client.post("/tokens", json={"name": "i", "scopes": ["ingest"]}, headers=admin)).json()

        async def open_session(credential: str) -> httpx.Response:
            return await client.post("/sessions", json={"credential": credential}, headers=web)

        assert (await client.get("/keys", headers=web)).status_code == 403  # alone, it can only open sessions
        assert (await open_session("wrong")).status_code == 401
        assert (await open_session(ingest_token["token"])).status_code == 401  # not a dashboard scope
        assert (await client.post("/sessions", json={"credential": ADMIN_KEY}, headers=admin)).status_code == 201

        viewer = (await open_session(read_token["token"])).json()
        assert viewer["scopes"] == ["read"] and viewer["name"] == f"dashboard: token 'viewer' (#{read_token['id']})"
        as_viewer = {**web, "X-Dashboard-Session": viewer["session"]}
        assert (await client.get("/keys", headers=as_viewer)).status_code == 200
        refused = await client.post("/keys", json={"label": "x", "api_key": fake_openai_key()}, headers=as_viewer)
        assert refused.status_code == 403

        assert (await client.delete(f"/tokens/{read_token['id']}", headers=admin)).status_code == 204
        assert (await client.get("/keys", headers=as_viewer)).status_code == 401  # revoked: the session is over

        owner = (await open_session(ADMIN_KEY)).json()
        assert owner["scopes"] == ["admin"]
        as_owner = {**web, "X-Dashboard-Session": owner["session"]}
        assert (await client.get("/keys", headers=as_owner)).status_code == 200
        signed_out = (await open_session(ADMIN_KEY)).json()
        as_signed_out = {**web, "X-Dashboard-Session": signed_out["session"]}
        assert (await client.delete("/sessions/current", headers=as_signed_out)).status_code == 204
        assert (await client.get("/keys", headers=as_signed_out)).status_code == 401  # a copied cookie is worthless

    async with app_and_client({**env, "API_KEY": ADMIN_KEY + "-rotated"}) as (_app, client):
        assert (await client.get("/keys", headers=as_owner)).status_code == 401  # API_KEY changed


async def test_every_change_is_in_the_audit_log_with_who_made_it(api: httpx.AsyncClient) -> None:
    token = await new_token(api, name="ops", scopes=["admin"])
    ops = {"X-API-Key": token["token"]}
    key = (await api.post("/keys", json={"label": "k", "api_key": fake_openai_key()}, headers=ops)).json()
    await api.patch(f"/keys/{key['id']}/active", json={"active": False}, headers=ops)
    await api.delete("/keys/424242", headers=ops)
    await api.post("/usage/events", json=usage_event(source="//a", event_id="x"))  # data plane: not a change
    await api.get("/keys")  # a read: not a change
    page = (await api.get("/audit", params={"limit": 3})).json()
    entries = page["entries"]
    who = f"token 'ops' (#{token['id']})"
    assert [(e["credential"], e["method"], e["path"], e["target"], e["status"]) for e in entries] == [
        (who, "DELETE", "/keys/424242", "424242", 404),
        (who, "PATCH", f"/keys/{key['id']}/active", str(key["id"]), 200),
        (who, "POST", "/keys", None, 201),
    ]
    rest = (await api.get("/audit", params={"cursor": page["next_cursor"]})).json()
    assert [(e["credential"], e["path"], e["target"]) for e in rest["entries"]] == [
        ("admin (API_KEY)", "/tokens", str(token["id"]))
    ]
    assert rest["next_cursor"] is None
    assert token["token"] not in json.dumps([entries, rest])
    for crafted in ("x", "YXVkaXQ6MA", "YXVkaXQ6LTE", "a" * 64, "YXVkaXQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"):
        assert (await api.get("/audit", params={"cursor": crafted})).status_code in (400, 422), crafted


def test_operators_manage_tokens_from_the_command_line(api_env: dict[str, str], database_url: str) -> None:
    env = {**api_env, "PATH": "/usr/bin:/bin"}

    def cg_api(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cg_api_command(), "token", *args], env=env, capture_output=True, text=True, timeout=60)

    created = cg_api("create", "--name", "deploy-bot", "--scope", "ingest", "--source", "//deploy/*", "--rpm", "600")
    assert created.returncode == 0, created.stderr
    secret = next(line for line in created.stdout.splitlines() if line.startswith("TOKEN=")).removeprefix("TOKEN=")
    listed = cg_api("list")
    assert "deploy-bot" in listed.stdout and "ingest" in listed.stdout and "never used" in listed.stdout
    assert secret not in listed.stdout and database_holds(database_url, secret) == []
    token_id = next(line for line in listed.stdout.splitlines() if line.startswith("#")).split()[0].removeprefix("#")
    assert cg_api("revoke", token_id).returncode == 0
    assert cg_api("revoke", token_id).returncode == 1
    assert "revoked" in cg_api("list").stdout
    bad = cg_api("create", "--name", "x", "--scope", "read", "--expires", "yesterday")
    assert bad.returncode == 2 and "expires_at" in bad.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log WHERE credential LIKE 'operator%'").fetchone() == (2,)


def test_the_settings_refuse_an_exempt_path_that_would_open_data(api_env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="RATE_LIMIT_EXEMPT"):
        ApiSettings.model_validate({**{k.lower(): v for k, v in api_env.items()}, "rate_limit_exempt": "/ping,/keys"})
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        ApiSettings.model_validate({**{k.lower(): v for k, v in api_env.items()}, "trusted_proxies": "10.0.0.0/33"})
