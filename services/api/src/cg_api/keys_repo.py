"""All SQL on `api_keys` (the api's table), and the reads of `key_health` (the ledger's) that complete a key's
record. Plaintext keys never reach this module: only ciphertext and derived values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.errors import UniqueViolation

from cg_common.db import Connection

KEY_COLUMNS = "id, label, kind, prefix, last4, fingerprint, active, created_at, deleted_at"
# A key's record: its row beside its health as the ledger keeps it (a key never probed has none yet).
RECORD = """SELECT k.id, k.label, k.kind, k.prefix, k.last4, k.fingerprint, k.active, k.created_at, k.deleted_at,
                    h.last_probe_at, h.last_success_at, h.last_error, h.last_status, h.last_outcome, h.last_latency_ms,
                    coalesce(h.consecutive_failures, 0) AS consecutive_failures
             FROM {keys} k LEFT JOIN key_health h ON h.key_id = k.id"""


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
                f"""WITH created AS (
                        INSERT INTO api_keys (label, kind, ciphertext, fingerprint, prefix, last4)
                        VALUES (%s, %s, %s, %s, %s, %s) RETURNING {KEY_COLUMNS}
                    ) {RECORD.format(keys="created")}""",  # noqa: S608 - composed from constants only
                (key.label, key.kind, key.ciphertext, key.fingerprint, key.prefix, key.last4),
            )
            row = await cursor.fetchone()
    except UniqueViolation:
        raise DuplicateKeyError from None
    assert row is not None  # noqa: S101 - RETURNING always yields the row
    return row


async def list_live(conn: Connection) -> list[dict[str, Any]]:
    cursor = await conn.execute(f"{RECORD.format(keys='api_keys')} WHERE k.deleted_at IS NULL ORDER BY k.id")
    return await cursor.fetchall()


async def set_active(conn: Connection, key_id: int, active: bool) -> dict[str, Any] | None:
    cursor = await conn.execute(
        f"""WITH changed AS (
                UPDATE api_keys SET active = %s WHERE id = %s AND deleted_at IS NULL RETURNING {KEY_COLUMNS}
            ) {RECORD.format(keys="changed")}""",  # noqa: S608 - composed from constants only
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
        """SELECT (SELECT count(*) FROM api_keys WHERE active AND deleted_at IS NULL) AS active_keys,
                  (SELECT max(last_success_at) FROM key_health) AS last_key_ok_at"""
    )
    row = await cursor.fetchone()
    return row or {"active_keys": 0, "last_key_ok_at": None}


async def get_live(conn: Connection, key_id: int) -> dict[str, Any] | None:
    cursor = await conn.execute(f"{RECORD.format(keys='api_keys')} WHERE k.id = %s AND k.deleted_at IS NULL", (key_id,))
    return await cursor.fetchone()
