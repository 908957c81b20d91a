"""The shared token bucket: limits, exemptions, identity, and behaviour when Redis is down or hung."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cg_common.ratelimit import HITS_KEY
from cg_devstack.servers import RunningServer, start_redis
from tests.conftest import api_client, settings_from
from tests.support.processes import running_api


def limited(env: dict[str, str], **overrides: str) -> dict[str, str]:
    return {**env, "RATE_LIMIT_RPM": "60", "RATE_LIMIT_BURST": "3", **overrides}


def hits(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.get(HITS_KEY) or 0)
    finally:
        client.close()


async def test_over_the_limit_is_429_with_retry_after(api_env: dict[str, str]) -> None:
    async with api_client(settings_from(limited(api_env))) as client:
        statuses = [(await client.get("/keys")).status_code for _ in range(3)]
        refused = await client.get("/keys")
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["detail"].startswith("rate limit exceeded")
    assert hits(api_env["REDIS_URL"]) == 1


async def test_exempt_paths_skip_the_limiter(api_env: dict[str, str]) -> None:
    async with api_client(settings_from(limited(api_env, RATE_LIMIT_BURST="1"))) as client:
        statuses = {(await client.get("/ping")).status_code for _ in range(10)}
        statuses |= {(await client.get("/dashboard")).status_code for _ in range(10)}
    assert statuses == {200, 307}


async def test_wrong_keys_count_against_the_ip_not_a_fresh_bucket_each(api_env: dict[str, str]) -> None:
    async with api_client(settings_from(limited(api_env))) as client:
        wrong = [(await client.get("/keys", headers={"X-API-Key": f"guess-{n}"})).status_code for n in range(5)]
        # The admin key has its own bucket, so an attacker on the same IP cannot lock the admin out.
        admin = (await client.get("/keys")).status_code
    assert wrong == [401, 401, 401, 429, 429]
    assert admin == 200


async def test_bucket_refills_at_the_configured_rate(api_env: dict[str, str]) -> None:
    async with api_client(settings_from(limited(api_env, RATE_LIMIT_RPM="600", RATE_LIMIT_BURST="1"))) as client:
        assert (await client.get("/keys")).status_code == 200
        assert (await client.get("/keys")).status_code == 429
        await asyncio.sleep(0.15)  # 600 rpm = one token per 100 ms
        assert (await client.get("/keys")).status_code == 200


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RunningServer]:
    """A Redis of this test's own, so that it can be stopped or frozen without harming the others."""
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.thaw()
        server.stop()


@pytest.mark.parametrize("failure", ["frozen", "stopped"])
@pytest.mark.parametrize(("fail_mode", "expected_status"), [("open", 200), ("closed", 503)])
async def test_unreachable_redis_is_decided_by_fail_mode_without_stalling(
    api_env: dict[str, str], own_redis: RunningServer, failure: str, fail_mode: str, expected_status: int
) -> None:
    env = limited(api_env, REDIS_URL=own_redis.url, RATE_LIMIT_FAIL_MODE=fail_mode, REDIS_TIMEOUT_MS="100")
    async with api_client(settings_from(env)) as client:
        assert (await client.get("/keys")).status_code == 200
        if failure == "frozen":
            own_redis.freeze()  # SIGSTOP: connections hang instead of being refused
        else:
            own_redis.stop()
        started = time.monotonic()
        statuses = [(await client.get("/keys")).status_code for _ in range(20)]
        elapsed = time.monotonic() - started
    assert set(statuses) == {expected_status}
    # 20 requests with a 100 ms Redis timeout: without the cool-down this would take 2 s or more.
    assert elapsed < 1.5, f"requests stalled on a dead Redis: {elapsed:.2f} s for 20"


async def test_limiter_recovers_when_redis_thaws(api_env: dict[str, str], own_redis: RunningServer) -> None:
    env = limited(api_env, REDIS_URL=own_redis.url, RATE_LIMIT_FAIL_MODE="closed", REDIS_TIMEOUT_MS="100")
    async with api_client(settings_from(env)) as client:
        own_redis.freeze()
        assert (await client.get("/keys")).status_code == 503
        own_redis.thaw()
        await asyncio.sleep(1.2)  # the limiter leaves Redis alone for a 1 s cool-down after a failure
        statuses = [(await client.get("/keys")).status_code for _ in range(5)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses


async def test_two_api_processes_share_one_bucket(api_env: dict[str, str], tmp_path: Path) -> None:
    rpm, burst = 120, 10
    env = limited(api_env, RATE_LIMIT_RPM=str(rpm), RATE_LIMIT_BURST=str(burst), LOG_LEVEL="warning")
    headers = {"X-API-Key": env["API_KEY"]}
    with running_api(env, tmp_path / "a.log") as first, running_api(env, tmp_path / "b.log") as second:
        async with httpx.AsyncClient(headers=headers, timeout=5) as client:
            started = time.monotonic()
            admitted = {first.url: 0, second.url: 0}
            refused = {first.url: 0, second.url: 0}
            while time.monotonic() - started < 4.0:
                responses = await asyncio.gather(*(client.get(url + "/keys") for url in (first.url, second.url)))
                for url, response in zip((first.url, second.url), responses, strict=True):
                    assert response.status_code in (200, 429)
                    (admitted if response.status_code == 200 else refused)[url] += 1
            elapsed = time.monotonic() - started
    total = sum(admitted.values())
    assert total <= burst + rpm * elapsed / 60, (admitted, elapsed)
    assert total >= burst
    # Both replicas admitted and refused: they drew from the same bucket, not one each.
    assert all(admitted.values()) and all(refused.values())
