"""Probe messages: what the scheduler and the api ask of the prober, and what the prober answers.

`cg.probe.request.<key_id>` (stream `CG_PROBE_REQUESTS`, a work queue) carries a `ProbeRequest`; the prober answers on
`cg.probe.result.<key_id>` (stream `CG_PROBE_RESULTS`) with a `ProbeResult`, which the ledger records as the key's
health and the api waits for when a person asks for a probe now. Both are JSON; times are RFC 3339 UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cg_common.subjects import PROBE_REQUEST, PROBE_RESULT

ProbeMode = Literal["models", "completion"]
# What a probe found: `ok`, or why not. Transient ones (`rate_limited`, `timeout`, `upstream_error`,
# `network_error`) are retried with back-off before a final result is published.
ProbeOutcome = Literal[
    "ok",
    "invalid_api_key",
    "insufficient_quota",
    "rate_limited",
    "timeout",
    "upstream_error",
    "network_error",
    "key_unavailable",
]
TRANSIENT_OUTCOMES = frozenset({"rate_limited", "timeout", "upstream_error", "network_error"})


class ProbeMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeRequest(ProbeMessage):
    """Probe one stored key. Scheduled requests are named `sched:<key_id>:<slot>` (the slot is the interval's number
    since the epoch), so that any number of schedulers publish each key once per interval; manual ones `manual:<uuid>`.
    The request id is the message's `Nats-Msg-Id`."""

    request_id: str = Field(min_length=1, max_length=128)
    key_id: int = Field(ge=1)
    reason: Literal["scheduled", "manual"]
    requested_at: AwareDatetime
    slot: int | None = None  # scheduled requests only


class ProbeUsage(ProbeMessage):
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)


class ProbeResult(ProbeMessage):
    """One probe's final answer. `error_message` has been scrubbed of anything key-shaped by the prober."""

    request_id: str
    key_id: int
    reason: Literal["scheduled", "manual"]
    probed_at: AwareDatetime
    mode: ProbeMode
    outcome: ProbeOutcome
    ok: bool
    http_status: int | None = None
    error_code: str | None = None
    error_message: str | None = Field(default=None, max_length=500)
    latency_ms: float | None = None
    model: str | None = None
    usage: ProbeUsage | None = None
    attempts: int = Field(default=1, ge=1)


def probe_request_subject(key_id: int) -> str:
    """Requests are filed per key, so that deleting a key can purge its pending requests from the work queue."""
    return f"{PROBE_REQUEST}.{key_id}"


def probe_result_subject(key_id: int) -> str:
    """Results are filed per key, so the api can wait for one key's answer without reading every result."""
    return f"{PROBE_RESULT}.{key_id}"


def scheduled_request_id(key_id: int, slot: int) -> str:
    return f"sched:{key_id}:{slot}"


def slot_of(moment: datetime, interval_secs: int) -> int:
    """The interval `moment` falls in, counted from the epoch: the same on every scheduler replica."""
    return int(moment.timestamp()) // interval_secs
