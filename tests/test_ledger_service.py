"""The ledger as an operator sees it: health and metrics, an outage of Postgres, a restart of NATS, and a clean stop
on SIGTERM."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import psycopg

from cg_common.migrate import apply_migrations
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import COST_STREAM, USAGE, USAGE_STREAM
from cg_devstack.nats_server import start_nats
from cg_devstack.servers import start_postgres
from tests.support.processes import free_port, running_ledger, start_ledger
from tests.support.usage import count_rows, dead_letters, encode, publish_mixed, usage_event, wait_until


def events(batch: str, count: int) -> list[bytes]:
    return [encode(usage_event(source=f"//svc/{batch}", event_id=f"{batch}-{n}")) for n in range(count)]


async def ack_floor(nats_url: str) -> tuple[int, int]:
    """(messages acknowledged by the ledger's consumer, messages delivered but not acknowledged)."""
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info(USAGE_STREAM.name, "ledger")
        return info.ack_floor.stream_seq if info.ack_floor else 0, info.num_ack_pending or 0
    finally:
        await nc.close()


def test_health_and_metrics(ledger_env: dict[str, str], tmp_path: Path) -> None:
    with running_ledger(ledger_env, tmp_path / "ledger.log") as ledger:
        asyncio.run(publish_mixed(ledger_env["NATS_URL"], [*events("health", 5), b"not an event"], "health"))
        wait_until(lambda: count_rows(ledger_env["DATABASE_URL"]) == 5, timeout=30, message="not recorded")
        assert httpx.get(ledger.url + "/healthz").json() == {"status": "ok"}
        assert httpx.get(ledger.url + "/readyz").json() == {
            "status": "ok",
            "checks": {"nats": "ok", "postgres": "ok"},
        }
        wait_until(
            lambda: "cg_ledger_dead_lettered_total 1.0" in httpx.get(ledger.url + "/metrics").text,
            timeout=10,
            message="the dead letter is not counted",
        )
        metrics = httpx.get(ledger.url + "/metrics").text
    assert "cg_ledger_events_recorded_total 5.0" in metrics
    assert "cg_ledger_duplicates_total 0.0" in metrics
    assert "cg_ledger_lag " in metrics
    assert "cg_ledger_batch_seconds_bucket" in metrics


def test_postgres_outage_holds_messages_back_until_it_returns(ledger_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    postgres = start_postgres(tmp_path / "pg", port=port)
    apply_migrations(postgres.url)
    env = {**ledger_env, "DATABASE_URL": postgres.url}
    try:
        with running_ledger(env, tmp_path / "ledger.log") as ledger:
            asyncio.run(publish_mixed(env["NATS_URL"], events("before", 50), "before"))
            wait_until(lambda: count_rows(postgres.url) == 50, timeout=30, message="first events not recorded")
            # Acks follow the commit: wait until the server holds none outstanding, or a late one would move the
            # floor during the outage below (seen on a loaded machine).
            wait_until(
                lambda: asyncio.run(ack_floor(env["NATS_URL"]))[1] == 0, timeout=30, message="first events not acked"
            )
            acked_before, _ = asyncio.run(ack_floor(env["NATS_URL"]))

            postgres.stop()
            asyncio.run(publish_mixed(env["NATS_URL"], events("during", 50), "during"))
            time.sleep(3)
            # Nothing of what arrived during the outage was acknowledged, nor dead-lettered: it is all still owed.
            assert asyncio.run(ack_floor(env["NATS_URL"]))[0] == acked_before
            assert asyncio.run(dead_letters(env["NATS_URL"])) == []
            assert ledger.process.poll() is None
            assert httpx.get(ledger.url + "/readyz").status_code == 503

            postgres = start_postgres(tmp_path / "pg", port=port)
            wait_until(lambda: count_rows(postgres.url) == 100, timeout=60, message="the ledger did not resume")
            assert httpx.get(ledger.url + "/readyz").status_code == 200
        assert count_rows(postgres.url, "event_id LIKE %s", ("during-%",)) == 50
    finally:
        postgres.stop()


def test_a_nats_restart_mid_ingest_loses_and_doubles_nothing(ledger_env: dict[str, str], tmp_path: Path) -> None:
    """nats-server stops while the ledger is working through a backlog and comes back on its own storage: the ledger
    reconnects by itself (its fetch inbox and PubAck inboxes are re-subscribed), and in the end every event is
    recorded once, with one `cg.cost.recorded` each and nothing dead-lettered."""
    count = 60_000
    port = free_port()
    server = start_nats(tmp_path / "nats", port=port)
    env = {**ledger_env, "NATS_URL": server.url}
    try:
        with running_ledger(env, tmp_path / "ledger.log") as ledger:
            asyncio.run(publish_in_chunks(server.url, events("restart", count)))
            wait_until(lambda: count_rows(env["DATABASE_URL"]) > 0, timeout=30, message="ingest did not start")
            server.stop()
            recorded_while_down = count_rows(env["DATABASE_URL"])
            assert recorded_while_down < count, "the backlog was done before NATS stopped: nothing was tested"
            time.sleep(2)
            server = start_nats(tmp_path / "nats", port=port)
            wait_until(
                lambda: count_rows(env["DATABASE_URL"]) == count, timeout=120, message="the ledger did not resume"
            )
            assert ledger.process.poll() is None
        assert asyncio.run(stream_messages(server.url, COST_STREAM.name)) == count
        assert asyncio.run(dead_letters(server.url)) == []
    finally:
        server.stop()


async def publish_in_chunks(nats_url: str, payloads: list[bytes]) -> None:
    nc = await nats.connect(nats_url)
    try:
        for start in range(0, len(payloads), 5_000):
            chunk = payloads[start : start + 5_000]
            await publish_all(
                nc, [Outgoing(f"{USAGE}.restart", p, f"restart-{start + n}") for n, p in enumerate(chunk)]
            )
    finally:
        await nc.close()


async def stream_messages(nats_url: str, stream: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages or 0
    finally:
        await nc.close()


def test_sigterm_finishes_the_batch_in_hand_and_exits_cleanly(ledger_env: dict[str, str], tmp_path: Path) -> None:
    total = 5000
    asyncio.run(publish_mixed(ledger_env["NATS_URL"], events("drain", total), "drain"))
    # A long ack wait: a message the stopping ledger held without handing it back would stall the restart for a minute.
    env = {**ledger_env, "LEDGER_BATCH_SIZE": "50", "LEDGER_ACK_WAIT_SECS": "60"}
    ledger = start_ledger(env, tmp_path / "ledger.log")
    wait_until(lambda: count_rows(env["DATABASE_URL"]) > 0, timeout=30, message="nothing recorded")
    started = time.monotonic()
    assert ledger.stop(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert "ledger stopped" in ledger.log_text()
    recorded_at_stop = count_rows(env["DATABASE_URL"])
    assert recorded_at_stop < total

    with running_ledger(env, tmp_path / "ledger.log"):
        wait_until(lambda: count_rows(env["DATABASE_URL"]) == total, timeout=30, message="events held back by the stop")


def test_an_unstamped_event_is_dated_when_jetstream_stored_it(ledger_env: dict[str, str], tmp_path: Path) -> None:
    """Not when the ledger got round to it: after an outage the backlog keeps the hours it happened in."""
    stored_from = datetime.now(UTC)
    asyncio.run(publish_mixed(ledger_env["NATS_URL"], events("unstamped", 1), "unstamped"))
    stored_until = datetime.now(UTC)
    time.sleep(1.5)  # the ledger is away meanwhile
    with running_ledger(ledger_env, tmp_path / "ledger.log"):
        wait_until(lambda: count_rows(ledger_env["DATABASE_URL"]) == 1, timeout=20, message="event not recorded")
    with psycopg.connect(ledger_env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT occurred_at, recorded_at FROM usage_events").fetchone()
    assert row is not None
    occurred_at, recorded_at = row
    assert stored_from - timedelta(milliseconds=50) <= occurred_at <= stored_until + timedelta(milliseconds=50)
    assert recorded_at - occurred_at >= timedelta(seconds=1.4)
