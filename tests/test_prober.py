"""`cg-prober run` as a real process against real NATS, PostgreSQL and Redis and the fake OpenAI: every outcome,
retries with back-off, completion usage, a SIGKILL mid-probe, and the key never leaving the process in clear."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import nats
import psycopg
import pytest
from redis.asyncio import Redis

from cg_common.crypto import fingerprint
from cg_common.heartbeats import heartbeat_key
from cg_common.organization import organization_source
from cg_common.probes import ProbeRequest
from cg_common.subjects import BILLING_STREAM, USAGE_STREAM
from cg_common.usage_event import parse_usage_event
from cg_prober.org_state import UsageFigures
from cg_prober.org_usage import late_addition, new_events
from tests.fake_openai import FakeServer, fake_key, organization, running_fake_openai
from tests.support.leaks import database_holds, nats_holds
from tests.support.probing import (
    probe_request,
    probe_results,
    publish_mixed_requests,
    publish_requests,
    store_key,
    stream_messages,
    wait_for_results,
)
from tests.support.processes import (
    ServiceProcess,
    free_port,
    running_api,
    running_ledger,
    running_prober,
    start_prober,
)
from tests.support.roles import service_role
from tests.support.usage import count_rows, dead_letters, wait_until

SLOW_MS = 2500
ATTRIBUTES = {"bucket_width", "project", "project_name", "user", "openai_api_key_id"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with running_fake_openai(slow_ms=SLOW_MS) as server:
        yield server


@pytest.fixture
def prober_env(ledger_env: dict[str, str], master_key: str, fake: FakeServer) -> Iterator[dict[str, str]]:
    """A prober with short timeouts and back-offs, so that retries and time-outs play out within seconds. It connects
    to PostgreSQL as a role of its own with only what docs/architecture.md grants the prober (the columns of
    `api_keys` it needs), so every test here proves it reads nothing else: no ledger table in particular."""
    with service_role(ledger_env["DATABASE_URL"], "prober") as database_url:
        yield prober_settings(ledger_env, master_key, fake, database_url)


def prober_settings(ledger_env: dict[str, str], master_key: str, fake: FakeServer, database_url: str) -> dict[str, str]:
    return {
        "NATS_URL": ledger_env["NATS_URL"],
        "DATABASE_URL": database_url,
        "REDIS_URL": ledger_env["REDIS_URL"],
        "MASTER_KEY": master_key,
        "OPENAI_BASE_URL": fake.base_url,
        "PROBE_TIMEOUT_SECS": "1",
        "PROBE_MAX_ATTEMPTS": "3",
        "PROBE_RETRY_BASE_SECS": "0.2",
        "PROBER_ACK_WAIT_SECS": "5",
        "LOG_LEVEL": "debug",
    }


def test_every_outcome_is_classified_retried_as_it_should_and_never_leaks_the_key(
    prober_env: dict[str, str], database_url: str, master_key: str, fake: FakeServer, tmp_path: Path
) -> None:
    behaviours = ["valid", "invalid", "quota", "ratelimited", "slow", "flaky", "down", "echo"]
    keys = {b: fake_key(b) for b in behaviours}
    ids = {b: store_key(database_url, master_key, k) for b, k in keys.items()}
    inactive = fake_key()
    inactive_id = store_key(database_url, master_key, inactive, active=False)
    deleted_id = store_key(database_url, master_key, fake_key(), deleted=True)
    requests = {b: probe_request(ids[b]) for b in behaviours}
    requests["inactive manual"] = probe_request(inactive_id)
    requests["deleted manual"] = probe_request(deleted_id)
    dropped = [
        probe_request(inactive_id, "scheduled"),
        probe_request(deleted_id, "scheduled"),
        probe_request(9999, "scheduled"),
    ]
    log_path = tmp_path / "prober.log"
    with running_prober(prober_env, log_path) as prober:
        asyncio.run(publish_mixed_requests(prober_env["NATS_URL"], b'{"not": "a probe request"}'))
        asyncio.run(publish_requests(prober_env["NATS_URL"], [*requests.values(), *dropped]))
        wanted = {r.request_id for r in requests.values()}
        results = wait_for_results(prober_env["NATS_URL"], wanted, timeout=60)
        by_name = {name: results[r.request_id] for name, r in requests.items()}
        metrics = httpx.get(prober.url + "/metrics").text
        assert asyncio.run(_heartbeats(prober_env["REDIS_URL"])) == 1
    expected = {
        "valid": ("ok", 200, 1),
        "invalid": ("invalid_api_key", 401, 1),
        "quota": ("insufficient_quota", 429, 1),
        "ratelimited": ("rate_limited", 429, 3),
        "slow": ("timeout", None, 3),
        "flaky": ("ok", 200, 2),
        "down": ("upstream_error", 503, 3),
        "echo": ("invalid_api_key", 401, 1),
        "inactive manual": ("ok", 200, 1),
        "deleted manual": ("key_unavailable", None, 1),
    }
    for name, (outcome, status, attempts) in expected.items():
        result = by_name[name]
        assert (result.outcome, result.http_status, result.attempts) == (outcome, status, attempts), name
        assert result.ok is (outcome == "ok")
        assert result.mode == "models"
    assert by_name["quota"].error_code == "insufficient_quota"
    assert by_name["ratelimited"].error_code == "rate_limit_exceeded"
    assert by_name["invalid"].error_code == "invalid_api_key"
    # Failing keys are not hammered: one call per attempt, none for permanent failures beyond the first.
    assert fake.fake.requests_of(keys["invalid"]) == 1
    assert fake.fake.requests_of(keys["quota"]) == 1
    assert fake.fake.requests_of(keys["ratelimited"]) == 3
    # The echoing upstream's message survives, minus the key.
    echoed = by_name["echo"].error_message or ""
    assert "[REDACTED]" in echoed
    assert "Incorrect API key provided" in echoed
    # Scheduled requests for deleted, unknown or inactive keys produce no result, and are counted.
    assert not {r.request_id for r in dropped} & {r.request_id for r in probe_results(prober_env["NATS_URL"])}
    assert 'cg_prober_dropped_total{reason="inactive"} 1.0' in metrics
    assert 'cg_prober_dropped_total{reason="unknown"} 1.0' in metrics
    assert 'cg_prober_dropped_total{reason="deleted"} 1.0' in metrics
    assert 'cg_prober_probes_total{outcome="timeout"} 1.0' in metrics
    # An unreadable request is set aside with its reason, not retried forever.
    [dead] = asyncio.run(dead_letters(prober_env["NATS_URL"]))
    assert dead["data"] == b'{"not": "a probe request"}'
    assert "not a probe request" in dead["headers"]["Cg-Dlq-Reason"]
    # The key is nowhere: not in a log line, a NATS message (any stream), or the database in clear.
    log_text = log_path.read_text()
    for plain in [*keys.values(), inactive]:
        assert plain not in log_text
        assert asyncio.run(nats_holds(prober_env["NATS_URL"], plain)) == []
        assert database_holds(database_url, plain) == []


async def _heartbeats(redis_url: str) -> int:
    redis = Redis.from_url(redis_url)
    try:
        return int(await redis.exists(heartbeat_key("prober")))
    finally:
        await redis.aclose()


def test_completion_probe_publishes_its_usage_once(
    prober_env: dict[str, str], database_url: str, master_key: str, fake: FakeServer, tmp_path: Path
) -> None:
    key_id = store_key(database_url, master_key, fake_key())
    request = probe_request(key_id, "scheduled")
    env = {**prober_env, "PROBE_MODE": "completion", "OPENAI_MODEL": "gpt-4o-mini"}
    with running_prober(env, tmp_path / "prober.log"):
        asyncio.run(publish_requests(env["NATS_URL"], [request]))
        result = wait_for_results(env["NATS_URL"], {request.request_id}, timeout=30)[request.request_id]
    assert result.ok
    assert result.mode == "completion"
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (8, 1)
    usage = asyncio.run(stream_messages(env["NATS_URL"], USAGE_STREAM.name))
    assert [subject for subject, _data, _headers in usage] == ["cg.usage.openai.probe"]
    event = parse_usage_event(usage[0][1])
    assert (event.source, event.id) == ("//cost-guardian/prober", f"probe:{request.request_id}")
    assert event.data.key_id == key_id
    assert (event.data.input_tokens, event.data.output_tokens, event.data.requests) == (8, 1, 1)


def test_unreachable_upstream_is_a_network_error_after_retries(
    prober_env: dict[str, str], database_url: str, master_key: str, tmp_path: Path
) -> None:
    key_id = store_key(database_url, master_key, fake_key())
    request = probe_request(key_id)
    env = {**prober_env, "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
    with running_prober(env, tmp_path / "prober.log"):
        asyncio.run(publish_requests(env["NATS_URL"], [request]))
        result = wait_for_results(env["NATS_URL"], {request.request_id}, timeout=30)[request.request_id]
    assert (result.outcome, result.attempts, result.ok) == ("network_error", 3, False)


class SlowProbe(NamedTuple):
    prober: ServiceProcess
    request: ProbeRequest
    env: dict[str, str]
    key: str  # the slow key, whose calls the fake counts


def a_slow_probe_in_flight(
    prober_env: dict[str, str], database_url: str, master_key: str, fake: FakeServer, log_path: Path
) -> SlowProbe:
    """A prober calling the fake with a key that answers slowly (after SLOW_MS, before the probe timeout): when this
    returns, the probe is in flight; a probe cut short comes back after the ack wait."""
    slow = fake_key("slow")
    request = probe_request(store_key(database_url, master_key, slow))
    env = {**prober_env, "PROBE_TIMEOUT_SECS": "4", "PROBER_ACK_WAIT_SECS": "6"}
    prober = start_prober(env, log_path)
    try:
        asyncio.run(publish_requests(env["NATS_URL"], [request]))
        wait_until(lambda: fake.fake.requests_of(slow) >= 1, timeout=20, message="the prober never called")
    except BaseException:
        prober.stop()
        raise
    return SlowProbe(prober, request, env, slow)


def test_a_prober_killed_mid_probe_is_replaced_and_the_request_answered_once(
    prober_env: dict[str, str], database_url: str, master_key: str, fake: FakeServer, tmp_path: Path
) -> None:
    first, request, env, slow = a_slow_probe_in_flight(
        prober_env, database_url, master_key, fake, tmp_path / "first.log"
    )
    first.kill()
    first.stop()
    assert not probe_results(env["NATS_URL"])
    with running_prober(env, tmp_path / "second.log"):
        result = wait_for_results(env["NATS_URL"], {request.request_id}, timeout=40)[request.request_id]
        wait_until(
            lambda: asyncio.run(_pending(env["NATS_URL"])) == 0, timeout=20, message="the request was never acked"
        )
    assert result.ok
    assert result.attempts == 2  # delivered twice: the killed probe and the one that finished
    assert [r.request_id for r in probe_results(env["NATS_URL"])] == [request.request_id]
    assert fake.fake.requests_of(slow) == 2


async def _pending(nats_url: str) -> int:
    messages = await stream_messages(nats_url, "CG_PROBE_REQUESTS")
    return len(messages)


def test_admin_key_organization_usage_is_recorded_once_even_when_pulled_twice(
    prober_env: dict[str, str],
    database_url: str,
    ledger_env: dict[str, str],
    api_env: dict[str, str],
    master_key: str,
    fake: FakeServer,
    tmp_path: Path,
) -> None:
    admin = fake_key(admin=True)
    key_id = store_key(database_url, master_key, admin, kind="admin")
    source = organization_source(fingerprint(admin))
    fake.fake.served_usage.clear()
    fake.fake.served_costs.clear()
    with (
        running_ledger(ledger_env, tmp_path / "ledger.log"),
        running_prober(prober_env, tmp_path / "prober.log") as prober,
    ):
        first = probe_request(key_id)
        asyncio.run(publish_requests(prober_env["NATS_URL"], [first]))
        assert wait_for_results(prober_env["NATS_URL"], {first.request_id}, timeout=30)[first.request_id].ok
        served = len(fake.fake.served_usage)
        assert served > 48  # two days of hours, several groups each: more than one page was followed
        wait_until(
            lambda: count_rows(database_url, "source = %s", (source,)) == served,
            timeout=30,
            message="the ledger did not record the organization's usage",
        )
        # Pulled again, by a probe that starts from the last recorded hour, and by one that starts from scratch.
        again = probe_request(key_id)
        asyncio.run(publish_requests(prober_env["NATS_URL"], [again]))
        assert wait_for_results(prober_env["NATS_URL"], {again.request_id}, timeout=30)[again.request_id].ok
        metrics = httpx.get(prober.url + "/metrics").text
    with running_ledger(ledger_env, tmp_path / "ledger-2.log"):  # a restart drains whatever was still in flight
        wait_until(
            lambda: asyncio.run(_ledger_pending(prober_env["NATS_URL"])) == 0,
            timeout=30,
            message="the ledger did not drain the usage and billing streams",
        )
    assert fake.fake.requests_of(admin) >= 4  # usage and costs, twice
    assert "cg_prober_org_usage_events_total" in metrics
    assert "cg_prober_requests_done_total" in metrics
    assert recorded_totals(database_url, source) == (len(fake.fake.served_usage), *served_totals(fake))
    # Billed costs: every (day, project) OpenAI reported, stored once, and shown beside the computed cost.
    billed = [Decimal(repr(r["amount"]["value"])) for r in fake.fake.served_costs.values()]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*), sum(amount) FROM billed_costs WHERE source = %s", (source,)).fetchone()
    assert stored is not None
    assert (stored[0], stored[1]) == (len(billed), sum(billed))
    with running_api(api_env, tmp_path / "api.log") as api:
        answer = httpx.get(api.url + "/usage/billed", headers={"X-API-Key": api_env["API_KEY"]}).json()
    assert Decimal(answer["billed"]) == sum(billed)
    assert Decimal(answer["computed"]) > 0
    assert all(isinstance(day["computed"], str) for day in answer["days"])
    assert asyncio.run(nats_holds(prober_env["NATS_URL"], admin)) == []
    assert admin not in (tmp_path / "prober.log").read_text()
    # All of it through a role that cannot read the ledger's tables: the prober's own record served it.
    with psycopg.connect(prober_env["DATABASE_URL"]) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT 1 FROM usage_events LIMIT 1")


def test_organization_usage_arrives_once_per_project_user_and_key_with_its_attributes_late_additions_included(
    prober_env: dict[str, str],
    database_url: str,
    ledger_env: dict[str, str],
    master_key: str,
    fake: FakeServer,
    tmp_path: Path,
) -> None:
    """Usage pulled per model, project, user and API key: the ledger ends with OpenAI's figures for each of those
    combinations, attributed (`project`, `project_name`, `user`, `openai_api_key_id` where OpenAI reports them).
    OpenAI then reports more usage for two recent hours: the next probe sends what was added, once, to the same
    combinations, and a probe after that sends nothing more."""
    admin = fake_key(admin=True)
    key_id = store_key(database_url, master_key, admin, kind="admin")
    source = organization_source(fingerprint(admin))
    fake.fake.served_usage.clear()
    last_hour = int(time.time()) // 3600 * 3600 - 3600

    def probe() -> None:
        request = probe_request(key_id)
        asyncio.run(publish_requests(prober_env["NATS_URL"], [request]))
        assert wait_for_results(prober_env["NATS_URL"], {request.request_id}, timeout=30)[request.request_id].ok
        wait_until(
            lambda: asyncio.run(_ledger_pending(prober_env["NATS_URL"])) == 0,
            timeout=30,
            message="the ledger did not drain the usage stream",
        )

    try:
        with (
            running_ledger(ledger_env, tmp_path / "ledger.log"),
            running_prober(prober_env, tmp_path / "prober.log"),
        ):
            probe()
            before = recorded_totals(database_url, source)
            assert before[1:] == served_totals(fake)
            assert recorded_by_attribution(database_url, source) == served_by_attribution(fake)
            fake.fake.late_usage.update({last_hour: 2, last_hour - 2 * 3600: 1})
            probe()
            after = recorded_totals(database_url, source)
            assert after[1:] == served_totals(fake) and after[1:] != before[1:]
            late_groups = sum(1 for (hour, _group) in fake.fake.served_usage if hour in fake.fake.late_usage)
            assert after[0] == before[0] + late_groups  # one late addition per combination of those hours
            assert recorded_by_attribution(database_url, source) == served_by_attribution(fake)
            probe()
            assert recorded_totals(database_url, source) == after  # pulled again, nothing new: nothing more
    finally:
        fake.fake.late_usage.clear()
    attributes = recorded_attributes(database_url, source)
    names = {project.id: project.name for project in organization.PROJECTS}
    assert {a["project"] for a in attributes} == set(names)  # the archived project's usage is there, named
    assert all(a["project_name"] == names[a["project"]] and a["bucket_width"] == "1h" for a in attributes)
    assert all(set(a) <= ATTRIBUTES and "-" not in a.values() for a in attributes)
    assert any("user" not in a for a in attributes)  # a service account's key: OpenAI reports no user
    assert any("openai_api_key_id" not in a for a in attributes)  # usage without an API key
    assert {a.get("user") for a in attributes} == {u for _key, _project, u in organization.USAGE_OWNERS}


def test_a_late_addition_is_what_a_bucket_holds_beyond_the_record() -> None:
    event = {
        "id": "1764576000:gpt-4o:proj:key",
        "data": {
            "requests": 5,
            "input_tokens": 900,
            "cached_input_tokens": 100,
            "output_tokens": 50,
            "provider": "openai",
            "model": "gpt-4o",
        },
    }
    recorded = UsageFigures(requests=3, input_tokens=600, cached_input_tokens=100, output_tokens=20)
    late = late_addition(event, recorded)
    assert late is not None
    assert late["id"] == "1764576000:gpt-4o:proj:key|after:3:600:100:20"
    assert (late["data"]["requests"], late["data"]["input_tokens"], late["data"]["output_tokens"]) == (2, 300, 30)
    assert late["data"]["cached_input_tokens"] == 0 and late["data"]["model"] == "gpt-4o"
    same = UsageFigures(requests=5, input_tokens=900, cached_input_tokens=100, output_tokens=50)
    assert late_addition(event, same) is None  # nothing new
    lowered = UsageFigures(requests=6, input_tokens=900, cached_input_tokens=100, output_tokens=50)
    assert late_addition(event, lowered) is None  # usage cannot be taken back: the record stays


def test_a_group_that_had_usage_sent_without_users_goes_on_as_a_whole() -> None:
    """A previous-version prober (during a rolling update, or after a rollback) sent an addition to a group this
    version had sent per user: the group's entry now holds more than its users' add up to, so only the group's total
    beyond its entry goes out, under the group's id, without a user. While they agree, each user goes on alone."""
    hour = 1_764_576_000
    group = f"{hour}:gpt-4o:proj_a:-"

    def result(user: str, requests: int) -> dict[str, Any]:
        return {"object": "organization.usage.completions.result", "model": "gpt-4o", "project_id": "proj_a",
                "user_id": user, "api_key_id": None, "num_model_requests": requests, "input_tokens": 100 * requests,
                "input_cached_tokens": 0, "output_tokens": 10 * requests}  # fmt: skip

    def figures(requests: int) -> UsageFigures:
        return UsageFigures(requests, 100 * requests, 0, 10 * requests)

    results = [result("user-a", 5), result("user-b", 4)]
    per_user = {f"{group}:user-a": figures(3), f"{group}:user-b": figures(2)}
    agreeing = new_events("//x", hour, results, {**per_user, group: figures(5)}, {"proj_a": "Search"})
    assert [(event["id"], event["data"]["requests"], event["data"]["attributes"]["user"]) for event, _ in agreeing] == [
        (f"{group}:user-a|after:3:300:0:30", 2, "user-a"),
        (f"{group}:user-b|after:2:200:0:20", 2, "user-b"),
    ]
    [(whole, whole_group)] = new_events("//x", hour, results, {**per_user, group: figures(6)}, {"proj_a": "Search"})
    assert (whole["id"], whole_group) == (f"{group}|after:6:600:0:60", group)
    assert UsageFigures.of_event(whole) == figures(3)  # 9 reported, 6 sent: 3, once
    assert whole["data"]["attributes"] == {"bucket_width": "1h", "project": "proj_a", "project_name": "Search"}


def recorded_totals(database_url: str, source: str) -> tuple[int, ...]:
    """Rows, input, output and cached tokens, and requests the ledger recorded for `source`."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT count(*), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), sum(requests)
               FROM usage_events WHERE source = %s""",
            (source,),
        ).fetchone()
    assert row is not None
    return tuple(int(v or 0) for v in row)


def recorded_by_attribution(database_url: str, source: str) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """Input, output and cached tokens, and requests the ledger recorded for `source` per (hour, model, project,
    user, OpenAI key), late additions summed into their bucket."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT extract(epoch FROM occurred_at)::bigint, model, attributes,
                      input_tokens, output_tokens, cached_input_tokens, requests
               FROM usage_events WHERE source = %s""",
            (source,),
        ).fetchall()
    totals: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for hour, model, attributes, *figures in rows:
        key = (hour, model, attributes.get("project"), attributes.get("user"), attributes.get("openai_api_key_id"))
        totals[key] = tuple(a + b for a, b in zip(totals.get(key, (0, 0, 0, 0)), figures, strict=True))
    return totals


def recorded_attributes(database_url: str, source: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute("SELECT attributes FROM usage_events WHERE source = %s", (source,))]


def served_by_attribution(fake: FakeServer) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """What the fake OpenAI last served per (hour, model, project, user, OpenAI key), the prober's groupings."""
    figures = ("input_tokens", "output_tokens", "input_cached_tokens", "num_model_requests")
    return {
        (hour, *group): tuple(result[name] for name in figures)
        for (hour, group), result in fake.fake.served_usage.items()
    }


def served_totals(fake: FakeServer) -> tuple[int, ...]:
    """Input, output and cached tokens, and requests the fake OpenAI last served per bucket and group."""
    rows = list(fake.fake.served_usage.values())
    figures = ("input_tokens", "output_tokens", "input_cached_tokens", "num_model_requests")
    return tuple(sum(r[name] for r in rows) for name in figures)


async def _ledger_pending(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        pending = 0
        for stream, consumer in ((USAGE_STREAM.name, "ledger"), (BILLING_STREAM.name, "ledger-billing")):
            info = await nc.jetstream().consumer_info(stream, consumer)
            pending += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return pending
    finally:
        await nc.close()


def test_sigterm_finishes_the_probe_in_hand_then_exits_cleanly(
    prober_env: dict[str, str], database_url: str, master_key: str, fake: FakeServer, tmp_path: Path
) -> None:
    prober, request, env, _slow = a_slow_probe_in_flight(
        prober_env, database_url, master_key, fake, tmp_path / "prober.log"
    )
    code = prober.stop(timeout=20)  # SIGTERM while the slow call is in flight
    assert code == 0
    results = probe_results(env["NATS_URL"])
    assert [(r.request_id, r.ok, r.attempts) for r in results] == [(request.request_id, True, 1)]
    assert asyncio.run(_pending(env["NATS_URL"])) == 0  # acknowledged before exiting
