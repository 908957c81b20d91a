"""Every change made through the api lands in the audit log once it is answered: who (the credential's name, as
`AccessMiddleware` resolved it), what (method, path, the target's id) and how it ended (the status). Reads are not
changes; usage ingest and admission are the data plane, counted in the metrics rather than logged one by one."""

from __future__ import annotations

from http import HTTPStatus

import psycopg
from psycopg_pool import PoolTimeout
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cg_api import audit_repo
from cg_api.access_middleware import principal_of
from cg_api.resources import Resources
from cg_common.logging import get_logger

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DATA_PLANE = (("POST", "/usage/events"), ("POST", "/budgets/admit"), ("DELETE", "/budgets/reservations/"))
TARGET = "audit_target"  # what a route that creates something names as the target, in the request's state

log = get_logger(__name__)


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGES or _data_plane(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before answering

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            await _record(scope, status)


def _data_plane(method: str, path: str) -> bool:
    return any(method == m and (path == p or (p.endswith("/") and path.startswith(p))) for m, p in DATA_PLANE)


def _target(scope: Scope) -> str | None:
    named = scope.get("state", {}).get(TARGET)
    if named is not None:
        return str(named)
    params = scope.get("path_params") or {}
    return ",".join(str(value) for value in params.values()) or None


async def _record(scope: Scope, status: int) -> None:
    principal = principal_of(scope)
    if principal is None or status == HTTPStatus.SERVICE_UNAVAILABLE:
        # Refused before anyone was known, or a dependency was away (PostgreSQL, most likely, which the entry
        # itself would wait for): nothing was changed.
        return
    resources: Resources = scope["app"].state.resources
    entry = audit_repo.Entry(principal.name, scope["method"], scope["path"], _target(scope), status)
    try:
        async with resources.db.connection() as conn:
            await audit_repo.record(conn, entry)
    except (PoolTimeout, psycopg.Error) as error:
        log.warning("audit entry not written", path=entry.path, status=status, error=type(error).__name__)
