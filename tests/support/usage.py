"""Usage events for tests, and helpers to push them through JetStream and to wait for the ledger."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import nats
import psycopg

from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import DLQ_STREAM, USAGE
from cg_common.usage_event import USAGE_EVENT_TYPE


def usage_event(
    *,
    source: str,
    event_id: str,
    model: str = "gpt-4o-mini-2024-07-18",
    provider: str = "openai",
    input_tokens: int = 1200,
    output_tokens: int = 300,
    cached_input_tokens: int = 0,
    requests: int = 1,
    time_: datetime | None = None,
    **data: Any,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": USAGE_EVENT_TYPE,
        "datacontenttype": "application/json",
        "data": {
            "provider": provider,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached_input_tokens,
            "requests": requests,
            **data,
        },
    }
    if time_ is not None:
        event["time"] = time_.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def wait_until(condition: Callable[[], bool], *, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(message)


def count_rows(database_url: str, where: str = "true", params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM usage_events WHERE {where}", params).fetchone()  # noqa: S608
    return int(row[0]) if row else 0


async def publish_mixed(nats_url: str, messages: list[bytes], batch: str) -> None:
    """Raw bytes onto cg.usage.>, each its own JetStream message (ids unique per `batch`), valid or not."""
    nc = await nats.connect(nats_url)
    try:
        outgoing = [Outgoing(f"{USAGE}.fuzz", m, msg_id=f"{batch}-{n}") for n, m in enumerate(messages)]
        await publish_all(nc, outgoing)
    finally:
        await nc.close()


async def dead_letters(nats_url: str) -> list[dict[str, Any]]:
    """Every message in the DLQ stream with its headers."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(DLQ_STREAM.name)
        if not info.state.messages:
            return []  # a stream never written to has first_seq 0, which get_msg refuses
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(DLQ_STREAM.name, seq)
            found.append({"headers": msg.headers or {}, "data": msg.data})
        return found
    finally:
        await nc.close()
