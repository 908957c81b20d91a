"""Publishing usage events to JetStream, for the api and for any Python system that reports usage.

An event is checked with `parse_usage_event` before anything is sent, so an invalid one never reaches the stream.
Each message carries `Nats-Msg-Id` = a hash of (source, id): JetStream's duplicate window then drops a quick re-send
(the ledger drops later ones, since (source, id) identifies an event), which is what makes it safe to re-send after
a lost ack — and this module does exactly that, a bounded number of times, before giving up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import Header, PubAck

from cg_common.publishing import Outgoing, publish
from cg_common.subjects import USAGE, USAGE_STREAM
from cg_common.usage_event import USAGE_EVENT_TYPE, InvalidEventError, UsageEvent, parse_usage_event

DEFAULT_ATTEMPTS = 3
# Subject tokens taken from the source: enough to route and filter on, short enough for any subject limit.
MAX_SUBJECT_TOKENS = 8
MAX_TOKEN_CHARS = 64
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
EXPECTED_STREAM = Header.EXPECTED_STREAM.value


@dataclass(frozen=True, slots=True)
class PreparedUsage:
    """A checked event, ready to publish: the exact bytes, the subject and the de-duplication id."""

    event: UsageEvent
    payload: bytes
    subject: str
    msg_id: str

    def outgoing(self) -> Outgoing:
        # The expected-stream header makes JetStream refuse, rather than mis-file, a subject no stream should take.
        return Outgoing(self.subject, self.payload, self.msg_id, headers={EXPECTED_STREAM: USAGE_STREAM.name})


def usage_msg_id(source: str, event_id: str) -> str:
    """`Nats-Msg-Id` for an event: SHA-256 hex of `source NUL id`, the same for every re-send of the event."""
    return hashlib.sha256(source.encode() + b"\x00" + event_id.encode()).hexdigest()


def usage_subject(source: str, *, prefix: str = USAGE) -> str:
    """`<prefix>.<tokens of the source>`: `//checkout-service/prod` → `cg.usage.checkout-service.prod`.

    Only letters, digits, `_` and `-` survive, since `.`, `*`, `>` and spaces mean something else in a subject."""
    tokens = [token[:MAX_TOKEN_CHARS] for token in _TOKEN.findall(source)[:MAX_SUBJECT_TOKENS]]
    return ".".join([prefix, *(tokens or ["unknown"])])


def prepare_usage(
    event: bytes | Mapping[str, Any], *, subject: str | None = None, subject_prefix: str = USAGE
) -> PreparedUsage:
    """Check the event and work out what to publish; raises InvalidEventError and sends nothing if it is invalid."""
    payload = event if isinstance(event, bytes) else _to_json(event)
    parsed = parse_usage_event(payload)
    return PreparedUsage(
        event=parsed,
        payload=payload,
        subject=subject or usage_subject(parsed.source, prefix=subject_prefix),
        msg_id=usage_msg_id(parsed.source, parsed.id),
    )


async def publish_usage(
    nc: NATS,
    event: bytes | Mapping[str, Any],
    *,
    subject: str | None = None,
    ack_wait_secs: float = 5.0,
    attempts: int = DEFAULT_ATTEMPTS,
) -> PubAck:
    """Check one usage event and publish it to `cg.usage.<source tokens>` (or `subject`), returning JetStream's ack.

    Raises InvalidEventError before publishing anything invalid, PublishError when no ack comes in time (waiting
    `ack_wait_secs` per attempt, re-sending under the same message id). `PubAck.duplicate` is true when JetStream
    already held this (source, id) within its duplicate window."""
    prepared = prepare_usage(event, subject=subject)
    return await publish(nc, prepared.outgoing(), ack_wait_secs=ack_wait_secs, attempts=attempts)


def usage_event_from_openai(
    response: Any,
    *,
    source: str,
    event_id: str | None = None,
    key_fingerprint: str | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    provider: str = "openai",
) -> dict[str, Any]:
    """The usage event for one response of the `openai` SDK (or its JSON as a dict), without depending on the SDK.

    Reads `usage.prompt_tokens`, `usage.completion_tokens`, `usage.prompt_tokens_details.cached_tokens` (Chat
    Completions; the Responses API's `input_tokens`/`output_tokens`/`input_tokens_details` too), `model`, and `id` as
    the event id, which OpenAI makes unique per completion, so that re-sending the event never counts it twice."""
    usage = _field(response, "usage")
    if usage is None:
        raise InvalidEventError("the response has no usage (a stream needs stream_options={'include_usage': True})")
    input_tokens = _field(usage, "prompt_tokens", _field(usage, "input_tokens", 0))
    output_tokens = _field(usage, "completion_tokens", _field(usage, "output_tokens", 0))
    details = _field(usage, "prompt_tokens_details", _field(usage, "input_tokens_details"))
    identifier = event_id or _field(response, "id")
    if not identifier:
        raise InvalidEventError("the response has no id; pass event_id")
    data: dict[str, Any] = {
        "provider": provider,
        "model": _field(response, "model"),
        "input_tokens": input_tokens or 0,
        "output_tokens": output_tokens or 0,
        "cached_input_tokens": _field(details, "cached_tokens", 0) or 0,
        "requests": 1,
    }
    if key_fingerprint is not None:
        data["key_fingerprint"] = key_fingerprint
    if attributes:
        data["attributes"] = dict(attributes)
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(identifier),
        "source": source,
        "type": USAGE_EVENT_TYPE,
        "datacontenttype": "application/json",
        "data": data,
    }
    time = _unix_time(_field(response, "created", _field(response, "created_at")))
    if time is not None:
        event["time"] = time
    return event


def _unix_time(value: Any) -> str | None:
    """RFC 3339 UTC for a Unix timestamp; None for anything else (the ledger then stamps the event)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """An attribute of an SDK object, or a key of its JSON dict; `default` when absent or None."""
    if obj is None:
        return default
    value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    return default if value is None else value


def _to_json(event: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise InvalidEventError(f"the event cannot be written as JSON: {type(error).__name__}") from None
