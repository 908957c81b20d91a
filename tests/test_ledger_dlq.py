"""`cg-ledger dlq list` and `cg-ledger dlq replay` on real servers: a dead letter that was only the ledger's fault is
recorded once replayed; one that is still bad comes back with its reason; `--delete` leaves nothing twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import nats

from cg_common.consumer import DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import DLQ, USAGE
from cg_devstack.nats_server import start_nats
from tests.support.processes import running_ledger, script
from tests.support.usage import count_rows, dead_letters, encode, publish_mixed, usage_event, wait_until


def cg_ledger(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*script("cg-ledger"), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def dead_letter_by_hand(nats_url: str, payload: bytes, reason: str) -> None:
    """A dead letter as an older ledger with a bug would have left it: a valid event, dead-lettered all the same."""
    nc = await nats.connect(nats_url)
    try:
        headers = {DLQ_REASON_HEADER: reason, DLQ_SUBJECT_HEADER: f"{USAGE}.fuzz", DLQ_SEQUENCE_HEADER: "999"}
        await publish_all(nc.jetstream(), [Outgoing(f"{DLQ}.usage", payload, "dlq:by-hand", headers)])
    finally:
        await nc.close()


def test_list_then_replay_records_what_was_fine_and_sends_back_what_is_not(
    ledger_env: dict[str, str], tmp_path: Path
) -> None:
    nats_url, database_url = ledger_env["NATS_URL"], ledger_env["DATABASE_URL"]
    fine = encode(usage_event(source="//svc/dlq", event_id="was-fine"))
    asyncio.run(dead_letter_by_hand(nats_url, fine, "handler failed 5 times: RuntimeError: a bug since fixed"))
    with running_ledger(ledger_env, tmp_path / "ledger.log"):
        asyncio.run(publish_mixed(nats_url, [b"{not json"], "dlq"))
        wait_until(lambda: len(asyncio.run(dead_letters(nats_url))) == 2, timeout=20, message="not dead-lettered")

        listed = cg_ledger(ledger_env, "dlq", "list").splitlines()
        assert len(listed) == 3  # a header line, then oldest first
        assert "a bug since fixed" in listed[1] and f"{USAGE}.fuzz#999" in listed[1]
        assert "not valid JSON" in listed[2]
        assert "was-fine" not in "\n".join(listed)  # sizes, not payloads: they may hold anything

        assert cg_ledger(ledger_env, "dlq", "replay", "--delete").startswith("replayed 2, deleted 2, skipped 0")
        wait_until(lambda: count_rows(database_url) == 1, timeout=20, message="replayed event not recorded")
        wait_until(lambda: len(asyncio.run(dead_letters(nats_url))) == 1, timeout=20, message="bad one not back")

    [back] = asyncio.run(dead_letters(nats_url))
    assert back["data"] == b"{not json"
    assert "not valid JSON" in back["headers"][DLQ_REASON_HEADER]
    assert count_rows(database_url, "event_id = %s", ("was-fine",)) == 1
    assert cg_ledger(ledger_env, "dlq", "list", "--subject", f"{DLQ}.billing").splitlines()[1:] == []


def test_without_a_dead_letter_stream_there_is_nothing_to_list(tmp_path: Path) -> None:
    """On a NATS where no service ran yet: an empty list and an empty replay, not a traceback."""
    server = start_nats(tmp_path)
    try:
        env = {"NATS_URL": server.url, "DATABASE_URL": "postgresql://-/-", "REDIS_URL": "redis://-"}
        assert cg_ledger(env, "dlq", "list").splitlines()[1:] == []
        assert cg_ledger(env, "dlq", "replay").startswith("replayed 0, deleted 0, skipped 0")
    finally:
        server.stop()
