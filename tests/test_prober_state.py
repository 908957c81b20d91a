"""The prober's own record of organization pulls (JetStream KV, `cg_prober.org_state`): a pull that stopped after
recording its events but before JetStream took them leaves them for the next pull to publish; two pulls changing one
hour's record at once cannot both win; hours a previous version recorded without users are not emitted again after
an upgrade; a key that may not list projects still has its usage emitted; nothing of the ledger's is read."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import nats
import orjson
import pytest
import structlog
from nats.aio.client import Client as NATS

from cg_common.crypto import fingerprint
from cg_common.organization import organization_source
from cg_common.subjects import USAGE_STREAM
from cg_common.topology import PROBER_STATE_BUCKET
from cg_devstack.servers import Stack
from cg_prober.keys_repo import StoredKey
from cg_prober.org_state import HourState, OrganizationState, UsageFigures
from cg_prober.organization import OrganizationPuller
from tests.fake_openai import FakeServer, fake_key, organization, running_fake_openai
from tests.support.probing import stream_messages

HOUR = 3600


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with running_fake_openai() as server:
        yield server


@pytest.fixture
async def state(stack: Stack, clean_streams: None) -> AsyncIterator[tuple[NATS, OrganizationState]]:
    nc = await nats.connect(stack.nats_url)
    yield nc, OrganizationState(await nc.jetstream().key_value(PROBER_STATE_BUCKET))
    await nc.close()


def admin_key(key: str) -> StoredKey:
    return StoredKey(id=1, kind="admin", ciphertext=b"-", fingerprint=fingerprint(key), active=True, deleted_at=None)


async def test_events_recorded_by_a_pull_that_stopped_are_published_by_the_next(
    state: tuple[NATS, OrganizationState], fake: FakeServer, stack: Stack
) -> None:
    nc, org_state = state
    key = fake_key(admin=True)
    stored = admin_key(key)
    hour = int(time.time()) // HOUR * HOUR - 2 * HOUR
    stranded = {
        "specversion": "1.0",
        "id": f"{hour}:gpt-4o-mini:-:-:-|after:1:10:0:5",
        "source": organization_source(stored.fingerprint),
        "type": "io.costguardian.usage.v1",
        "time": "2026-01-01T00:00:00Z",
        "data": {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 7, "output_tokens": 1,
                 "cached_input_tokens": 0, "requests": 1},
    }  # fmt: skip
    # What a pull leaves when it stops between recording and publishing: figures counted, the event pending.
    crashed = HourState().with_emitted([(stranded, f"{hour}:gpt-4o-mini:-:-")])
    assert await org_state.replace_hour(stored.fingerprint, hour, crashed) is not None
    await org_state.set_usage_until(stored.fingerprint, hour + HOUR)

    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        puller = OrganizationPuller(nc, org_state, client, lookback_hours=6)
        assert (await puller.pull(stored, key)).ok

    published = [orjson.loads(data) for _, data, _ in await stream_messages(stack.nats_url, USAGE_STREAM.name)]
    assert [event["id"] for event in published].count(stranded["id"]) == 1
    after = await org_state.hour(stored.fingerprint, hour)
    assert after.pending == ()  # published, then marked so
    assert after.figures[f"{hour}:gpt-4o-mini:-:-:-"].input_tokens >= 7
    assert after.figures[f"{hour}:gpt-4o-mini:-:-"].input_tokens >= 7  # and under its group


async def test_two_pulls_changing_one_hour_at_once_cannot_both_win(state: tuple[NATS, OrganizationState]) -> None:
    _nc, org_state = state
    print_ = "0123456789abcdef"
    hour = 1_700_000_000 // HOUR * HOUR
    seen = await org_state.hour(print_, hour)
    first = HourState({"a": UsageFigures(1, 10, 0, 5)}, (), seen.revision)
    second = HourState({"a": UsageFigures(2, 20, 0, 9)}, (), seen.revision)
    assert await org_state.replace_hour(print_, hour, first) is not None
    assert await org_state.replace_hour(print_, hour, second) is None  # read before the first wrote: refused
    assert (await org_state.hour(print_, hour)).figures == first.figures


async def test_hours_recorded_without_users_by_the_previous_version_are_not_emitted_again_after_an_upgrade(
    state: tuple[NATS, OrganizationState], fake: FakeServer, stack: Stack
) -> None:
    """The previous version grouped by model, project and key only, and its record holds those groups' ids. The
    hours it recorded come back in the new version's first pull (the late-usage overlap): what went out before is
    not sent again per user; only what OpenAI added since goes out, per group, without a user. The hour it did not
    reach goes out per user. A pull after that sends nothing, and every record holds each group's whole, so a rolled
    back prober would send nothing twice either."""
    nc, org_state = state
    key = fake_key(admin=True)
    stored = admin_key(key)
    end = int(time.time()) // HOUR * HOUR
    legacy = [end - 4 * HOUR, end - 3 * HOUR, end - 2 * HOUR]  # the previous version's last pull ended at end - 1h
    for hour in legacy:
        previous = HourState(_group_totals(organization.usage_records(hour)))  # as it wrote it: groups only
        assert await org_state.replace_hour(stored.fingerprint, hour, previous) is not None
    await org_state.set_usage_until(stored.fingerprint, end - HOUR)
    late_hour = legacy[-1]
    fake.fake.late_usage[late_hour] = 2  # reported since the previous version pulled it
    try:
        async with httpx.AsyncClient(base_url=fake.base_url) as client:
            puller = OrganizationPuller(nc, org_state, client, lookback_hours=6)
            assert (await puller.pull(stored, key)).ok
            published = await _published(stack)
            assert (await puller.pull(stored, key)).ok
            assert await _published(stack) == published  # nothing new: nothing more
    finally:
        fake.fake.late_usage.clear()

    by_hour: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in published:
        by_hour[int(event["id"].split(":", 1)[0])].append(event)
    assert set(by_hour) == {late_hour, end - HOUR}  # the other recorded hours: nothing new, nothing sent
    now_late = _group_totals(organization.usage_records(late_hour, late=2))
    before = _group_totals(organization.usage_records(late_hour))
    assert {event["id"].split("|")[0] for event in by_hour[late_hour]} == set(now_late)  # per group, as recorded
    for event in by_hour[late_hour]:
        group = event["id"].split("|")[0]
        assert "user" not in event["data"]["attributes"]
        assert UsageFigures.of_event(event) == now_late[group] - before[group]  # the addition only
    fresh = organization.usage_records(end - HOUR)
    assert len(by_hour[end - HOUR]) == len(fresh)  # per user
    assert all("|" not in event["id"] for event in by_hour[end - HOUR])
    for hour, records in ((late_hour, organization.usage_records(late_hour, late=2)), (end - HOUR, fresh)):
        figures = (await org_state.hour(stored.fingerprint, hour)).figures
        assert {group: figures[group] for group in _group_totals(records)} == _group_totals(records)


async def test_usage_goes_out_without_project_names_when_projects_cannot_be_listed(
    state: tuple[NATS, OrganizationState], fake: FakeServer, stack: Stack
) -> None:
    nc, org_state = state
    key = fake_key("usageonly", admin=True)  # may read usage, is refused the projects (403)
    stored = admin_key(key)
    with structlog.testing.capture_logs() as logs:
        async with httpx.AsyncClient(base_url=fake.base_url) as client:
            assert (await OrganizationPuller(nc, org_state, client, lookback_hours=3).pull(stored, key)).ok
    published = await _published(stack)
    expected = [
        r for hour in range(3) for r in organization.usage_records(int(time.time()) // HOUR * HOUR - (hour + 1) * HOUR)
    ]
    assert len(published) == len(expected)
    assert all("project_name" not in event["data"]["attributes"] for event in published)
    assert all(event["data"]["attributes"]["project"].startswith("proj_") for event in published)
    warnings = [line for line in logs if line["event"].startswith("organization projects not listed")]
    assert [(line["log_level"], line["http_status"]) for line in warnings] == [("warning", 403)]  # once a pull


async def test_project_names_are_read_page_by_page_once_a_pull(
    state: tuple[NATS, OrganizationState], fake: FakeServer, stack: Stack
) -> None:
    nc, org_state = state
    key = fake_key(admin=True)
    fake.fake.projects_page_max = 1
    try:
        async with httpx.AsyncClient(base_url=fake.base_url) as client:
            assert (await OrganizationPuller(nc, org_state, client, lookback_hours=3).pull(admin_key(key), key)).ok
    finally:
        fake.fake.projects_page_max = organization.MAX_PROJECTS_LIMIT
    names = {project.id: project.name for project in organization.PROJECTS}
    published = await _published(stack)
    assert {event["data"]["attributes"]["project"] for event in published} == set(names)  # the archived one too
    assert all(event["data"]["attributes"]["project_name"] == names[event["data"]["attributes"]["project"]]
               for event in published)  # fmt: skip
    # usage (one page), projects (a page each), costs (one page)
    assert fake.fake.requests_of(key) == 1 + len(names) + 1


def _group_totals(records: list[organization.UsageRecord]) -> dict[str, UsageFigures]:
    """What the previous version's ids (model, project, key) held: the figures of each group, users summed."""
    totals: dict[str, UsageFigures] = defaultdict(lambda: UsageFigures(0, 0, 0, 0))
    for r in records:
        group = f"{r.hour}:{r.model}:{r.project_id or '-'}:{r.api_key_id or '-'}"
        totals[group] += UsageFigures(r.requests, r.input_tokens, r.cached_tokens, r.output_tokens)
    return dict(totals)


async def _published(stack: Stack) -> list[dict[str, Any]]:
    return [orjson.loads(data) for _, data, _ in await stream_messages(stack.nats_url, USAGE_STREAM.name)]
