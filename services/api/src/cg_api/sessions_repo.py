"""Dashboard sessions, held here rather than in the cookie: the web keeps only a session's secret, so signing out,
revoking the token behind it or changing API_KEY ends it for good, even for a cookie copied earlier."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from cg_api.tokens_repo import COLUMNS
from cg_common.db import Connection

TOKEN_COLUMNS = ", ".join(f"t.{column.strip()} AS token_{column.strip()}" for column in COLUMNS.split(","))


def admin_key_digest(api_key: str) -> bytes:
    """What an admin session remembers of the key it was opened with: enough to tell that API_KEY changed, and
    worthless as a way back to the key (keyed with itself, one-way)."""
    return hmac.new(api_key.encode(), b"cost-guardian dashboard session", hashlib.sha256).digest()


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def open_session(
    conn: Connection, *, lifetime: timedelta, token_id: int | None = None, admin_key: str | None = None
) -> str:
    """A new session for a token or for the admin key; returns its secret, which only the caller holds."""
    secret = secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO dashboard_sessions (secret_sha256, token_id, admin_key_digest, expires_at)
           VALUES (%s, %s, %s, now() + %s)""",
        (_digest(secret), token_id, admin_key_digest(admin_key) if admin_key else None, lifetime),
    )
    return secret


async def find(conn: Connection, secret: str) -> dict[str, Any] | None:
    """A live session with what it rests on (its token's row, if any); None once it ended or expired."""
    cursor = await conn.execute(
        f"""SELECT s.token_id, s.admin_key_digest, s.expires_at, {TOKEN_COLUMNS}
            FROM dashboard_sessions s LEFT JOIN api_tokens t ON t.id = s.token_id
            WHERE s.secret_sha256 = %s AND s.expires_at > now()""",  # noqa: S608 - constants only
        (_digest(secret),),
    )
    return await cursor.fetchone()


async def end(conn: Connection, secret: str) -> None:
    await conn.execute(
        "DELETE FROM dashboard_sessions WHERE secret_sha256 = %s OR expires_at < now()", (_digest(secret),)
    )
