"""A small HTTP side port for background services: liveness, readiness and Prometheus metrics.

Services without an HTTP api of their own (ledger, scheduler, prober) still need something for Kubernetes probes and
Prometheus to call; this runs in the service's own event loop, so "alive" means the loop itself answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from nats.aio.client import Client as NATS
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cg_common.db import Connection

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
READY_TIMEOUT_SECS = 1.0


async def nats_and_postgres(db: AsyncConnectionPool[Connection], nats: NATS) -> dict[str, bool]:
    """The readiness of a background service: NATS connected, and PostgreSQL answering within a second."""
    postgres = True
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECS), db.connection() as conn:
            await conn.execute("SELECT 1")
    except Exception:  # any failure means not ready
        postgres = False
    return {"nats": nats.is_connected, "postgres": postgres}


def health_app(ready: ReadinessCheck, registry: CollectorRegistry = REGISTRY) -> Starlette:
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        checks = await ready()
        healthy = all(checks.values())
        body = {
            "status": "ok" if healthy else "degraded",
            "checks": {k: "ok" if v else "down" for k, v in checks.items()},
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)],
    )


class _QuietServer(uvicorn.Server):
    """uvicorn, minus its signal handling: the service that embeds it decides what SIGTERM means."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthServer:
    """Serves `health_app` on a port until `stop()`."""

    def __init__(self, app: Starlette, *, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it (e.g. the port is taken)
                raise RuntimeError("health server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


def readiness_server(db: AsyncConnectionPool[Connection], nats: NATS, *, port: int) -> HealthServer:
    """A worker service's health port: ready while NATS and PostgreSQL answer; reached from outside the pod."""
    return HealthServer(
        health_app(lambda: nats_and_postgres(db, nats)),
        host="0.0.0.0",  # noqa: S104 - probes and Prometheus reach it from outside the pod
        port=port,
    )
