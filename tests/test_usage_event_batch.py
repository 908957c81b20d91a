"""The ledger parses a batch at once (`parse_usage_events`); every event must be judged exactly as it would be alone
(`parse_usage_event`, which the api uses): the same event, or the same reason, in the same place."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cg_common.usage_event import InvalidEventError, UsageEvent, parse_usage_event, parse_usage_events
from tests.support.usage import usage_event
from tests.support.usage_strategies import invalid_message


@st.composite
def valid_message(draw: st.DrawFn) -> bytes:
    input_tokens = draw(st.integers(0, 10**6))
    event = usage_event(
        source=f"//batch/{draw(st.integers(0, 3))}",
        event_id=draw(st.uuids()).hex,
        input_tokens=input_tokens,
        cached_input_tokens=draw(st.integers(0, input_tokens)),
        output_tokens=draw(st.integers(0, 10**5)),
    )
    if draw(st.booleans()):
        data = event["data"]
        data["gen_ai.usage.input_tokens"] = data.pop("input_tokens")  # the OpenTelemetry name
    return json.dumps(event).encode()


def judged_alone(raw: bytes, now: datetime) -> UsageEvent | str:
    try:
        return parse_usage_event(raw, now=now)
    except InvalidEventError as error:
        return str(error)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(valid_message(), invalid_message()), max_size=12))
def test_a_batch_is_judged_event_by_event(raws: list[bytes]) -> None:
    now = datetime.now(UTC)
    together = [str(r) if isinstance(r, InvalidEventError) else r for r in parse_usage_events(raws, now=now)]
    assert together == [judged_alone(raw, now) for raw in raws]


def test_an_empty_batch_and_an_all_valid_one() -> None:
    now = datetime.now(UTC)
    assert parse_usage_events([], now=now) == []
    raws = [json.dumps(usage_event(source="//batch", event_id=f"e{n}")).encode() for n in range(3)]
    parsed = parse_usage_events(raws, now=now)
    assert [event.id for event in parsed if isinstance(event, UsageEvent)] == ["e0", "e1", "e2"]


def test_an_unstamped_event_has_no_time_of_its_own() -> None:
    """The receiver stamps it (the ledger: with the time JetStream stored it, the same on every redelivery); the
    CloudEvents SDK would otherwise stamp it with the moment of parsing, different on each redelivery."""
    raw = json.dumps(usage_event(source="//batch", event_id="unstamped")).encode()
    assert parse_usage_event(raw).time is None
    [event] = parse_usage_events([raw], now=datetime.now(UTC))
    assert isinstance(event, UsageEvent)
    assert event.time is None
