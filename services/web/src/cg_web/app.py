"""Builds the dashboard: static files, security headers, the signed session, the access guard and the pages."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware

from cg_common.body_limit import BodyLimit
from cg_web.access import guard
from cg_web.errors import install_error_handlers
from cg_web.rendering import environment
from cg_web.resources import open_resources
from cg_web.routes import access, auth, billing, breakdown, budgets, health, keys, overview, usage, webhooks
from cg_web.security import SecurityHeaders
from cg_web.settings import WebSettings
from cg_web.static_files import SOURCE, StaticFiles, fingerprint_all, whitenoise_for
from cg_web.timing import ServerTiming

SESSION_COOKIE = "cg_session"
ROUTERS = (
    health.router,
    auth.router,
    overview.router,
    budgets.router,
    webhooks.router,
    keys.router,
    usage.router,
    breakdown.router,
    billing.router,
    access.router,
)


def create_app(settings: WebSettings) -> FastAPI:
    built = tempfile.TemporaryDirectory(prefix="cg-web-static-")  # removed when the app goes away
    static_urls = fingerprint_all(SOURCE, Path(built.name))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            yield

    app = FastAPI(
        title="Cost Guardian dashboard",
        lifespan=lifespan,
        debug=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(guard)],
    )
    app.state.settings = settings
    app.state.templates = environment(static_urls)
    app.state.static_dir = built
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.cookie_secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_secs,
        same_site="lax",
        https_only=settings.is_production,
    )
    # Pages are compressed on the fly (event streams are left alone); static files come precompressed.
    app.add_middleware(GZipMiddleware, minimum_size=500, compresslevel=6)
    app.add_middleware(StaticFiles, files=whitenoise_for(Path(built.name)))
    app.add_middleware(SecurityHeaders, production=settings.is_production)
    app.add_middleware(ServerTiming)
    # Outermost: forms are small; a body over the limit is refused before the session or the CSRF check reads it.
    app.add_middleware(BodyLimit, limit_for=lambda _method, _path: settings.max_body_bytes, json_errors=False)
    return app
