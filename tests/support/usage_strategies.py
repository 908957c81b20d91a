"""Hypothesis strategies for usage events that break the contract, one rule at a time."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from tests.support.usage import usage_event

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
NOT_AN_INT = st.one_of(
    st.text(max_size=5), st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.integers())
)
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "requests")


@st.composite
def invalid_message(draw: st.DrawFn) -> bytes:
    """A message that no careful reader would record: each strategy breaks one rule of contract section 6."""
    event = usage_event(source="//fuzz/bad", event_id=draw(st.uuids()).hex)
    kind = draw(
        st.sampled_from(
            ["missing", "specversion", "type", "negative", "not_int", "huge", "bad_json", "cached", "model", "data"]
        )
    )
    if kind == "missing":
        del event[draw(st.sampled_from(REQUIRED_ATTRIBUTES))]
    elif kind == "specversion":
        event["specversion"] = draw(st.text(max_size=10).filter(lambda v: v != "1.0"))
    elif kind == "type":
        event["type"] = draw(st.text(min_size=1, max_size=40).filter(lambda v: v != "io.costguardian.usage.v1"))
    elif kind == "negative":
        event["data"][draw(st.sampled_from(TOKEN_FIELDS))] = draw(st.integers(max_value=-1))
    elif kind == "not_int":
        event["data"][draw(st.sampled_from(TOKEN_FIELDS))] = draw(NOT_AN_INT)
    elif kind == "huge":
        event[draw(st.sampled_from(["id", "source"]))] = "x" * draw(st.integers(600, 70_000))
    elif kind == "bad_json":
        return draw(st.binary(max_size=200).filter(_not_a_json_object))
    elif kind == "cached":
        event["data"]["cached_input_tokens"] = event["data"]["input_tokens"] + draw(st.integers(1, 10**6))
    elif kind == "model":
        event["data"]["model"] = draw(st.sampled_from(["", " gpt", "gpt 4o", "x" * 300, "model\n"]))
    else:
        event["data"] = draw(st.one_of(st.text(max_size=20), st.integers(), st.lists(st.integers(), max_size=3)))
    return json.dumps(event).encode()


def _not_a_json_object(raw: bytes) -> bool:
    try:
        return not isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return True
