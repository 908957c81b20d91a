"""Builds the FastAPI app: resources in the lifespan, middleware, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from cg_api.access_middleware import AccessMiddleware
from cg_api.audit_middleware import AuditMiddleware
from cg_api.errors import install_error_handlers
from cg_api.resources import open_resources
from cg_api.routes import audit, billing, data, health, keys, metrics, sessions, tokens, usage
from cg_api.settings import ApiSettings


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
    ):
        app.include_router(router)
    return app
