"""The prober's own record of organization pulls (JetStream KV, `cg_prober.org_state`): a pull that stopped after
recording its events but before JetStream took them leaves them for the next pull to publish; two pulls changing one
hour's record at once cannot both win; nothing of the ledger's is read."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import nats
import orjson
import pytest
from nats.aio.client import Client as NATS

from cg_common.crypto import fingerprint
from cg_common.organization import organization_source
from cg_common.subjects import USAGE_STREAM
from cg_common.topology import PROBER_STATE_BUCKET
from cg_devstack.servers import Stack
from cg_prober.keys_repo import StoredKey
from cg_prober.org_state import HourState, OrganizationState, UsageFigures
from cg_prober.organization import OrganizationPuller
from tests.fake_openai import FakeServer, fake_key, running_fake_openai
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
        "id": f"{hour}:gpt-4o-mini:-:-|after:1:10:0:5",
        "source": organization_source(stored.fingerprint),
        "type": "io.costguardian.usage.v1",
        "time": "2026-01-01T00:00:00Z",
        "data": {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 7, "output_tokens": 1,
                 "cached_input_tokens": 0, "requests": 1},
    }  # fmt: skip
    # What a pull leaves when it stops between recording and publishing: figures counted, the event pending.
    crashed = HourState().with_emitted([stranded])
    assert await org_state.replace_hour(stored.fingerprint, hour, crashed) is not None
    await org_state.set_usage_until(stored.fingerprint, hour + HOUR)

    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        puller = OrganizationPuller(nc, org_state, client, lookback_hours=6)
        assert (await puller.pull(stored, key)).ok

    published = [orjson.loads(data) for _, data, _ in await stream_messages(stack.nats_url, USAGE_STREAM.name)]
    assert [event["id"] for event in published].count(stranded["id"]) == 1
    after = await org_state.hour(stored.fingerprint, hour)
    assert after.pending == ()  # published, then marked so
    assert after.figures[f"{hour}:gpt-4o-mini:-:-"].input_tokens >= 7


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
