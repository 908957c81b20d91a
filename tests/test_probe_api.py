"""POST /keys/{id}/probe answered by a stand-in prober on real NATS; DELETE /keys/{id} purges pending requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from nats.errors import TimeoutError as NatsTimeoutError

from cg_common.probes import ProbeRequest, ProbeResult, probe_request_subject, probe_result_subject
from cg_common.publishing import Outgoing, publish, publish_all
from cg_common.subjects import PROBE_REQUEST, PROBE_REQUEST_STREAM
from cg_devstack.servers import start_nats
from tests.conftest import api_client, settings_from
from tests.support.jetstream import topology_for
from tests.support.keys import fake_openai_key
from tests.support.probes import pending_requests, probe_result

Answer = Callable[[ProbeRequest], ProbeResult]


@asynccontextmanager
async def stand_in_prober(nats_url: str, answer: Answer) -> AsyncIterator[list[ProbeRequest]]:
    """Plays the prober's part on NATS: takes requests from the work queue, publishes a result for each; before the
    real one, a result of another request for the same key, which the api must not take for its answer."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    taken: list[ProbeRequest] = []
    # The prober's own durable (the work-queue stream takes one consumer per subject), as provisioned.
    subscription = await js.pull_subscribe(
        f"{PROBE_REQUEST}.>", durable=topology_for({}).prober_requests.durable, stream=PROBE_REQUEST_STREAM.name
    )

    stopping = asyncio.Event()

    async def serve() -> None:
        while not stopping.is_set():
            try:
                messages = await subscription.fetch(10, timeout=0.5)
            except (NatsTimeoutError, TimeoutError):
                continue
            for message in messages:
                request = ProbeRequest.model_validate_json(message.data)
                taken.append(request)
                decoy = answer(request).model_copy(update={"request_id": "sched:other", "ok": False})
                for result in (decoy, answer(request)):
                    await publish(
                        nc,
                        Outgoing(
                            probe_result_subject(request.key_id),
                            result.model_dump_json().encode(),
                            msg_id=f"result:{result.request_id}:{request.request_id}",
                        ),
                    )
                await message.ack()

    task = asyncio.create_task(serve())
    try:
        yield taken
    finally:
        # Stopped by a flag, not by cancelling: nats-py's fetch can swallow a cancellation and loop on.
        stopping.set()
        await task
        await nc.close()


def healthy(request: ProbeRequest) -> ProbeResult:
    return probe_result(
        request.key_id, request.request_id, datetime.now(UTC), ok=True, reason=request.reason, latency_ms=87.0
    )


async def add_key(api: httpx.AsyncClient) -> int:
    created = await api.post("/keys", json={"label": "probe me", "api_key": fake_openai_key()})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


async def test_probe_answers_with_the_result_of_its_own_request(
    api: httpx.AsyncClient, api_env: dict[str, str], clean_streams: None
) -> None:
    key_id = await add_key(api)
    async with stand_in_prober(api_env["NATS_URL"], healthy) as taken:
        response = await api.post(f"/keys/{key_id}/probe")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r.request_id for r in taken] == [body["request_id"]]
    assert body["request_id"].startswith("manual:")
    assert taken[0].reason == "manual"
    assert body["key_id"] == key_id
    assert body["ok"] is True
    assert body["outcome"] == "ok"
    assert body["latency_ms"] == 87.0
    assert ProbeResult.model_validate(body).model_dump(exclude={"probed_at"}) == healthy(taken[0]).model_dump(
        exclude={"probed_at"}
    )


async def test_probe_times_out_with_504_when_nobody_answers(api_env: dict[str, str], clean_streams: None) -> None:
    async with api_client(settings_from({**api_env, "PROBE_WAIT_SECS": "1"})) as api:
        key_id = await add_key(api)
        response = await api.post(f"/keys/{key_id}/probe")
    assert response.status_code == 504
    assert response.json() == {"detail": "no probe result within 1 s; is the prober running?"}
    # The request stays queued for whenever a prober comes.
    assert [r.key_id for r in await pending_requests(api_env["NATS_URL"])] == [key_id]


async def test_probe_of_a_deleted_or_unknown_key_is_404(api: httpx.AsyncClient, clean_streams: None) -> None:
    key_id = await add_key(api)
    assert (await api.delete(f"/keys/{key_id}")).status_code == 204
    for missing in (key_id, 999_999):
        response = await api.post(f"/keys/{missing}/probe")
        assert response.status_code == 404
        assert response.json() == {"detail": f"no key with id {missing}"}


async def test_probe_is_503_while_nats_is_down(api_env: dict[str, str], tmp_path: Path) -> None:
    server = start_nats(tmp_path)
    try:
        async with api_client(settings_from({**api_env, "NATS_URL": server.url})) as api:
            key_id = await add_key(api)
            server.stop()
            response = await api.post(f"/keys/{key_id}/probe")
    finally:
        server.stop()
    assert response.status_code == 503
    assert "NATS" in response.json()["detail"]


async def test_deleting_a_key_purges_its_pending_requests(
    api: httpx.AsyncClient, api_env: dict[str, str], clean_streams: None
) -> None:
    doomed, kept = await add_key(api), await add_key(api)
    nc = await nats.connect(api_env["NATS_URL"])
    requests = [
        ProbeRequest(request_id=f"sched:{k}:{slot}", key_id=k, reason="scheduled", requested_at=datetime.now(UTC))
        for k in (doomed, kept)
        for slot in (1, 2)
    ]
    await publish_all(
        nc,
        [
            Outgoing(probe_request_subject(r.key_id), r.model_dump_json().encode(), msg_id=r.request_id)
            for r in requests
        ],
    )
    await nc.close()
    assert (await api.delete(f"/keys/{doomed}")).status_code == 204
    assert [r.request_id for r in await pending_requests(api_env["NATS_URL"])] == [f"sched:{kept}:1", f"sched:{kept}:2"]
