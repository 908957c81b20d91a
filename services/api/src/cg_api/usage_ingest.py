"""POST /usage/events, minus the HTTP plumbing: read the body, check every event, publish them all or none.

All-or-nothing on validation: if one event of a batch is invalid, nothing is published and the caller is told which
ones and why, so it can fix them and re-send the whole batch without having created partial state. Publishing is
all-or-error: the caller gets 202 only once JetStream acknowledged every event, and 503 otherwise — re-sending the
batch then is safe, since an event is identified by (source, id) and stored once however often it arrives.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import HTTPException, Request, status
from nats.aio.client import Client as NATS

from cg_api.unavailable import DependencyUnavailableError
from cg_common.logging import get_logger
from cg_common.publishing import PublishError
from cg_common.publishing import publish_all as publish_pipelined
from cg_common.subjects import USAGE_HTTP
from cg_common.usage_event import InvalidEventError
from cg_common.usage_publisher import DEFAULT_ATTEMPTS, PreparedUsage, prepare_usage

log = get_logger(__name__)

MAX_BATCH_EVENTS = 1000
MAX_BODY_BYTES = 5 * 1024 * 1024
OUTER_MARGIN_SECS = 0.3

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PLAIN = "application/json"
MEDIA_TYPES = (SINGLE, BATCH, PLAIN)


async def read_body(request: Request, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` (before reading it all, if declared)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"the body is over {limit} bytes, the limit")
        chunks.append(chunk)
    return b"".join(chunks)


def events_in(body: bytes, content_type: str) -> list[Any]:
    """The JSON values the body holds: one event, or a batch as a JSON array, as its content type says."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=f"Content-Type must be one of: {', '.join(MEDIA_TYPES)}"
        )
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, NaN/Infinity, or nested beyond reason
        raise _unprocessable("the body is not valid JSON", "json_invalid") from None
    if media_type == SINGLE and not isinstance(value, dict):
        raise _unprocessable(f"{SINGLE} holds one event: a JSON object", "event_expected")
    if media_type == BATCH and not isinstance(value, list):
        raise _unprocessable(f"{BATCH} holds a JSON array of events", "batch_expected")
    events = value if isinstance(value, list) else [value]
    if len(events) > MAX_BATCH_EVENTS:
        raise _too_large(f"the batch has {len(events)} events; the limit is {MAX_BATCH_EVENTS}")
    return events


def prepare_all(events: list[Any]) -> list[PreparedUsage]:
    """Every event checked; raises 422 naming each invalid one (by index) before anything is published."""
    prepared: list[PreparedUsage] = []
    problems: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        try:
            prepared.append(prepare_usage(_event_bytes(event), subject_prefix=USAGE_HTTP))
        except InvalidEventError as error:
            problems.append(
                {"loc": ["body", index], "index": index, "msg": str(error) or "invalid event", "type": "invalid_event"}
            )
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=problems)
    return prepared


async def publish_all(nc: NATS, prepared: list[PreparedUsage], *, timeout_secs: float) -> None:
    """Publish pipelined and wait for every ack; raises 503 (with Retry-After) unless JetStream took them all."""
    try:
        # The outer bound holds whatever happens inside: the caller hears within timeout_secs and a little.
        async with asyncio.timeout(timeout_secs + OUTER_MARGIN_SECS):
            await publish_pipelined(
                nc,
                [p.outgoing() for p in prepared],
                ack_wait_secs=timeout_secs / DEFAULT_ATTEMPTS,
                attempts=DEFAULT_ATTEMPTS,
            )
    except (PublishError, TimeoutError) as error:
        log.warning("usage events not acknowledged", events=len(prepared), error=str(error) or type(error).__name__)
        raise DependencyUnavailableError(
            "nats",
            f"JetStream did not acknowledge the {len(prepared)} events in time; nothing is lost by re-sending "
            "the whole request: events are identified by (source, id) and stored once",
        ) from None


def _event_bytes(event: Any) -> bytes:
    """One event as compact JSON, the bytes that are published (and so what the ledger and subscribers read)."""
    if not isinstance(event, dict):
        raise InvalidEventError("an event must be a JSON object")
    try:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800": not text any store can hold
        raise InvalidEventError("the event holds a string that is not valid Unicode") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unprocessable(message: str, kind: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[{"loc": ["body"], "msg": message, "type": kind}]
    )


def _too_large(message: str) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=message)
