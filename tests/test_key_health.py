"""The ledger records probe results as each key's health, exactly once whatever the order, re-sends or crashes."""

from __future__ import annotations

import asyncio
import random
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import nats
import psycopg
from nats.js.errors import NotFoundError

from cg_common.migrate import apply_migrations, bundled_migrations
from cg_common.probes import ProbeResult
from cg_common.subjects import PROBE_RESULT_STREAM
from cg_devstack.servers import Stack
from tests.support.keys import fake_openai_key
from tests.support.probes import insert_key, key_health, probe_result, publish_results
from tests.support.processes import running_ledger, start_ledger
from tests.support.usage import dead_letters, wait_until

CONSUMER = "ledger-probe-results"
BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)


def at(minutes: int) -> datetime:
    return BASE + timedelta(minutes=minutes)


async def settled(nats_url: str, total: int) -> bool:
    """True once the ledger's probe-result consumer has acknowledged `total` messages and holds none."""
    nc = await nats.connect(nats_url)
    try:
        try:
            info = await nc.jetstream().consumer_info(PROBE_RESULT_STREAM.name, CONSUMER)
        except NotFoundError:  # the ledger has not created it yet
            return False
        return (info.ack_floor.stream_seq if info.ack_floor else 0) >= total and not info.num_ack_pending
    finally:
        await nc.close()


def wait_settled(nats_url: str, total: int, timeout: float = 60) -> None:
    wait_until(lambda: asyncio.run(settled(nats_url, total)), timeout=timeout, message="results not all settled")


async def settle(nats_url: str, total: int) -> None:
    """`wait_settled` for a test that runs in an event loop of its own: up to a minute."""
    for _ in range(600):
        if await settled(nats_url, total):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("results not all settled")


async def test_results_update_health_once_whatever_the_order(
    api: httpx.AsyncClient, ledger_env: dict[str, str], tmp_path: Path
) -> None:
    ids = []
    for label in ("failing", "recovering", "deleted", "echoing"):
        created = await api.post("/keys", json={"label": label, "api_key": fake_openai_key()})
        ids.append(created.json()["id"])
    failing, recovering, deleted, echoing = ids
    assert (await api.delete(f"/keys/{deleted}")).status_code == 204
    leaked = fake_openai_key()
    second_failure = probe_result(failing, "sched:a:2", at(2), ok=False)
    results: list[ProbeResult | bytes] = [
        probe_result(failing, "sched:a:1", at(1), ok=False),
        second_failure,
        second_failure,  # re-sent by a prober: counted once
        probe_result(failing, "sched:a:old", datetime.now(UTC) - timedelta(days=8), ok=False),  # past the memory
        probe_result(
            failing,
            "sched:a:3",
            at(3),
            ok=False,
            outcome="insufficient_quota",
            http_status=429,
            error_message="You exceeded your current quota",
        ),
        probe_result(recovering, "sched:b:1", at(1), ok=False),
        probe_result(recovering, "sched:b:3", at(3), ok=False, outcome="timeout", http_status=None),
        probe_result(recovering, "sched:b:4", at(4), ok=False, outcome="upstream_error", http_status=502),
        probe_result(deleted, "sched:c:1", at(1), ok=True),
        probe_result(echoing, "manual:x", at(1), ok=False, error_message=f"Incorrect API key provided: {leaked}"),
        b"not a probe result",
    ]
    late = [
        probe_result(recovering, "sched:b:2", at(2), ok=True),  # the failures after it, already in, still count
        probe_result(recovering, "sched:b:0", at(0), ok=False),  # before that success: its reset covers it
    ]
    with running_ledger(ledger_env, tmp_path / "ledger.log") as ledger:
        await publish_results(ledger_env["NATS_URL"], results, batch="order")
        await settle(ledger_env["NATS_URL"], len(results))
        await publish_results(ledger_env["NATS_URL"], late, batch="late")
        await settle(ledger_env["NATS_URL"], len(results) + len(late))
        # Everything again, in reverse: nothing changes.
        before = {key_id: key_health(ledger_env["DATABASE_URL"], key_id) for key_id in ids}
        await publish_results(ledger_env["NATS_URL"], [*late, *results][::-1], batch="again")
        await settle(ledger_env["NATS_URL"], 2 * (len(results) + len(late)))
        assert {key_id: key_health(ledger_env["DATABASE_URL"], key_id) for key_id in ids} == before
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(ledger.url + "/metrics")).text
        assert (await api.get("/metrics")).json()["pipeline"]["ledger"]["alive"] is True  # it beats while it runs
    assert "cg_ledger_probe_results_applied_total 9.0" in metrics

    keys = {k["id"]: k for k in (await api.get("/keys")).json()}
    assert keys[failing]["consecutive_failures"] == 3
    assert keys[failing]["last_success_at"] is None
    assert keys[failing]["last_outcome"] == "insufficient_quota"
    assert keys[failing]["last_status"] == 429
    assert keys[failing]["last_error"] == "insufficient_quota: You exceeded your current quota"
    assert datetime.fromisoformat(keys[failing]["last_probe_at"]) == at(3)

    assert keys[recovering]["consecutive_failures"] == 2
    assert datetime.fromisoformat(keys[recovering]["last_success_at"]) == at(2)
    assert datetime.fromisoformat(keys[recovering]["last_probe_at"]) == at(4)
    assert keys[recovering]["last_outcome"] == "upstream_error"
    assert keys[recovering]["last_latency_ms"] == 12.5

    assert deleted not in keys
    assert key_health(ledger_env["DATABASE_URL"], deleted)["last_probe_at"] is None

    assert leaked not in keys[echoing]["last_error"]
    assert "[REDACTED]" in keys[echoing]["last_error"]
    assert keys[echoing]["consecutive_failures"] == 1

    dlq = await dead_letters(ledger_env["NATS_URL"])
    assert [d["data"] for d in dlq] == [b"not a probe result"] * 2
    assert dlq[0]["headers"]["Cg-Dlq-Reason"].startswith("not a probe result")


def expected_health(results: list[ProbeResult]) -> dict[int, tuple[datetime | None, int, datetime]]:
    """Per key: (last success, failures after it, last probe), computed independently of the ledger."""
    expected = {}
    for key_id in {r.key_id for r in results}:
        mine = {r.request_id: r for r in results if r.key_id == key_id}.values()
        successes = [r.probed_at for r in mine if r.ok]
        last_success = max(successes) if successes else None
        failures = sum(1 for r in mine if not r.ok and (last_success is None or r.probed_at > last_success))
        expected[key_id] = (last_success, failures, max(r.probed_at for r in mine))
    return expected


def test_redeliveries_after_sigkill_change_nothing(ledger_env: dict[str, str], tmp_path: Path) -> None:
    rng = random.Random(4)
    key_ids = [insert_key(ledger_env["DATABASE_URL"]) for _ in range(5)]
    results = [
        probe_result(key_id, f"sched:{key_id}:{n}", at(n), ok=rng.random() < 0.3)
        for n in range(600)
        for key_id in key_ids
    ]
    rng.shuffle(results)
    sent = results + rng.sample(results, len(results) // 10)  # 10% re-sent by probers
    asyncio.run(publish_results(ledger_env["NATS_URL"], list(sent), batch="kill"))
    env = {**ledger_env, "LEDGER_ACK_WAIT_SECS": "2"}

    ledger = start_ledger(env, tmp_path / "ledger.log")
    wait_until(
        lambda: key_health(env["DATABASE_URL"], key_ids[0])["last_probe_at"] is not None,
        timeout=30,
        message="nothing applied",
    )
    ledger.kill()
    with running_ledger(env, tmp_path / "ledger.log"):
        wait_settled(env["NATS_URL"], len(sent), timeout=120)

    for key_id, (last_success, failures, last_probe) in expected_health(results).items():
        health = key_health(env["DATABASE_URL"], key_id)
        assert (health["last_success_at"], health["consecutive_failures"], health["last_probe_at"]) == (
            last_success,
            failures,
            last_probe,
        ), key_id


def test_upgrading_moves_key_health_out_of_api_keys(stack: Stack) -> None:
    """Migration 0008 on a database the previous release wrote: each probed key's health is in `key_health`."""
    name = "cg_upgrade_" + secrets.token_hex(4)
    with psycopg.connect(stack.database_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(stack.database_url)._replace(path="/" + name))
    try:
        before = [m for m in bundled_migrations() if m.version < 8]
        apply_migrations(url, before)
        with psycopg.connect(url) as conn:
            probed, never = (
                conn.execute(
                    """INSERT INTO api_keys (label, ciphertext, fingerprint, prefix, last4, last_probe_at,
                                             last_success_at, last_outcome, consecutive_failures)
                       VALUES (%s, 'x', %s, 'sk-', 'abcd', %s, %s, %s, %s) RETURNING id""",
                    (label, secrets.token_hex(8), *health),
                ).fetchone()
                for label, health in (("probed", (at(2), at(1), "rate_limited", 1)), ("never", (None,) * 3 + (0,)))
            )
        assert [m.version for m in apply_migrations(url)] == [m.version for m in bundled_migrations()][7:]
        assert probed is not None and never is not None
        moved = key_health(url, probed[0])
        assert (moved["last_probe_at"], moved["last_success_at"], moved["last_outcome"]) == (
            at(2),
            at(1),
            "rate_limited",
        )
        assert moved["consecutive_failures"] == 1
        assert key_health(url, never[0])["last_probe_at"] is None
    finally:
        with psycopg.connect(stack.database_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
