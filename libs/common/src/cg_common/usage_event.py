"""Usage events: CloudEvents 1.0 in structured JSON mode, whose `data` says what one system spent on one model.

The envelope is parsed and checked by the CloudEvents SDK; `data` by a strict model that also accepts the
OpenTelemetry GenAI names (`gen_ai.usage.input_tokens` …). Both the api (before publishing) and the ledger (before
recording) call `parse_usage_event`, so an event is judged the same way wherever it enters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, NamedTuple

import orjson
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent
from dateutil.parser import isoparse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, model_validator

USAGE_EVENT_TYPE = "io.costguardian.usage.v1"
MAX_EVENT_BYTES = 64 * 1024
MAX_TOKENS = 10**12
# Clocks disagree a little; an event stamped further ahead than this is a bug in its producer, not usage.
MAX_CLOCK_AHEAD = timedelta(days=1)

# OpenTelemetry GenAI semantic-convention names and the fields they fill.
OTEL_ALIASES = {
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
    "gen_ai.usage.cache_read.input_tokens": "cached_input_tokens",
    "gen_ai.usage.cached_input_tokens": "cached_input_tokens",
    "gen_ai.response.model": "model",
    "gen_ai.request.model": "model",
    "gen_ai.provider.name": "provider",
    "gen_ai.system": "provider",
}

TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
AttributeValue = Annotated[str, StringConstraints(max_length=256)] | int | float | bool
AttributeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
Attributes = Annotated[dict[AttributeName, AttributeValue], Field(max_length=32)]
Provider = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")]
Model = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,199}$")]
KeyId = Annotated[int, Field(ge=1, le=2**63 - 1)]
KeyFingerprint = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
# A reservation made by POST /budgets/admit (docs/admission.md): the event settles it.
ReservationId = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


class InvalidEventError(ValueError):
    """The event cannot be recorded; the message is the reason, safe to publish (it never quotes values)."""


class UsageData(BaseModel):
    """What was used: provider, model, tokens, requests, and optionally which stored key paid for it."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    provider: Provider
    model: Model
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cached_input_tokens: TokenCount = 0
    requests: Annotated[int, Field(ge=0, le=10**9)] = 1
    key_id: KeyId | None = None
    key_fingerprint: KeyFingerprint | None = None
    attributes: Attributes = Field(default_factory=dict)
    reservation_id: ReservationId | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_otel_names(cls, value: Any) -> Any:
        if not isinstance(value, dict) or value.keys().isdisjoint(OTEL_ALIASES):
            return value
        data = dict(value)
        for otel_name, field in OTEL_ALIASES.items():
            if otel_name not in data:
                continue
            given = data.pop(otel_name)
            if field in data and data[field] != given:
                raise ValueError(f"{otel_name} and {field} disagree")
            data[field] = given
        return data

    @model_validator(mode="after")
    def _cached_within_input(self) -> UsageData:
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached_input_tokens cannot exceed input_tokens (cached tokens are part of the input)")
        return self


class UsageEvent(NamedTuple):
    """A valid usage event. `time` is None when the producer did not stamp it; the receiver then supplies one."""

    source: str
    id: str
    time: datetime | None
    data: UsageData


_USAGE_DATA_LIST = TypeAdapter(list[UsageData])


def parse_usage_event(raw: bytes, *, now: datetime | None = None) -> UsageEvent:
    """Parse and check one structured-mode CloudEvent; raises InvalidEventError naming what is wrong."""
    envelope = _envelope(raw, now or datetime.now(UTC))
    event = envelope.event(_usage_or_error(envelope.data))
    if isinstance(event, InvalidEventError):
        raise event
    return event


def parse_usage_events(raws: Sequence[bytes], *, now: datetime) -> list[UsageEvent | InvalidEventError]:
    """`parse_usage_event` for a batch: for each message its event, or the error it would raise. The `data` of all
    events is validated in one call, a quarter cheaper than one call each; when some of it is invalid, each is
    validated again alone, so that every error names its own event's problems."""
    envelopes: list[_Envelope | InvalidEventError] = []
    for raw in raws:
        try:
            envelopes.append(_envelope(raw, now))
        except InvalidEventError as error:
            envelopes.append(error)
    datas = [envelope.data for envelope in envelopes if isinstance(envelope, _Envelope)]
    try:
        usages: list[UsageData | InvalidEventError] = list(_USAGE_DATA_LIST.validate_python(datas))
    except ValidationError:
        usages = [_usage_or_error(data) for data in datas]
    validated = iter(usages)
    return [
        envelope if isinstance(envelope, InvalidEventError) else envelope.event(next(validated))
        for envelope in envelopes
    ]


class _Envelope(NamedTuple):
    """An event checked but for its `data`'s fields."""

    source: str
    id: str
    time: datetime | None
    data: dict[str, Any]

    def event(self, usage: UsageData | InvalidEventError) -> UsageEvent | InvalidEventError:
        return usage if isinstance(usage, InvalidEventError) else UsageEvent(self.source, self.id, self.time, usage)


def _envelope(raw: bytes, now: datetime) -> _Envelope:
    """Everything but `data`'s fields: size, JSON, the CloudEvents attributes, type, time (None if unstamped)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEventError(f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    attributes, data = _read_structured(raw)
    stamped = "time" in attributes  # asked before the SDK sees it: it stamps an unstamped event with "now"
    try:
        event = CloudEvent(attributes, data)  # the SDK checks the attributes (types, names, specversion)
    except BaseCloudEventException as error:
        raise InvalidEventError(_one_line(str(error))) from None
    attributes = event.get_attributes()
    _check_envelope(attributes)
    time = _utc(attributes["time"], now) if stamped else None
    if not isinstance(data, dict):
        raise InvalidEventError("data must be a JSON object")
    return _Envelope(attributes["source"], attributes["id"], time, data)


def _usage_or_error(data: dict[str, Any]) -> UsageData | InvalidEventError:
    try:
        return UsageData.model_validate(data)
    except ValidationError as error:
        return InvalidEventError(describe_validation_error(error, prefix="data"))


def _read_structured(raw: bytes) -> tuple[dict[str, Any], Any]:
    """The JSON format's reading (what the SDK's JSONFormat.read does) done here, for two reasons: the SDK's
    CloudEvent fills a missing id with a fresh UUID and a missing time with now (a re-sent event would then count
    twice), and its dateutil time parsing is a third of the cost on the ledger's hot path."""
    try:
        attributes = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidEventError("not a structured CloudEvent in JSON: the body is not valid JSON") from None
    if not isinstance(attributes, dict):
        raise InvalidEventError("not a structured CloudEvent in JSON: not a JSON object")
    missing = [name for name in ("specversion", "id", "source", "type") if name not in attributes]
    if missing:
        raise InvalidEventError(f"missing required attribute{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    if "data_base64" in attributes:
        raise InvalidEventError("data must be a JSON object, not data_base64")
    data = attributes.pop("data", None)
    if "time" in attributes:
        attributes["time"] = _timestamp(attributes["time"])
    return attributes, data


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidEventError("time must be an RFC 3339 timestamp with a time zone")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    try:
        return isoparse(value)  # what the SDK uses: RFC 3339 forms fromisoformat does not take (e.g. 9 digits)
    except (ValueError, OverflowError):
        raise InvalidEventError("time must be an RFC 3339 timestamp with a time zone") from None


def _check_envelope(attributes: dict[str, Any]) -> None:
    if attributes["type"] != USAGE_EVENT_TYPE:
        raise InvalidEventError(f"type must be {USAGE_EVENT_TYPE}")
    if len(attributes["source"]) > 512:
        raise InvalidEventError("source is longer than 512 characters")
    if len(attributes["id"]) > 256:
        raise InvalidEventError("id is longer than 256 characters")
    content_type = attributes.get("datacontenttype")
    if content_type is not None and not str(content_type).startswith("application/json"):
        raise InvalidEventError("datacontenttype must be application/json")


def _utc(value: object, now: datetime) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidEventError("time must be an RFC 3339 timestamp with a time zone")
    stamped = value.astimezone(UTC)
    if stamped > now + MAX_CLOCK_AHEAD:
        raise InvalidEventError("time is more than a day in the future")
    return stamped


def describe_validation_error(error: ValidationError, *, prefix: str) -> str:
    """Each problem as `path: message`, without the offending values (they may be huge or secret)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in (prefix, *item["loc"]))
        parts.append(f"{path}: {item['msg'].removeprefix('Value error, ')}")
    return _one_line("; ".join(parts))


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
