"""cg_common.usage_publisher against a real JetStream: de-duplication by (source, id), nothing published when invalid,
bounded failure when NATS is gone; and the event built from an `openai` SDK response."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from cg_common.messaging import connect_nats
from cg_common.publishing import PublishError
from cg_common.subjects import USAGE_STREAM
from cg_common.topology import provision
from cg_common.usage_event import InvalidEventError, parse_usage_event
from cg_common.usage_publisher import (
    prepare_usage,
    publish_usage,
    usage_event_from_openai,
    usage_msg_id,
    usage_subject,
)
from cg_devstack.servers import Stack, start_nats
from tests.support.jetstream import topology_for
from tests.support.usage import usage_event

# A real Chat Completions response body, as the API returns it.
CHAT_COMPLETION = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1219,
        "completion_tokens": 10,
        "total_tokens": 1229,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_06737a9306",
}
# A real Responses API body.
RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "max_output_tokens": None,
    "model": "gpt-4.1-2025-04-14",
    "output": [
        {
            "type": "message",
            "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "In a peaceful grove…", "annotations": []}],
        }
    ],
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "usage": {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 123,
    },
    "user": None,
    "metadata": {},
}


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[NATS]:
    """A connection to a NATS whose streams are provisioned."""
    client: NATS = await nats.connect(stack.nats_url)
    try:
        await provision(client.jetstream(), topology_for({}))
        yield client
    finally:
        await client.close()


def event(event_id: str | None = None, **data: Any) -> dict[str, Any]:
    return usage_event(
        source="//publisher-tests", event_id=event_id or f"e-{time.time_ns()}", time_=datetime.now(UTC), **data
    )


async def last_seq(js: JetStreamContext) -> int:
    return int((await js.stream_info(USAGE_STREAM.name)).state.last_seq)


async def test_a_resent_event_is_stored_once(nc: NATS) -> None:
    sent = event()
    first = await publish_usage(nc, sent)
    again = await publish_usage(nc, json.dumps(sent).encode())  # as bytes this time, formatted differently
    assert not first.duplicate
    assert again.duplicate is True
    assert (again.stream, again.seq) == (USAGE_STREAM.name, first.seq)
    stored = await nc.jetstream().get_msg(USAGE_STREAM.name, first.seq)
    assert stored.subject == "cg.usage.publisher-tests"
    assert json.loads(stored.data or b"") == sent
    assert (stored.headers or {})["Nats-Msg-Id"] == usage_msg_id(sent["source"], sent["id"])


async def test_an_invalid_event_raises_before_publishing(nc: NATS) -> None:
    before = await last_seq(nc.jetstream())
    no_provider = event()
    del no_provider["data"]["provider"]
    bad_events: list[bytes | dict[str, Any]] = [
        no_provider,
        event(input_tokens=-1),
        {"hello": "world"},
        b"not json",
        {"time": datetime.now(UTC)},  # not JSON-serialisable
    ]
    for bad in bad_events:
        with pytest.raises(InvalidEventError):
            await publish_usage(nc, bad)
    assert await last_seq(nc.jetstream()) == before


async def test_a_subject_outside_the_usage_stream_fails_within_bounds(nc: NATS) -> None:
    started = time.monotonic()
    with pytest.raises(PublishError):
        await publish_usage(nc, event(), subject="elsewhere.usage", ack_wait_secs=0.5, attempts=2)
    assert time.monotonic() - started < 3


async def test_nats_gone_raises_after_bounded_attempts(tmp_path: Path) -> None:
    server = start_nats(tmp_path)
    nc = await connect_nats(server.url, name="publisher-test")
    try:
        await provision(nc.jetstream(), topology_for({}))
        assert (await publish_usage(nc, event())).seq == 1
        server.stop()
        started = time.monotonic()
        with pytest.raises(match="after 3 attempts"):
            await publish_usage(nc, event(), ack_wait_secs=0.3, attempts=3)
        assert time.monotonic() - started < 2.5
    finally:
        with contextlib.suppress(ConnectionResetError):  # nats-py may trip over its own dead socket while closing
            await nc.close()
        server.stop()


def test_subjects_and_message_ids() -> None:
    assert usage_subject("//checkout-service/prod") == "cg.usage.checkout-service.prod"
    assert usage_subject("https://api.example.com/a b/*/>") == "cg.usage.https.api.example.com.a.b"
    assert usage_subject("///") == "cg.usage.unknown"
    assert usage_subject("/".join(f"t{n}" for n in range(20))).count(".") == 2 + 7  # at most 8 tokens
    assert usage_msg_id("//a", "b") == usage_msg_id("//a", "b") != usage_msg_id("//a/b", "")
    prepared = prepare_usage(event("x"), subject="cg.usage.custom")
    assert (prepared.subject, prepared.event.id) == ("cg.usage.custom", "x")


def test_event_from_an_openai_chat_completion() -> None:
    completion = ChatCompletion.model_validate(CHAT_COMPLETION)
    built = usage_event_from_openai(
        completion, source="//checkout/prod", key_fingerprint="0123456789abcdef", attributes={"team": "search"}
    )
    assert built["id"] == "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"
    assert built["time"] == "2025-03-10T01:25:52Z"
    assert built["data"] == {
        "provider": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "input_tokens": 1219,
        "output_tokens": 10,
        "cached_input_tokens": 1024,
        "requests": 1,
        "key_fingerprint": "0123456789abcdef",
        "attributes": {"team": "search"},
    }
    parsed = parse_usage_event(json.dumps(built).encode())
    assert (parsed.source, parsed.data.input_tokens) == ("//checkout/prod", 1219)
    # The same response as plain JSON (e.g. from httpx) gives the same event.
    assert usage_event_from_openai(CHAT_COMPLETION, source="//checkout/prod", key_fingerprint="0123456789abcdef",
                                   attributes={"team": "search"}) == built  # fmt: skip


def test_event_from_an_openai_responses_api_response() -> None:
    response = Response.model_validate(RESPONSE)
    built = usage_event_from_openai(response, source="//agents", event_id="run-7/step-2")
    assert built["id"] == "run-7/step-2"
    assert built["data"]["model"] == "gpt-4.1-2025-04-14"
    assert (built["data"]["input_tokens"], built["data"]["output_tokens"]) == (36, 87)
    parse_usage_event(json.dumps(built).encode())


def test_event_from_a_duck_typed_response() -> None:
    response = SimpleNamespace(
        id="chatcmpl-1",
        model="gpt-4o",
        usage=SimpleNamespace(prompt_tokens=50, completion_tokens=5, prompt_tokens_details=None),
    )
    built = usage_event_from_openai(response, source="//svc")
    assert "time" not in built  # no `created`: the ledger stamps it
    assert built["data"]["cached_input_tokens"] == 0
    assert (built["data"]["input_tokens"], built["data"]["output_tokens"]) == (50, 5)
    with pytest.raises(InvalidEventError, match="no usage"):
        usage_event_from_openai(SimpleNamespace(id="x", model="gpt-4o", usage=None), source="//svc")
    with pytest.raises(InvalidEventError, match="no id"):
        usage_event_from_openai(SimpleNamespace(model="gpt-4o", usage=response.usage), source="//svc")


async def test_an_openai_completion_published_end_to_end(nc: NATS) -> None:
    body = CHAT_COMPLETION | {"id": f"chatcmpl-{time.time_ns()}", "created": int(time.time())}
    ack = await publish_usage(nc, usage_event_from_openai(ChatCompletion.model_validate(body), source="//e2e"))
    stored = await nc.jetstream().get_msg(USAGE_STREAM.name, ack.seq)
    assert json.loads(stored.data or b"")["data"]["cached_input_tokens"] == 1024
