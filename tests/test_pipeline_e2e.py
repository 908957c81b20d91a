"""The whole probing pipeline as deployed: scheduler → prober ×2 → ledger → PostgreSQL, read through the api.

Real `cg-scheduler`, `cg-prober`, `cg-ledger` and `cg-api` processes against the fake OpenAI, in completion mode: each
key's health ends up in `GET /keys`, a working key's probe usage is priced and shows in `GET /data`, a manual probe
answers through the pipeline, and the key is in no log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_openai import FakeServer, fake_key, running_fake_openai
from tests.support.processes import running_api, running_ledger, running_prober, running_scheduler
from tests.support.usage import wait_until

OUTCOMES = {"valid": "ok", "invalid": "invalid_api_key", "quota": "insufficient_quota"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with running_fake_openai() as server:
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
    }
    keys = {behaviour: fake_key(behaviour) for behaviour in OUTCOMES}
    with ExitStack() as stack:
        api = stack.enter_context(running_api(api_env, tmp_path / "api.log"))
        client = stack.enter_context(httpx.Client(base_url=api.url, headers={"X-API-Key": api_env["API_KEY"]}))
        ids = {}
        for behaviour, key in keys.items():
            response = client.post("/keys", json={"label": behaviour, "api_key": key})
            assert response.status_code == 201, response.text
            ids[behaviour] = response.json()["id"]
        logs = [tmp_path / name for name in ("ledger.log", "scheduler.log", "prober-1.log", "prober-2.log")]
        stack.enter_context(running_ledger(pipeline_env, logs[0]))
        stack.enter_context(running_scheduler(pipeline_env, logs[1]))
        stack.enter_context(running_prober(pipeline_env, logs[2]))
        stack.enter_context(running_prober(pipeline_env, logs[3]))

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

        metrics = client.get("/metrics").json()
        assert metrics["worker"]["healthy"] is True
        assert all(metrics["pipeline"][name]["alive"] for name in ("scheduler", "prober", "ledger"))

    for log in logs:
        text = log.read_text()
        assert not any(key in text for key in keys.values()), f"a key leaked into {log.name}"
