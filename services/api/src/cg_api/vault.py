"""The master key's life cycle: building the cipher, checking it opens stored keys, rotating to a new one."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from cg_api import keys_repo, webhooks_repo
from cg_api.settings import ApiSettings
from cg_common.crypto import KeyCipher, new_master_key
from cg_common.db import Connection
from cg_common.logging import get_logger

log = get_logger(__name__)

# How many stored keys the start-up check tries; enough to tell a wrong master key from a single bad row.
START_UP_SAMPLE = 20


class WrongMasterKeyError(RuntimeError):
    """MASTER_KEY opens none of the stored keys: starting would make every key unusable."""


def key_cipher(settings: ApiSettings) -> KeyCipher:
    if settings.master_keys:
        return KeyCipher(settings.master_keys)
    log.warning("MASTER_KEY is not set: using a throw-away key; keys stored now are unreadable after a restart")
    return KeyCipher([new_master_key()])


async def check_master_key(db: AsyncConnectionPool[Connection], cipher: KeyCipher) -> None:
    async with db.connection() as conn:
        sample = await keys_repo.sample_ciphertexts(conn, limit=START_UP_SAMPLE)
    if not sample:
        return
    opened = sum(cipher.can_decrypt(c) for c in sample)
    if opened == 0:
        raise WrongMasterKeyError(
            f"MASTER_KEY opens none of the {len(sample)} stored keys checked: it is the wrong key "
            "(to rotate, list the new key first and the old one after it, comma-separated)"
        )
    if opened < len(sample):
        log.warning("some stored keys cannot be decrypted with MASTER_KEY", checked=len(sample), opened=opened)


async def rotate_master_key(db: AsyncConnectionPool[Connection], cipher: KeyCipher) -> tuple[int, int]:
    """Re-encrypt every stored key and webhook secret under the first master key; returns (rotated, unreadable)."""
    rotated = unreadable = 0
    async with db.connection() as conn, conn.transaction():
        stored = [
            *(("key", key_id, ciphertext) for key_id, ciphertext in await keys_repo.lock_all_ciphertexts(conn)),
            *(("webhook", hook_id, ciphertext) for hook_id, ciphertext in await webhooks_repo.lock_all_secrets(conn)),
        ]
        for kind, row_id, ciphertext in stored:
            if not cipher.can_decrypt(ciphertext):
                unreadable += 1
                log.error("stored secret cannot be decrypted by any MASTER_KEY entry", kind=kind, id=row_id)
                continue
            replace = keys_repo.replace_ciphertext if kind == "key" else webhooks_repo.replace_secret
            await replace(conn, row_id, cipher.rotate(ciphertext))
            rotated += 1
    return rotated, unreadable
