"""Probe messages for tests: keys the scheduler can see, requests in the work queue, results as a prober sends them."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import nats
import psycopg
from nats.js.errors import NotFoundError

from cg_common.probes import ProbeRequest, ProbeResult, probe_result_subject
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import PROBE_REQUEST_STREAM


def insert_key(database_url: str, *, active: bool = True, label: str = "k") -> int:
    """A stored key as the scheduler sees it (its ciphertext is never opened by the scheduler or the ledger)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """INSERT INTO api_keys (label, ciphertext, fingerprint, prefix, last4, active)
               VALUES (%s, %s, %s, 'sk-proj-', 'abcd', %s) RETURNING id""",
            (label, b"not-a-real-ciphertext", secrets.token_hex(8), active),
        ).fetchone()
    assert row is not None
    return int(row[0])


def key_health(database_url: str, key_id: int) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(
            """SELECT h.last_probe_at, h.last_success_at, h.last_error, h.last_status, h.last_outcome,
                      h.last_latency_ms, coalesce(h.consecutive_failures, 0) AS consecutive_failures
               FROM api_keys k LEFT JOIN key_health h ON h.key_id = k.id WHERE k.id = %s""",
            (key_id,),
        )
        row = cursor.fetchone()
        assert row is not None and cursor.description is not None
        return dict(zip([column.name for column in cursor.description], row, strict=True))


async def pending_requests(nats_url: str) -> list[ProbeRequest]:
    """Every request still in the work queue, oldest first (read by sequence, without consuming)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(PROBE_REQUEST_STREAM.name)).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1):
            try:
                message = await js.get_msg(PROBE_REQUEST_STREAM.name, seq)
            except NotFoundError:  # purged or removed from the middle
                continue
            found.append(ProbeRequest.model_validate_json(message.data or b""))
        return found
    finally:
        await nc.close()


def probe_result(
    key_id: int,
    request_id: str,
    probed_at: datetime,
    *,
    ok: bool,
    outcome: str | None = None,
    http_status: int | None = None,
    error_message: str | None = None,
    **fields: Any,
) -> ProbeResult:
    return ProbeResult.model_validate(
        {
            "request_id": request_id,
            "key_id": key_id,
            "reason": "scheduled",
            "probed_at": probed_at,
            "mode": "models",
            "outcome": outcome or ("ok" if ok else "invalid_api_key"),
            "ok": ok,
            "http_status": http_status if http_status is not None else (200 if ok else 401),
            "error_code": None if ok else (outcome or "invalid_api_key"),
            "error_message": error_message,
            "latency_ms": 12.5,
            **fields,
        }
    )


async def publish_results(nats_url: str, results: Sequence[ProbeResult | bytes], *, batch: str) -> None:
    """Results onto their key's subject, each under a message id of its own: a re-sent result (same request id)
    therefore reaches the ledger again instead of being dropped by JetStream, which is what the ledger must survive."""
    nc = await nats.connect(nats_url)
    try:
        outgoing = [
            Outgoing(
                probe_result_subject(item.key_id if isinstance(item, ProbeResult) else 0),
                item.model_dump_json().encode() if isinstance(item, ProbeResult) else item,
                msg_id=f"{batch}-{n}",
            )
            for n, item in enumerate(results)
        ]
        await publish_all(nc, outgoing)
    finally:
        await nc.close()
