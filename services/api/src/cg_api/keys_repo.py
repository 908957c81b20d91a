"""All SQL on `api_keys`. Plaintext keys never reach this module: only ciphertext and derived values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.errors import UniqueViolation

from cg_common.db import Connection

PUBLIC_COLUMNS = sql.SQL(
    """id, label, kind, prefix, last4, fingerprint, active, created_at, deleted_at, last_probe_at,
       last_success_at, last_error, last_status, last_outcome, last_latency_ms, consecutive_failures"""
)


class DuplicateKeyError(Exception):
    """A live key with the same fingerprint is already stored."""


@dataclass(frozen=True)
class NewKey:
    label: str
    kind: str
    ciphertext: bytes
    fingerprint: str
    prefix: str
    last4: str


async def insert(conn: Connection, key: NewKey) -> dict[str, Any]:
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                sql.SQL(
                    """INSERT INTO api_keys (label, kind, ciphertext, fingerprint, prefix, last4)
                       VALUES (%s, %s, %s, %s, %s, %s) RETURNING {}"""
                ).format(PUBLIC_COLUMNS),
                (key.label, key.kind, key.ciphertext, key.fingerprint, key.prefix, key.last4),
            )
            row = await cursor.fetchone()
    except UniqueViolation:
        raise DuplicateKeyError from None
    assert row is not None  # noqa: S101 - RETURNING always yields the row
    return row


async def list_live(conn: Connection) -> list[dict[str, Any]]:
    cursor = await conn.execute(
        sql.SQL("SELECT {} FROM api_keys WHERE deleted_at IS NULL ORDER BY id").format(PUBLIC_COLUMNS)
    )
    return await cursor.fetchall()


async def set_active(conn: Connection, key_id: int, active: bool) -> dict[str, Any] | None:
    cursor = await conn.execute(
        sql.SQL("UPDATE api_keys SET active = %s WHERE id = %s AND deleted_at IS NULL RETURNING {}").format(
            PUBLIC_COLUMNS
        ),
        (active, key_id),
    )
    return await cursor.fetchone()


async def soft_delete(conn: Connection, key_id: int) -> bool:
    """Forget the secret, keep the row so that usage history stays attributed to it."""
    cursor = await conn.execute(
        """UPDATE api_keys SET deleted_at = now(), active = false, ciphertext = NULL
           WHERE id = %s AND deleted_at IS NULL""",
        (key_id,),
    )
    return cursor.rowcount == 1


async def sample_ciphertexts(conn: Connection, *, limit: int) -> list[bytes]:
    cursor = await conn.execute(
        "SELECT ciphertext FROM api_keys WHERE ciphertext IS NOT NULL ORDER BY id DESC LIMIT %s", (limit,)
    )
    return [bytes(row["ciphertext"]) for row in await cursor.fetchall()]


async def lock_all_ciphertexts(conn: Connection) -> list[tuple[int, bytes]]:
    cursor = await conn.execute(
        "SELECT id, ciphertext FROM api_keys WHERE ciphertext IS NOT NULL ORDER BY id FOR UPDATE"
    )
    return [(row["id"], bytes(row["ciphertext"])) for row in await cursor.fetchall()]


async def replace_ciphertext(conn: Connection, key_id: int, ciphertext: bytes) -> None:
    await conn.execute("UPDATE api_keys SET ciphertext = %s WHERE id = %s", (ciphertext, key_id))


async def counts(conn: Connection) -> dict[str, Any]:
    cursor = await conn.execute(
        """SELECT count(*) FILTER (WHERE active AND deleted_at IS NULL) AS active_keys,
                  max(last_success_at) AS last_key_ok_at
           FROM api_keys"""
    )
    row = await cursor.fetchone()
    return row or {"active_keys": 0, "last_key_ok_at": None}


async def get_live(conn: Connection, key_id: int) -> dict[str, Any] | None:
    cursor = await conn.execute(
        sql.SQL("SELECT {} FROM api_keys WHERE id = %s AND deleted_at IS NULL").format(PUBLIC_COLUMNS), (key_id,)
    )
    return await cursor.fetchone()
