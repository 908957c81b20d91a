"""GET /metrics in the contract's JSON shape and as Prometheus text; CORS from ALLOWED_ORIGINS."""

from __future__ import annotations

import asyncio

import httpx
import nats
import pytest

from cg_common.cache import connect_redis
from cg_common.heartbeats import beat
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import DLQ
from tests.conftest import api_client, settings_from
from tests.support.keys import fake_openai_key


async def test_metrics_json_has_the_contract_shape(api: httpx.AsyncClient, clean_streams: None) -> None:
    await api.post("/keys", json={"label": "a", "api_key": fake_openai_key()})
    body = (await api.get("/metrics")).json()
    assert body["version"] == "1"
    assert body["env"] == "development"
    assert body["debug"] is False
    assert body["rate_limit"]["rpm"] == 100000
    assert body["rate_limit"]["exempt_paths"] == ["/ping", "/dashboard"]
    assert body["counters"] == {"rate_limit_hits": 0}
    assert body["db"] == {"usage_rows": 0, "active_keys": 1, "last_usage_at": None, "last_key_ok_at": None}
    assert body["admission"] == {"refusals": 0, "overruns": 0, "live_reservations": 0}
    # Nothing of the pipeline runs: the worker is honestly reported unhealthy.
    assert body["worker"]["healthy"] is False
    assert body["worker"]["probe_interval_secs"] == 300
    dead = {"alive": False, "last_beat_at": None}
    assert body["pipeline"] == {
        "scheduler": dead,
        "prober": dead,
        "ledger": dead,
        "notifier": dead,
        "dlq": {"messages": 0},
    }


async def test_worker_is_healthy_only_while_scheduler_and_prober_beat(
    api: httpx.AsyncClient, api_env: dict[str, str]
) -> None:
    redis = connect_redis(api_env["REDIS_URL"], timeout_secs=1)
    await beat(redis, "scheduler", ttl_secs=30)
    body = (await api.get("/metrics")).json()
    assert body["worker"]["healthy"] is False  # requests made, nobody to answer them
    assert body["pipeline"]["scheduler"]["alive"] is True
    assert body["worker"]["last_heartbeat_at"] == body["pipeline"]["scheduler"]["last_beat_at"]

    await beat(redis, "prober", ttl_secs=1)
    body = (await api.get("/metrics")).json()
    assert body["worker"]["healthy"] is True
    assert body["pipeline"]["prober"]["alive"] is True
    assert body["pipeline"]["ledger"]["alive"] is False

    for _ in range(50):  # the prober's beat expires after its 1 s TTL: it is no longer counted as alive
        body = (await api.get("/metrics")).json()
        if not body["pipeline"]["prober"]["alive"]:
            break
        await asyncio.sleep(0.1)
    assert body["pipeline"]["prober"] == {"alive": False, "last_beat_at": None}
    assert body["worker"]["healthy"] is False
    await redis.aclose()


async def test_dlq_count_comes_from_the_stream(
    api: httpx.AsyncClient, clean_streams: None, api_env: dict[str, str]
) -> None:
    nc = await nats.connect(api_env["NATS_URL"])
    await publish_all(nc, [Outgoing(f"{DLQ}.usage", b"bad", msg_id=f"dlq-test-{n}") for n in range(3)])
    await nc.close()
    body = (await api.get("/metrics")).json()
    assert body["pipeline"]["dlq"] == {"messages": 3}
    text = (await api.get("/metrics", headers={"Accept": "text/plain"})).text
    assert "cg_dlq_messages 3.0" in text
    assert 'cg_pipeline_alive{service="ledger"} 0.0' in text
    assert "cg_admission_refusals 0.0" in text


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
async def test_metrics_as_prometheus_text(api: httpx.AsyncClient, accept: str) -> None:
    await api.post("/keys", json={"label": "a", "api_key": fake_openai_key()})
    response = await api.get("/metrics", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(accept.split(";")[0])
    assert "cg_active_keys 1.0" in response.text
    assert "cg_worker_healthy 0.0" in response.text
    assert "cg_rate_limit_hits 0.0" in response.text


async def test_cors_allows_only_listed_origins(api_env: dict[str, str]) -> None:
    settings = settings_from({**api_env, "ALLOWED_ORIGINS": "https://dash.example.com"})
    async with api_client(settings) as client:
        allowed = await client.options(
            "/keys",
            headers={"Origin": "https://dash.example.com", "Access-Control-Request-Method": "GET"},
        )
        refused = await client.options(
            "/keys", headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
    assert "access-control-allow-origin" not in refused.headers
