"""Two `cg-scheduler run` processes together, on the real clock: each active key requested once per slot, through a
SIGKILL and a restart mid-slot; health, heartbeat, metrics and a clean stop. What is due when, spreading, late
ticks and deactivations are tested on a clock the test moves (test_scheduler_ticks.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis

from cg_common.heartbeats import heartbeat_key
from cg_common.probes import scheduled_request_id, slot_of
from tests.support.probes import insert_key, pending_requests
from tests.support.processes import ServiceProcess, start_scheduler

INTERVAL = 5  # the setting's minimum
LATENESS_SECS = 2.5  # a tick (0.25 s at this interval) plus a loaded machine's scheduling delays


def sleep_until(moment: float) -> None:
    """Wait for the wall clock (slots are wall-clock intervals); not an assertion."""
    time.sleep(max(0.0, moment - time.time()))


def slot_end(slot: int) -> float:
    return (slot + 1) * INTERVAL


def slot_at(moment: float) -> int:
    return slot_of(datetime.fromtimestamp(moment, UTC), INTERVAL)


def test_two_schedulers_publish_each_active_key_once_per_slot(ledger_env: dict[str, str], tmp_path: Path) -> None:
    env = {**ledger_env, "PROBE_INTERVAL_SECS": str(INTERVAL)}
    database_url = env["DATABASE_URL"]
    keys = [insert_key(database_url) for _ in range(4)]
    inactive = insert_key(database_url, active=False)
    schedulers: list[ServiceProcess] = []
    try:
        schedulers = [start_scheduler(env, tmp_path / f"{name}.log") for name in ("a", "b")]
        first = slot_at(time.time()) + 1  # the first slot both saw whole
        sleep_until(slot_end(first) + 1.0)

        schedulers[0].kill()  # mid-slot, without any clean-up; its replacement publishes what is due again
        schedulers[0] = start_scheduler(env, tmp_path / "a2.log")

        last = slot_at(time.time()) + 1  # the slot after the restart, whole
        sleep_until(slot_end(last) + LATENESS_SECS)

        metrics = httpx.get(schedulers[1].url + "/metrics").text
        assert httpx.get(schedulers[1].url + "/readyz").json()["checks"] == {"nats": "ok", "postgres": "ok"}
        beat = redis.Redis.from_url(env["REDIS_URL"]).get(heartbeat_key("scheduler"))
        assert schedulers[1].stop() == 0
        assert "scheduler stopped" in schedulers[1].log_text()
    finally:
        for scheduler in schedulers:
            scheduler.stop()

    requests = asyncio.run(pending_requests(env["NATS_URL"]))
    counts = Counter((r.key_id, r.slot) for r in requests)
    assert max(counts.values()) == 1, [pair for pair, n in counts.items() if n > 1]
    assert all(r.request_id == scheduled_request_id(r.key_id, r.slot or 0) for r in requests)
    assert inactive not in {r.key_id for r in requests}
    for slot in range(first, last + 1):
        assert {key_id for key_id, s in counts if s == slot} == set(keys), slot

    assert "cg_scheduler_requests_published_total" in metrics
    assert "cg_scheduler_duplicates_total" in metrics
    assert "cg_scheduler_active_keys 4.0" in metrics
    assert beat is not None
