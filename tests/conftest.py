"""Real NATS, PostgreSQL and Redis for the whole session: from NATS_URL / DATABASE_URL / REDIS_URL when set, else
embedded servers from PyPI. Each session works in a database of its own, migrated from scratch."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import httpx
import nats
import psycopg
import pytest
import redis
from nats.aio.client import Client as NATS

from cg_api.app import create_app
from cg_api.settings import ApiSettings
from cg_common.crypto import new_master_key
from cg_common.migrate import apply_migrations
from cg_common.subjects import ALL_STREAMS
from cg_common.topology import provision
from cg_devstack.servers import Stack, start_stack
from tests.support import nats_users
from tests.support.jetstream import provision_for, topology_for

ADMIN_KEY = "test-admin-" + secrets.token_urlsafe(24)
DASHBOARD_KEY = "test-dashboard-" + secrets.token_urlsafe(24)  # the web's own credential to the api


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The servers, with JetStream provisioned as the migration step does at the settings' defaults."""
    with start_stack(tmp_path_factory.mktemp("servers")) as servers:
        nats_users.register(servers)
        provision_for({"NATS_URL": servers.nats_url})
        yield servers


@pytest.fixture(scope="session")
def database_url(stack: Stack) -> Iterator[str]:
    name = "cg_test_" + secrets.token_hex(4)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(stack.database_url)._replace(path="/" + name))
    apply_migrations(url)
    yield url
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def master_key() -> str:
    return new_master_key()


@pytest.fixture
def clean_state(database_url: str, stack: Stack) -> None:
    """Every test starts with no keys and empty rate-limit buckets."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE")
    client = redis.Redis.from_url(stack.redis_url)
    for key in client.scan_iter(match="cg:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def api_env(stack: Stack, database_url: str, master_key: str, clean_state: None) -> dict[str, str]:
    """Settings of an api under test, as environment variables; rate limits generous unless a test says otherwise."""
    return {
        "ENV": "development",
        "NATS_URL": stack.nats_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": stack.redis_url,
        "MASTER_KEY": master_key,
        "API_KEY": ADMIN_KEY,
        "DASHBOARD_API_KEY": DASHBOARD_KEY,
        "RATE_LIMIT_RPM": "100000",
        "RATE_LIMIT_BURST": "100000",
        "LOG_LEVEL": "debug",
    }


def settings_from(env: dict[str, str]) -> ApiSettings:
    """Settings from these variables alone: neither the process environment nor a `.env` file is read; NATS as the
    api's own user."""
    return ApiSettings.model_validate({k.lower(): v for k, v in nats_users.env_as(env, "api").items()})


@pytest.fixture
async def api(api_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The api in this process, with its real lifespan, called as the admin."""
    async with api_client(settings_from(api_env)) as client:
        yield client


@asynccontextmanager
async def api_client(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its real lifespan (pools, NATS, Redis) and an httpx client bound to it, as the admin."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    headers = {"X-API-Key": settings.api_key}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api.test", headers=headers) as client,
    ):
        yield client


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[NATS]:
    """A plain NATS connection to the session's server."""
    client: NATS = await nats.connect(stack.nats_url)
    yield client
    await client.close()


@pytest.fixture
def clean_streams(stack: Stack) -> None:
    """Every stream empty and without consumers, so that a test's consumers see only its own messages."""
    asyncio.run(_empty_streams(stack.nats_url))


async def _empty_streams(nats_url: str) -> None:
    """Every stream deleted (with its consumers) and provisioned again at the defaults, the prober's bucket purged.
    Deleted rather than purged: a purge keeps a stream's memory of message ids for its duplicate window, and tests
    reuse ids (`copy-0`, budget 1's alerts), so a later test's messages would be dropped as re-sends."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        topology = topology_for({})
        await provision(js, topology)
        for spec in ALL_STREAMS:
            await js.delete_stream(spec.name)
        await js.purge_stream(topology.prober_state.stream)
        await provision(js, topology)
    finally:
        await nc.close()


@pytest.fixture
def ledger_env(api_env: dict[str, str], clean_streams: None) -> dict[str, str]:
    """Settings of a ledger under test; a short ack wait so that a killed ledger's messages come back quickly."""
    return {
        "NATS_URL": api_env["NATS_URL"],
        "DATABASE_URL": api_env["DATABASE_URL"],
        "REDIS_URL": api_env["REDIS_URL"],
        "LEDGER_ACK_WAIT_SECS": "3",
        "LOG_LEVEL": "info",
    }


def pytest_configure(config: pytest.Config) -> None:
    """A temporary directory of this session's own, unless one is given: pytest's shared `pytest-of-<user>` keeps
    only its three newest sessions' directories, so a second session on the machine (another checkout's tests)
    could delete this one's embedded servers' data under them."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="cg-tests-")
        config.add_cleanup(lambda: shutil.rmtree(config.option.basetemp, ignore_errors=True))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Turn SIGTERM (a CI time-out, `timeout`, Ctrl-C via a wrapper) into a normal exit, so that fixtures and
    atexit hooks still stop the servers this session started instead of leaving them orphaned."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)


def web_env_for(api_env: dict[str, str], api_url: str, **extra: str) -> dict[str, str]:
    """Settings of a dashboard under test that talks to the api at `api_url`; it gets no DATABASE_URL, since the
    dashboard never opens PostgreSQL."""
    return {
        "ENV": "development",
        "NATS_URL": api_env["NATS_URL"],
        "REDIS_URL": api_env["REDIS_URL"],
        "DASHBOARD_API_KEY": api_env["DASHBOARD_API_KEY"],
        "API_URL": api_url,
        "LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "LOG_LEVEL": "info",
        **extra,
    }
