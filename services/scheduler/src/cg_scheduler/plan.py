"""When each key is due: one request per key per slot, at a stable offset inside the slot.

Every replica computes the same offset for a key (a hash of its id, not a random draw), so replicas publish a key at
about the same moment and JetStream's duplicate window drops all copies but the first; and the offsets spread the keys
evenly over the interval instead of bursting at the slot's start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

HASH_SPACE = 2**64


def offset_secs(key_id: int, interval_secs: int) -> float:
    """Seconds after its slot's start at which the key is due; uniform over [0, interval) across keys."""
    digest = hashlib.blake2b(key_id.to_bytes(8, "big"), digest_size=8).digest()
    return interval_secs * int.from_bytes(digest, "big") / HASH_SPACE


def slot_start(slot: int, interval_secs: int) -> float:
    """The slot's first second, in seconds since the epoch."""
    return float(slot * interval_secs)


def due_keys(key_ids: Iterable[int], *, now: float, slot: int, interval_secs: int) -> list[int]:
    """Keys whose moment in `slot` has come by `now` (a key added mid-slot is due at once if its moment passed)."""
    elapsed = now - slot_start(slot, interval_secs)
    return [key_id for key_id in key_ids if offset_secs(key_id, interval_secs) <= elapsed]
