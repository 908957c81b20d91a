"""POST /usage/events: 202 only once JetStream holds every event (read back from CG_USAGE), nothing published when
any event is invalid, 503 with Retry-After — never 500 — when NATS is down, and safe re-sending."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import RawStreamMsg
from nats.js.client import JetStreamContext

from cg_common.subjects import USAGE_STREAM
from cg_common.usage_publisher import usage_msg_id
from cg_devstack.servers import Stack, start_nats
from tests.conftest import api_client, settings_from
from tests.support.jetstream import provision_for
from tests.support.usage import usage_event

CLOUDEVENT = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SOURCE = "//checkout-service/prod"


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


@pytest.fixture
async def js(stack: Stack) -> AsyncIterator[JetStreamContext]:
    async with jetstream(stack.nats_url) as context:
        yield context


async def last_seq(js: JetStreamContext) -> int:
    return int((await js.stream_info(USAGE_STREAM.name)).state.last_seq)


async def stored_since(js: JetStreamContext, seq: int) -> list[RawStreamMsg]:
    """Every message CG_USAGE took after sequence `seq`, in order."""
    return [await js.get_msg(USAGE_STREAM.name, s) for s in range(seq + 1, await last_seq(js) + 1)]


def event(event_id: str, **data: Any) -> dict[str, Any]:
    return usage_event(source=SOURCE, event_id=event_id, time_=datetime.now(UTC), **data)


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


async def post(api: httpx.AsyncClient, body: Any, content_type: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await api.post("/usage/events", content=content, headers={"Content-Type": content_type})


@pytest.mark.parametrize("content_type", [CLOUDEVENT, "application/json", "application/json; charset=utf-8"])
async def test_one_event_is_in_the_stream_when_202_comes(
    api: httpx.AsyncClient, js: JetStreamContext, content_type: str
) -> None:
    sent = event(unique("single"), attributes={"team": "search"})
    before = await last_seq(js)
    response = await post(api, sent, content_type)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1}
    [stored] = await stored_since(js, before)
    assert stored.subject == "cg.usage.http.checkout-service.prod"
    assert stored.data is not None
    assert json.loads(stored.data) == sent
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == usage_msg_id(SOURCE, sent["id"])


@pytest.mark.parametrize("content_type", [BATCH, "application/json"])
async def test_a_batch_is_in_the_stream_when_202_comes(
    api: httpx.AsyncClient, js: JetStreamContext, content_type: str
) -> None:
    batch = [event(unique(f"batch-{n}"), input_tokens=100 * n, output_tokens=n) for n in range(1, 26)]
    before = await last_seq(js)
    response = await post(api, batch, content_type)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 25}
    stored = await stored_since(js, before)
    by_id = {json.loads(m.data or b"")["id"]: m for m in stored}
    assert set(by_id) == {e["id"] for e in batch}  # published concurrently: any order, each once
    for sent in batch:
        message = by_id[sent["id"]]
        assert json.loads(message.data or b"") == sent
        assert (message.headers or {})["Nats-Msg-Id"] == usage_msg_id(SOURCE, sent["id"])


async def test_an_event_without_time_is_published_as_it_is(api: httpx.AsyncClient, js: JetStreamContext) -> None:
    sent = usage_event(source=SOURCE, event_id=unique("untimed"))
    assert "time" not in sent  # the ledger stamps it with the JetStream message time
    before = await last_seq(js)
    assert (await post(api, sent, CLOUDEVENT)).status_code == 202
    [stored] = await stored_since(js, before)
    assert "time" not in json.loads(stored.data or b"")


async def test_an_invalid_event_in_a_batch_publishes_nothing(api: httpx.AsyncClient, js: JetStreamContext) -> None:
    good = event(unique("good"))
    no_model = event(unique("bad"))
    del no_model["data"]["model"]
    wrong_type = event(unique("bad")) | {"type": "com.example.other"}
    batch = [good, no_model, good | {"id": unique("good")}, wrong_type, "not an object"]
    before = await last_seq(js)
    response = await post(api, batch, BATCH)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert [p["index"] for p in problems] == [1, 3, 4]
    assert [p["loc"] for p in problems] == [["body", 1], ["body", 3], ["body", 4]]
    assert "data.model" in problems[0]["msg"]
    assert "type must be" in problems[1]["msg"]
    assert "JSON object" in problems[2]["msg"]
    assert await last_seq(js) == before  # all or nothing: the valid ones were not published either


async def test_resending_the_same_event_is_accepted_and_stored_once(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    sent = event(unique("twice"))
    before = await last_seq(js)
    first = await post(api, sent, CLOUDEVENT)
    second = await post(api, sent, CLOUDEVENT)
    assert (first.status_code, second.status_code) == (202, 202)
    assert len(await stored_since(js, before)) == 1  # JetStream's duplicate window dropped the second copy


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", CLOUDEVENT, 422),
        (b'{"a": NaN}', "application/json", 422),
        (b"\xff\xfe\x00", "application/json", 422),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 422),
        (b"[]", CLOUDEVENT, 422),  # one event is an object
        (b"{}", BATCH, 422),  # a batch is an array
        (b"42", "application/json", 422),
        (b"{}", "text/plain", 415),
        (b"{}", "", 415),
        (b"[]", BATCH, 202),  # an empty batch is fine: nothing to do
    ],
)
async def test_malformed_bodies_are_4xx(
    api: httpx.AsyncClient, js: JetStreamContext, content: bytes, content_type: str, status: int
) -> None:
    before = await last_seq(js)
    headers = {"Content-Type": content_type} if content_type else {}
    response = await api.post("/usage/events", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert "detail" in response.json() or response.json() == {"accepted": 0}
    assert await last_seq(js) == before


async def test_a_lone_surrogate_is_an_invalid_event_not_an_error(api: httpx.AsyncClient) -> None:
    content = json.dumps(event(unique("surrogate"), attributes={"team": "\ud800"})).encode()
    response = await api.post("/usage/events", content=content, headers={"Content-Type": CLOUDEVENT})
    assert response.status_code == 422
    assert response.json()["detail"][0]["index"] == 0


async def test_too_many_events_or_bytes_is_413(api: httpx.AsyncClient, js: JetStreamContext) -> None:
    before = await last_seq(js)
    too_many = await post(api, [event(f"e{n}") for n in range(1001)], BATCH)
    assert too_many.status_code == 413
    assert "1001 events" in too_many.json()["detail"]
    too_big = await post(api, b" " * (5 * 1024 * 1024 + 1), BATCH)
    assert too_big.status_code == 413
    assert await last_seq(js) == before


async def test_nats_down_is_503_with_retry_after_then_recovers(api_env: dict[str, str], tmp_path: Path) -> None:
    server = start_nats(tmp_path)
    provision_for({"NATS_URL": server.url})
    port = int(server.url.rsplit(":", 1)[1])
    settings = settings_from({**api_env, "NATS_URL": server.url, "PUBLISH_TIMEOUT_SECS": "1"})
    sent = event(unique("outage"))
    try:
        async with api_client(settings) as client:
            assert (await post(client, event(unique("before")), CLOUDEVENT)).status_code == 202
            server.stop()
            started = time.monotonic()
            down = await post(client, sent, CLOUDEVENT)
            elapsed = time.monotonic() - started
            assert down.status_code == 503, down.text
            assert int(down.headers["retry-after"]) >= 1
            assert "re-send" in down.json()["detail"]
            assert elapsed < 3.0, f"the 503 took {elapsed:.1f} s with PUBLISH_TIMEOUT_SECS=1"

            server = start_nats(tmp_path, port=port)  # same port and data: the api reconnects by itself
            for _ in range(75):  # the client retries its connection every second; give it up to 15 s
                again = await post(client, sent, CLOUDEVENT)
                if again.status_code == 202:
                    break
                await asyncio.sleep(0.2)
            assert again.status_code == 202, again.text
        async with jetstream(server.url) as own_js:
            stored = [await own_js.get_msg(USAGE_STREAM.name, s) for s in range(1, await last_seq(own_js) + 1)]
        # Whatever the client buffered during the outage and the re-send: one copy of the event.
        assert [json.loads(m.data or b"")["id"] for m in stored].count(sent["id"]) == 1
    finally:
        server.stop()
