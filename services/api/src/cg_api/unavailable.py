"""503 when a dependency is down: PostgreSQL, NATS or Redis not answering is the caller's cue to retry, never a 500
and never a hang. Raised as `DependencyUnavailableError` by code that knows what failed, or mapped here from the
client libraries' own errors wherever they escape a route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from nats.errors import Error as NatsError
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from redis.exceptions import RedisError

from cg_common.logging import get_logger
from cg_common.publishing import PublishError

log = get_logger(__name__)

Dependency = Literal["postgres", "nats", "redis", "notifier"]
RETRY_AFTER_SECS = 2
SENTENCES: dict[Dependency, str] = {
    "postgres": "PostgreSQL is not answering right now; try again shortly",
    "nats": "NATS is not answering right now; try again shortly",
    "redis": "Redis is not answering right now; try again shortly",
    "notifier": "no notifier is running to send webhook deliveries; start cg-notifier and try again",
}


class UnavailableOut(BaseModel):
    detail: str
    dependency: Dependency


class DependencyUnavailableError(Exception):
    def __init__(self, dependency: Dependency, detail: str | None = None) -> None:
        super().__init__(detail or SENTENCES[dependency])
        self.dependency: Dependency = dependency
        self.detail = detail or SENTENCES[dependency]


def unavailable_response(dependency: Dependency, detail: str | None = None) -> JSONResponse:
    body = UnavailableOut(detail=detail or SENTENCES[dependency], dependency=dependency)
    return JSONResponse(
        body.model_dump(),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(RETRY_AFTER_SECS)},
    )


def install_unavailable_handlers(app: FastAPI) -> None:
    async def raised(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DependencyUnavailableError)  # noqa: S101 - registered for that class only
        return unavailable_response(error.dependency, error.detail)

    def mapped(dependency: Dependency) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(request: Request, error: Exception) -> JSONResponse:
            log.warning("dependency unavailable", dependency=dependency, path=request.url.path, error=repr(error)[:300])
            return unavailable_response(dependency)

        return handler

    app.add_exception_handler(DependencyUnavailableError, raised)
    # A connection the pool could not hand out in time, or one that broke under a query: PostgreSQL is away.
    causes: dict[type[Exception], Dependency] = {
        PoolTimeout: "postgres",  # no connection within DATABASE_WAIT_SECS
        psycopg.OperationalError: "postgres",  # a connection that broke under a query
        NatsError: "nats",
        PublishError: "nats",
        RedisError: "redis",
    }
    for cause, dependency in causes.items():
        app.add_exception_handler(cause, mapped(dependency))
