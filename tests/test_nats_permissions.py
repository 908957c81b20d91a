"""NATS permissions, against a real nats-server started with the deployments' own file
(deploy/k8s/base/nats-permissions.conf): other systems can publish usage (and get JetStream's ack) or follow costs,
alerts and dead letters, and nothing else; no service can reach beyond its own subjects or touch the streams'
configuration."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import APIError

from cg_common.messaging import inbox_prefix
from cg_common.subjects import ALL_STREAMS, USAGE_STREAM
from cg_devstack import nats_users
from cg_devstack.nats_server import start_nats
from cg_devstack.process import RunningServer
from tests.support.jetstream import provision_for
from tests.support.usage import usage_event

FORBIDDEN_TO_PUBLISHERS = (
    "cg.probe.request.1",
    "cg.probe.result.1",
    "cg.billing.openai.costs",
    "cg.cost.recorded.openai",
    "cg.alert.budget",
    "cg.dlq.usage",
    "$JS.API.STREAM.DELETE.CG_USAGE",
    "$JS.API.STREAM.INFO.CG_USAGE",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_nats(tmp_path_factory.mktemp("nats-permissions"))
    provision_for({"NATS_URL": running.url})
    yield running
    running.stop()


async def connect(server: RunningServer, user: str) -> tuple[NATS, list[str]]:
    """A connection as `user`, with the permission violations the server reports collected."""
    violations: list[str] = []

    async def on_error(error: Exception) -> None:
        violations.append(str(error))

    url = server.user_urls[user]
    nc = await nats.connect(
        url, error_cb=on_error, inbox_prefix=inbox_prefix(url) if user != "usage-publisher" else "_INBOX"
    )
    return nc, violations


async def refused(nc: NATS, violations: list[str], subject: str) -> bool:
    """Whether publishing `subject` was refused: the server says so asynchronously, after a round trip."""
    before = len(violations)
    await nc.publish(subject, b"{}")
    await nc.flush(timeout=2)
    await asyncio.sleep(0.05)
    # nats-py lower-cases the server's message.
    return any("permissions violation" in v.lower() and subject.lower() in v.lower() for v in violations[before:])


def test_the_permission_file_names_every_user_with_a_password_from_the_environment() -> None:
    text = nats_users.PERMISSIONS_FILE.read_text()
    users = re.findall(r"user: ([\w-]+), password: \$(\w+)", text)
    assert [user for user, _ in users] == list(nats_users.USERS)
    assert all(variable == nats_users.password_variable(user) for user, variable in users)


async def test_a_usage_publisher_publishes_usage_and_nothing_else(server: RunningServer) -> None:
    nc, violations = await connect(server, "usage-publisher")
    admin = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        before = (await admin.jetstream().stream_info(USAGE_STREAM.name)).state.messages
        ack = await js.publish(
            "cg.usage.checkout", json.dumps(usage_event(source="//checkout", event_id="p1")).encode()
        )
        assert ack.stream == USAGE_STREAM.name  # published, and the ack came back on its inbox
        for subject in (*FORBIDDEN_TO_PUBLISHERS, "cg.usage.http.x", "cg.usage.openai.organization"):
            assert await refused(nc, violations, subject), (subject, violations[-3:])
        with pytest.raises(NatsError):
            await js.stream_info(USAGE_STREAM.name)  # no JetStream API at all
        states = {spec.name: (await admin.jetstream().stream_info(spec.name)).state.messages for spec in ALL_STREAMS}
        assert states[USAGE_STREAM.name] == before + 1
        assert all(count == 0 for name, count in states.items() if name != USAGE_STREAM.name), states
        sub = await nc.subscribe("cg.probe.result.>")
        await nc.flush(timeout=2)
        await asyncio.sleep(0.05)
        assert any("subscription" in v.lower() and "cg.probe.result" in v for v in violations), violations
        await sub.unsubscribe()
    finally:
        await nc.close()
        await admin.close()


async def test_a_subscriber_follows_costs_alerts_and_dead_letters_only(server: RunningServer) -> None:
    nc, violations = await connect(server, "subscriber")
    admin = await nats.connect(server.url)
    try:
        got: list[str] = []

        async def keep(msg: Msg) -> None:
            got.append(msg.subject)

        for subject in ("cg.cost.recorded.>", "cg.alert.>", "cg.dlq.>"):
            await nc.subscribe(subject, cb=keep)
        await nc.flush(timeout=2)
        for subject in ("cg.cost.recorded.openai", "cg.alert.budget", "cg.dlq.usage"):
            await admin.publish(subject, b"{}")
        await admin.flush()
        for _ in range(50):
            if len(got) == 3:
                break
            await asyncio.sleep(0.02)
        assert sorted(got) == ["cg.alert.budget", "cg.cost.recorded.openai", "cg.dlq.usage"]
        assert not violations
        for subject in ("cg.usage.>", "cg.probe.result.>", "_INBOX.ledger.>", ">"):
            await nc.subscribe(subject)
        await nc.flush(timeout=2)
        await asyncio.sleep(0.05)
        assert len([v for v in violations if "subscription" in v.lower()]) == 4, violations
        assert await refused(nc, violations, "cg.usage.x")
    finally:
        await nc.close()
        await admin.close()


@pytest.mark.parametrize("user", [*nats_users.SERVICES[1:], "usage-publisher", "subscriber"])
async def test_only_the_migration_step_changes_streams(server: RunningServer, user: str) -> None:
    nc, _violations = await connect(server, user)
    try:
        js = nc.jetstream(timeout=1)
        with pytest.raises((NatsError, APIError)):
            await js.delete_stream(USAGE_STREAM.name)
        with pytest.raises((NatsError, APIError)):
            await js.purge_stream(USAGE_STREAM.name)
    finally:
        await nc.close()
    admin = await nats.connect(server.url)
    try:
        assert (await admin.jetstream().stream_info(USAGE_STREAM.name)).config.name == USAGE_STREAM.name
    finally:
        await admin.close()


async def test_no_service_reads_another_services_replies(server: RunningServer) -> None:
    ledger, violations = await connect(server, "ledger")
    try:
        await ledger.subscribe("_INBOX.prober.>")
        await ledger.subscribe("_INBOX.api.>")
        await ledger.flush(timeout=2)
        await asyncio.sleep(0.05)
        assert len([v for v in violations if "subscription" in v.lower()]) == 2, violations
    finally:
        await ledger.close()


def test_the_server_refuses_a_wrong_password(server: RunningServer) -> None:
    async def attempt() -> None:
        url = nats_users.user_url(server.url, "api", "wrong")
        await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)

    with pytest.raises(Exception, match=r"(?i)authorization"):
        asyncio.run(attempt())
