"""Liveness, readiness and the dashboard redirect."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, RedirectResponse

from cg_api.auth import Authenticated
from cg_api.deps import ResourcesDep

router = APIRouter(tags=["service"])

READY_TIMEOUT_SECS = 1.0


@router.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", dependencies=[Authenticated], responses={503: {"description": "A dependency does not answer."}})
async def ready(resources: ResourcesDep) -> JSONResponse:
    """Whether NATS, Postgres and Redis each answer within a second."""

    async def postgres() -> None:
        async with resources.db.connection(timeout=READY_TIMEOUT_SECS) as conn:
            await conn.execute("SELECT 1")

    checks = {
        "nats": resources.nats.flush(timeout=int(READY_TIMEOUT_SECS)),
        "postgres": postgres(),
        "redis": resources.redis.ping(),
    }
    results = await asyncio.gather(*(_answers(c) for c in checks.values()))
    status = dict(zip(checks, results, strict=True))
    healthy = all(status.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "checks": {k: "ok" if v else "down" for k, v in status.items()}},
        status_code=200 if healthy else 503,
    )


async def _answers(check: Awaitable[object]) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECS):
            await check
    except Exception:  # any failure of a dependency means "not ready", whatever its type
        return False
    return True


@router.get("/dashboard", response_class=RedirectResponse, status_code=307)
async def dashboard(resources: ResourcesDep) -> str:
    return resources.settings.dashboard_url
