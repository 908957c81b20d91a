"""The whole probing pipeline as deployed: scheduler → prober ×2 → ledger → PostgreSQL, read through the api.

Real `cg-scheduler`, `cg-prober`, `cg-ledger` and `cg-api` processes against the fake OpenAI, in completion mode: each
key's health ends up in `GET /keys`, a working key's probe usage is priced and shows in `GET /data`, a manual probe
answers through the pipeline, and the key is in no log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest

from cg_common.subjects import PROBE_RESULT, PROBE_RESULT_STREAM
from tests.fake_openai import FakeServer, fake_key, running_fake_openai
from tests.support.processes import running_api, running_ledger, running_prober, running_scheduler
from tests.support.roles import migration_step_roles
from tests.support.usage import wait_until

OUTCOMES = {
    "valid": "ok",
    "invalid": "invalid_api_key",
    "quota": "insufficient_quota",
    "ratelimited": "rate_limited",
    "slow": "timeout",
    "down": "upstream_error",
}


async def scheduled_results(nats_url: str) -> list[tuple[int, str]]:
    """(key id, request id) of every scheduled probe result in the stream, duplicates included."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        total = (await js.stream_info(PROBE_RESULT_STREAM.name)).state.messages
        subscription = await js.pull_subscribe(f"{PROBE_RESULT}.>", stream=PROBE_RESULT_STREAM.name)
        found: list[tuple[int, str]] = []
        seen = 0
        while seen < total:
            batch = await subscription.fetch(min(500, total - seen), timeout=5)
            seen += len(batch)
            for message in batch:
                result = orjson.loads(message.data)
                if result["reason"] == "scheduled":
                    found.append((result["key_id"], result["request_id"]))
        return found
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with running_fake_openai(slow_ms=2500) as server:
        yield server


def test_scheduled_probes_end_in_key_health_and_priced_usage(
    api_env: dict[str, str], ledger_env: dict[str, str], fake: FakeServer, tmp_path: Path
) -> None:
    pipeline_env = {
        **ledger_env,
        "MASTER_KEY": api_env["MASTER_KEY"],
        "OPENAI_BASE_URL": fake.base_url,
        "PROBE_MODE": "completion",
        "OPENAI_MODEL": "gpt-4o-mini",
        "PROBE_INTERVAL_SECS": "5",
        # Transient failures retried quickly, so that their final outcome arrives within the test.
        "PROBE_TIMEOUT_SECS": "1",
        "PROBE_MAX_ATTEMPTS": "2",
        "PROBE_RETRY_BASE_SECS": "0.2",
        "PROBER_ACK_WAIT_SECS": "5",
    }
    keys = {behaviour: fake_key(behaviour) for behaviour in OUTCOMES}
    # Every service as its own PostgreSQL role, made by the migration step with the grants docs/architecture.md
    # lists (and, through the test stack, as its own NATS user): each can do its whole job with them.
    role_urls = migration_step_roles(api_env["DATABASE_URL"])
    api_env = {**api_env, "DATABASE_URL": role_urls["api"]}

    def as_service(service: str) -> dict[str, str]:
        return {**pipeline_env, "DATABASE_URL": role_urls[service]}

    with ExitStack() as stack:
        api = stack.enter_context(running_api(api_env, tmp_path / "api.log"))
        client = stack.enter_context(httpx.Client(base_url=api.url, headers={"X-API-Key": api_env["API_KEY"]}))
        ids = {}
        for behaviour, key in keys.items():
            response = client.post("/keys", json={"label": behaviour, "api_key": key})
            assert response.status_code == 201, response.text
            ids[behaviour] = response.json()["id"]
        # Two schedulers and three probers, as a scaled-out deployment runs them.
        names = ("ledger", "scheduler-1", "scheduler-2", "prober-1", "prober-2", "prober-3")
        logs = [tmp_path / f"{name}.log" for name in names]
        stack.enter_context(running_ledger(as_service("ledger"), logs[0]))
        for log in logs[1:]:
            service = "scheduler" if log.name.startswith("scheduler") else "prober"
            runner = running_scheduler if service == "scheduler" else running_prober
            stack.enter_context(runner(as_service(service), log))

        def health() -> dict[int, dict[str, Any]]:
            return {k["id"]: k for k in client.get("/keys").json()}

        wait_until(
            lambda: all(health()[ids[b]]["last_outcome"] == outcome for b, outcome in OUTCOMES.items()),
            timeout=90,
            message="every key probed with its outcome",
        )
        keys_now = health()
        assert keys_now[ids["valid"]]["last_success_at"] is not None
        assert keys_now[ids["valid"]]["consecutive_failures"] == 0
        assert keys_now[ids["invalid"]]["last_status"] == 401
        assert keys_now[ids["invalid"]]["consecutive_failures"] >= 1
        assert keys_now[ids["quota"]]["last_status"] == 429

        # The working key's one-token completions are usage, priced by the ledger and attributed to the key.
        wait_until(
            lambda: bool(client.get("/data", params={"key_id": ids["valid"]}).json()["items"]),
            timeout=60,
            message="probe usage recorded",
        )
        usage = client.get("/data", params={"key_id": ids["valid"]}).json()["items"][0]
        assert usage["model"].startswith("gpt-4o-mini")
        assert usage["cost"] is not None and float(usage["cost"]) > 0

        # A manual probe goes through the same prober and comes back within the api's wait.
        manual = client.post(f"/keys/{ids['valid']}/probe")
        assert manual.status_code == 200, manual.text
        assert manual.json()["outcome"] == "ok"

        # Two schedulers, three probers: still one scheduled request per key and slot, and one result for each.
        wait_until(
            lambda: (
                len({r for r in asyncio.run(scheduled_results(ledger_env["NATS_URL"])) if r[0] == ids["valid"]}) >= 2
            ),
            timeout=30,
            message="a second slot probed",
        )
        results = asyncio.run(scheduled_results(ledger_env["NATS_URL"]))
        assert len(results) == len(set(results)), "a scheduled request was probed or answered twice"

        metrics = client.get("/metrics").json()
        assert metrics["worker"]["healthy"] is True
        assert all(metrics["pipeline"][name]["alive"] for name in ("scheduler", "prober", "ledger"))

    for log in logs:
        text = log.read_text()
        assert not any(key in text for key in keys.values()), f"a key leaked into {log.name}"
