"""The prober's only SQL: reading stored keys (the api's `api_keys`, the columns docs/architecture.md grants it).
The prober never writes PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cg_common.db import Connection


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: int
    kind: str
    ciphertext: bytes | None  # None once the key is deleted
    fingerprint: str
    active: bool
    deleted_at: datetime | None

    @property
    def usable(self) -> bool:
        return self.ciphertext is not None and self.deleted_at is None


async def load_keys(conn: Connection, key_ids: Sequence[int]) -> dict[int, StoredKey]:
    """The stored keys among `key_ids` (unknown ids are simply absent), in one query."""
    cursor = await conn.execute(
        "SELECT id, kind, ciphertext, fingerprint, active, deleted_at FROM api_keys WHERE id = ANY(%s)",
        (list(key_ids),),
    )
    keys = {}
    for row in await cursor.fetchall():
        ciphertext = row["ciphertext"]
        keys[row["id"]] = StoredKey(
            id=row["id"],
            kind=row["kind"],
            ciphertext=bytes(ciphertext) if ciphertext is not None else None,
            fingerprint=str(row["fingerprint"]),
            active=row["active"],
            deleted_at=row["deleted_at"],
        )
    return keys
