"""Builds the FastAPI app: resources in the lifespan, middleware, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from cg_api import usage_ingest
from cg_api.access_middleware import AccessMiddleware
from cg_api.audit_middleware import AuditMiddleware
from cg_api.errors import install_error_handlers
from cg_api.resources import open_resources
from cg_api.routes import (
    admission,
    alerts,
    audit,
    billing,
    budgets,
    data,
    health,
    keys,
    metrics,
    sessions,
    tokens,
    usage,
    webhooks,
)
from cg_api.settings import ApiSettings
from cg_common.body_limit import BodyLimit, LimitFor


def body_limits(settings: ApiSettings) -> LimitFor:
    """Usage batches may be large (usage_ingest's own limit); every other body is a small JSON document."""

    def limit_for(method: str, path: str) -> int:
        if method == "POST" and path == "/usage/events":
            return usage_ingest.MAX_BODY_BYTES
        return settings.max_body_bytes

    return limit_for


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            yield

    app = FastAPI(
        title="Cost Guardian API",
        version="1",
        description="Encrypted OpenAI key management, usage and cost data.",
        lifespan=lifespan,
        debug=False,  # DEBUG raises log detail; it never turns error pages into stack traces
    )
    app.add_middleware(AuditMiddleware)
    app.add_middleware(AccessMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["X-API-Key", "Authorization", "Content-Type"],
    )
    # Outermost: a body over its path's limit is refused before anything else looks at the request.
    app.add_middleware(BodyLimit, limit_for=body_limits(settings))
    install_error_handlers(app)
    for router in (
        health.router,
        keys.router,
        usage.router,
        billing.router,
        data.router,
        metrics.router,
        tokens.router,
        sessions.router,
        audit.router,
        admission.router,  # before budgets: /budgets/reservations/{id} is not a budget's id
        budgets.router,
        alerts.router,
        webhooks.router,
    ):
        app.include_router(router)
    return app
