"""From a request's headers to who it acts as: the admin key, an API token, or the dashboard acting for a signed-in
person. Only headers are read, so that a request without a valid credential is refused before its body is.

Tokens and sessions are read from PostgreSQL and kept for at most `RECHECK_SECS`: a revoked token or an ended
session is refused by every api replica within that time, and a busy token costs one query per replica per
interval, not one per request.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.datastructures import Headers

from cg_api import sessions_repo, tokens_repo
from cg_api.principal import DASHBOARD, Principal
from cg_api.settings import ApiSettings
from cg_common.db import Connection

API_KEY_HEADER = "X-API-Key"
SESSION_HEADER = "X-Dashboard-Session"
RECHECK_SECS = 0.5
CACHE_ENTRIES = 10_000
DASHBOARD_SCOPES = frozenset({"admin", "read"})  # what a token must have to sign in to the dashboard


class SessionEndedError(Exception):
    """The dashboard's credential came with a session that is over (signed out, revoked, expired, API_KEY changed)."""


def presented(headers: Headers) -> str | None:
    """The credential in `X-API-Key`, else in `Authorization: Bearer`."""
    value = headers.get(API_KEY_HEADER)
    if value:
        return value
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def same(candidate: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(candidate.encode(), expected.encode())


class Credentials:
    def __init__(self, settings: ApiSettings, db: AsyncConnectionPool[Connection]) -> None:
        self._settings = settings
        self._db = db
        self._tokens: _Recent = _Recent()
        self._sessions: _Recent = _Recent()
        self.admin = Principal("admin (API_KEY)", frozenset({"admin"}), bucket="admin")
        # Alone, the dashboard's credential opens sessions; with DASHBOARD_PUBLIC it also reads for anyone.
        self.dashboard = Principal(
            "dashboard (DASHBOARD_API_KEY)",
            frozenset({DASHBOARD, "read"} if settings.dashboard_public else {DASHBOARD}),
            bucket="dashboard",
            rpm=settings.dashboard_rate_limit_rpm,
            burst=settings.dashboard_rate_limit_burst,
        )

    async def resolve(self, headers: Headers) -> Principal | None:
        """Who the request acts as; None when its credential is missing or wrong (also revoked or expired).
        Raises SessionEndedError for the dashboard's credential with an ended session."""
        credential = presented(headers)
        if credential is None:
            return None
        if same(credential, self._settings.api_key):
            return self.admin
        if same(credential, self._settings.dashboard_api_key):
            session = headers.get(SESSION_HEADER)
            return self.dashboard if session is None else await self._session(session)
        parts = tokens_repo.TokenSecret.parse(credential)
        if parts is None:
            return None
        row = await self._token_row(parts.public_id)
        if row is None or not tokens_repo.matches(row, parts.secret) or not _live(row):
            return None
        return _token_principal(row)

    async def _token_row(self, public_id: str) -> dict[str, Any] | None:
        cached = self._tokens.get(public_id)
        if cached is not _Recent.MISSING:
            row: dict[str, Any] | None = cached
            return row
        async with self._db.connection() as conn:
            row = await tokens_repo.find(conn, public_id)
            if row is not None and _live(row):
                await tokens_repo.note_use(conn, row["id"])
        self._tokens.put(public_id, row)
        return row

    async def _session(self, secret: str) -> Principal:
        cached = self._sessions.get(secret)
        if cached is _Recent.MISSING:
            async with self._db.connection() as conn:
                cached = await sessions_repo.find(conn, secret)
            self._sessions.put(secret, cached)
        if cached is None:
            raise SessionEndedError
        return self.session_principal(cached)

    def session_principal(self, session: dict[str, Any]) -> Principal:
        """Who a live session acts as; raises SessionEndedError when what it rests on is gone."""
        if session["token_id"] is None:
            if not hmac.compare_digest(
                bytes(session["admin_key_digest"]), sessions_repo.admin_key_digest(self._settings.api_key)
            ):
                raise SessionEndedError  # API_KEY changed since this session was opened
            name, scopes = "admin (API_KEY)", frozenset({"admin"})
        else:
            token = {key.removeprefix("token_"): value for key, value in session.items() if key.startswith("token_")}
            if not _live(token) or not DASHBOARD_SCOPES & set(token["scopes"]):
                raise SessionEndedError
            name, scopes = _token_name(token), frozenset(token["scopes"]) & DASHBOARD_SCOPES
        return Principal(
            f"dashboard: {name}",
            scopes | {DASHBOARD},
            bucket=self.dashboard.bucket,
            rpm=self.dashboard.rpm,
            burst=self.dashboard.burst,
            token_id=session["token_id"],
        )

    def forget_token(self, public_id: str) -> None:
        """This replica refuses the token, and the sessions opened with it, at once (it was just revoked here); the
        others within RECHECK_SECS."""
        self._tokens.put(public_id, None)
        self._sessions = _Recent()

    def forget_session(self, secret: str) -> None:
        """This replica stops trusting the session at once (it was just ended here)."""
        self._sessions.put(secret, None)


def _live(row: dict[str, Any]) -> bool:
    expires_at = row["expires_at"]
    return row["revoked_at"] is None and (expires_at is None or expires_at > datetime.now(UTC))


def _token_name(row: dict[str, Any]) -> str:
    return f"token '{row['name']}' (#{row['id']})"


def _token_principal(row: dict[str, Any]) -> Principal:
    return Principal(
        _token_name(row),
        frozenset(row["scopes"]),
        bucket=f"token:{row['id']}",
        rpm=row["rate_limit_rpm"],
        burst=row["rate_limit_burst"],
        sources=tuple(row["sources"]) if row["sources"] else None,
        token_id=row["id"],
    )


class _Recent:
    """What was read for a key, for RECHECK_SECS; bounded, oldest first out."""

    MISSING: Any = object()

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > RECHECK_SECS:
            return self.MISSING
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > CACHE_ENTRIES:
            self._entries.popitem(last=False)
