"""The JetStream topology is provisioned once, by the migration step, and every service only checks it: a service
started against a stream, consumer or bucket configured otherwise refuses to start with one line naming the
difference. Each test has a nats-server of its own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from cg_common.subjects import ALL_STREAMS, PROBE_REQUEST_STREAM
from cg_common.topology import provision
from cg_devstack.nats_server import start_nats
from cg_devstack.process import RunningServer
from tests.support.jetstream import topology_for
from tests.support.processes import script, start_background


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_nats(tmp_path / "nats")
    yield server
    server.stop()


async def provisioned(nats_url: str, env: dict[str, str]) -> list[str]:
    nc = await nats.connect(nats_url)
    try:
        return await provision(nc.jetstream(), topology_for(env))
    finally:
        await nc.close()


async def test_provisioning_creates_everything_once_and_converges_on_changed_settings(
    nats_server: RunningServer,
) -> None:
    created = await provisioned(nats_server.url, {})
    topology = topology_for({})
    assert {f"created stream {spec.name}" for spec in ALL_STREAMS} <= set(created)
    assert f"created stream {topology.prober_state.stream}" in created
    assert {f"created consumer {c.durable} on {c.stream}" for c in topology.consumers} <= set(created)
    assert await provisioned(nats_server.url, {}) == []  # a second run changes nothing

    changed = await provisioned(nats_server.url, {"PROBE_INTERVAL_SECS": "900", "LEDGER_ACK_WAIT_SECS": "45"})
    assert changed == [
        f"updated stream {PROBE_REQUEST_STREAM.name}: duplicate_window is 600 s, expected 1800 s",
        "updated consumer ledger on CG_USAGE: ack_wait is 30 s, expected 45 s",
        "updated consumer ledger-probe-results on CG_PROBE_RESULTS: ack_wait is 30 s, expected 45 s",
        "updated consumer ledger-billing on CG_BILLING: ack_wait is 30 s, expected 45 s",
    ]
    assert await provisioned(nats_server.url, {"PROBE_INTERVAL_SECS": "900", "LEDGER_ACK_WAIT_SECS": "45"}) == []
    nc = await nats.connect(nats_server.url)
    try:
        info = await nc.jetstream().stream_info(PROBE_REQUEST_STREAM.name)
    finally:
        await nc.close()
    assert info.config.duplicate_window == 1800


async def test_a_service_refuses_to_start_against_a_stream_configured_otherwise(
    nats_server: RunningServer, database_url: str, api_env: dict[str, str], tmp_path: Path
) -> None:
    await provisioned(nats_server.url, {})  # the migration step ran with PROBE_INTERVAL_SECS=300
    env = {**api_env, "NATS_URL": nats_server.url, "PROBE_INTERVAL_SECS": "900"}
    log = tmp_path / "scheduler.log"
    with pytest.raises(RuntimeError, match="exited with 2") as refused:
        start_background("scheduler", env, log, provision=False)
    [line] = [line for line in log.read_text().splitlines() if line.startswith("cannot start")]
    assert line == (
        "cannot start: JetStream is not as this service expects: stream CG_PROBE_REQUESTS duplicate_window is "
        "600 s, expected 1800 s; run the migration step (cg-migrate, make migrate) with this deployment's settings"
    )
    assert "Traceback" not in str(refused.value)


async def test_a_service_refuses_to_start_without_its_consumer(
    nats_server: RunningServer, api_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**api_env, "NATS_URL": nats_server.url}
    log = tmp_path / "ledger.log"
    with pytest.raises(RuntimeError, match="exited with 2"):
        start_background("ledger", env, log, provision=False)
    [line] = [line for line in log.read_text().splitlines() if line.startswith("cannot start")]
    assert "stream CG_USAGE does not exist" in line
    assert "consumer ledger on CG_USAGE does not exist" in line


def test_cg_migrate_applies_the_sql_and_provisions_jetstream(
    nats_server: RunningServer, api_env: dict[str, str], tmp_path: Path
) -> None:
    env = {"NATS_URL": nats_server.url, "DATABASE_URL": api_env["DATABASE_URL"], "LOG_LEVEL": "info"}
    for _ in range(2):  # a second run finds everything done
        done = subprocess.run(
            script("cg-migrate"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr + done.stdout
    assert '"jetstream provisioned"' in done.stdout
    assert '"changes": []' in done.stdout
