"""Probe pipeline helpers for tests: stored keys, probe requests published as the scheduler and api do, and the
results read back from JetStream."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Literal

import nats
import psycopg
from nats.js.errors import NotFoundError

from cg_common.crypto import KeyCipher, fingerprint, prefix_of
from cg_common.probes import ProbeRequest, ProbeResult, probe_request_subject
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import PROBE_RESULT_STREAM


def store_key(
    database_url: str,
    master_key: str,
    plain: str,
    *,
    kind: str = "standard",
    active: bool = True,
    deleted: bool = False,
) -> int:
    """A key stored as the api stores it: encrypted under `master_key`; a deleted one keeps no secret."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """INSERT INTO api_keys (label, kind, ciphertext, fingerprint, prefix, last4, active, deleted_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                "test key",
                kind,
                None if deleted else KeyCipher([master_key]).encrypt(plain),
                fingerprint(plain),
                prefix_of(plain),
                plain[-4:],
                active and not deleted,
                datetime.now(UTC) if deleted else None,
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def probe_request(key_id: int, reason: Literal["scheduled", "manual"] = "manual") -> ProbeRequest:
    now = datetime.now(UTC)
    if reason == "manual":
        return ProbeRequest(request_id=f"manual:{uuid.uuid4()}", key_id=key_id, reason=reason, requested_at=now)
    slot = int(now.timestamp()) // 300
    return ProbeRequest(
        request_id=f"sched:{key_id}:{slot}:{uuid.uuid4().hex[:8]}",
        key_id=key_id,
        reason=reason,
        requested_at=now,
        slot=slot,
    )


async def publish_requests(nats_url: str, requests: list[ProbeRequest]) -> None:
    nc = await nats.connect(nats_url)
    try:
        outgoing = [
            Outgoing(probe_request_subject(r.key_id), r.model_dump_json().encode(), msg_id=r.request_id)
            for r in requests
        ]
        await publish_all(nc, outgoing)
    finally:
        await nc.close()


async def publish_mixed_requests(nats_url: str, payload: bytes, key_id: int = 1) -> None:
    """Raw bytes where a probe request belongs, as a broken publisher would send them."""
    nc = await nats.connect(nats_url)
    try:
        await publish_all(nc, [Outgoing(probe_request_subject(key_id), payload, msg_id=uuid.uuid4().hex)])
    finally:
        await nc.close()


async def stream_messages(nats_url: str, stream: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """Every message still held by `stream`: subject, payload and headers."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream, seq)
                except NotFoundError:
                    continue  # acknowledged from a work queue, or deleted
                found.append((msg.subject or "", msg.data or b"", dict(msg.headers or {})))
        return found
    finally:
        await nc.close()


def probe_results(nats_url: str) -> list[ProbeResult]:
    messages = asyncio.run(stream_messages(nats_url, PROBE_RESULT_STREAM.name))
    return [ProbeResult.model_validate_json(data) for _subject, data, _headers in messages]


def wait_for_results(nats_url: str, request_ids: set[str], *, timeout: float) -> dict[str, ProbeResult]:
    """The results of these requests, once every one has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        results = {r.request_id: r for r in probe_results(nats_url) if r.request_id in request_ids}
        if len(results) == len(request_ids):
            return results
        if time.monotonic() > deadline:
            missing = request_ids - results.keys()
            raise TimeoutError(f"no result within {timeout} s for {sorted(missing)}")
        time.sleep(0.2)
