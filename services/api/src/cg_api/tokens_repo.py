"""API tokens: made, listed, revoked and looked up (all SQL on `api_tokens`, the api's table).

A token reads `cg_<public id>_<secret>`. The public id (16 hex digits) finds the row through a unique index, so no
lookup scans the table, and is what lists show as the token's prefix; only the secret's SHA-256 is stored, compared
in constant time. The secret is 32 random bytes: a plain hash suffices, no slow password hash is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cg_common.db import Connection

TOKEN_PREFIX = "cg_"  # noqa: S105 - a prefix, not a secret
PUBLIC_ID_HEX = 16
COLUMNS = """id, public_id, name, scopes, sources, rate_limit_rpm, rate_limit_burst, created_at, created_by,
             expires_at, revoked_at, last_used_at"""
# A token's use is written down at most this often, so that a busy token costs no write per request.
LAST_USED_RESOLUTION = "60 seconds"


@dataclass(frozen=True)
class NewToken:
    name: str
    scopes: list[str]
    sources: list[str] | None
    rate_limit_rpm: int | None
    rate_limit_burst: int | None
    expires_at: datetime | None
    created_by: str


@dataclass(frozen=True)
class TokenSecret:
    """A token as its holder sees it, once: the full text and its parts."""

    public_id: str
    secret: str

    @property
    def text(self) -> str:
        return f"{TOKEN_PREFIX}{self.public_id}_{self.secret}"

    @classmethod
    def new(cls) -> TokenSecret:
        return cls(secrets.token_hex(PUBLIC_ID_HEX // 2), secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, text: str) -> TokenSecret | None:
        """The parts of something that looks like a token; None for anything else."""
        if not text.startswith(TOKEN_PREFIX):
            return None
        public_id, separator, secret = text[len(TOKEN_PREFIX) :].partition("_")
        if not separator or len(public_id) != PUBLIC_ID_HEX or not secret or len(secret) > 128:
            return None
        return cls(public_id, secret)


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def matches(row: dict[str, Any], secret: str) -> bool:
    return hmac.compare_digest(bytes(row["secret_sha256"]), secret_digest(secret))


def prefix_of(row: dict[str, Any]) -> str:
    return f"{TOKEN_PREFIX}{row['public_id']}"


async def insert(conn: Connection, token: NewToken) -> tuple[dict[str, Any], str]:
    """The stored row and the token's text, which exists nowhere else from here on."""
    secret = TokenSecret.new()
    cursor = await conn.execute(
        f"""INSERT INTO api_tokens (public_id, secret_sha256, name, scopes, sources, rate_limit_rpm, rate_limit_burst,
                                    expires_at, created_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}""",  # noqa: S608 - constants only
        (
            secret.public_id,
            secret_digest(secret.secret),
            token.name,
            token.scopes,
            token.sources,
            token.rate_limit_rpm,
            token.rate_limit_burst,
            token.expires_at,
            token.created_by,
        ),
    )
    row = await cursor.fetchone()
    assert row is not None  # noqa: S101 - RETURNING always yields the row
    return row, secret.text


async def list_all(conn: Connection, *, include_revoked: bool = True) -> list[dict[str, Any]]:
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    cursor = await conn.execute(f"SELECT {COLUMNS} FROM api_tokens {where} ORDER BY id")  # noqa: S608
    return await cursor.fetchall()


async def revoke(conn: Connection, token_id: int) -> dict[str, Any] | None:
    """Revokes a live token (its dashboard sessions end with it); None when there is no such live token."""
    cursor = await conn.execute(
        f"UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL RETURNING {COLUMNS}",  # noqa: S608
        (token_id,),
    )
    row = await cursor.fetchone()
    if row is not None:
        await conn.execute("DELETE FROM dashboard_sessions WHERE token_id = %s", (token_id,))
    return row


async def find(conn: Connection, public_id: str) -> dict[str, Any] | None:
    """The row behind a public id, with its secret's hash."""
    cursor = await conn.execute(
        f"SELECT {COLUMNS}, secret_sha256 FROM api_tokens WHERE public_id = %s",  # noqa: S608 - constants only
        (public_id,),
    )
    return await cursor.fetchone()


async def note_use(conn: Connection, token_id: int) -> None:
    """Records that the token was just used, unless that was already recorded within the last minute."""
    await conn.execute(
        f"""UPDATE api_tokens SET last_used_at = now()
            WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '{LAST_USED_RESOLUTION}')""",  # noqa: S608
        (token_id,),
    )
