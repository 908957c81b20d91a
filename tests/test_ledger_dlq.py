"""`cg-ledger dlq list` and `cg-ledger dlq replay` on real servers: a dead letter that was only the ledger's fault is
recorded once replayed; one that is still bad comes back with its reason; `--delete` leaves nothing twice."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path

import nats

from cg_common.consumer import DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import DLQ, DLQ_STREAM, USAGE
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
        await publish_all(nc, [Outgoing(f"{DLQ}.usage", payload, "dlq:by-hand", headers)])
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


async def dead_letter_many(nats_url: str, count: int, *, kind: str = "usage") -> None:
    """`count` dead letters of bad JSON, as the ledger leaves them, without running one."""
    nc = await nats.connect(nats_url)
    token = secrets.token_hex(4)
    try:
        letters = [
            Outgoing(
                f"{DLQ}.{kind}",
                b"{broken %d" % n,
                f"dlq:many:{kind}:{token}:{n}",  # JetStream's duplicate window outlives a purge between tests
                {DLQ_REASON_HEADER: "not valid JSON", DLQ_SUBJECT_HEADER: f"{USAGE}.many", DLQ_SEQUENCE_HEADER: str(n)},
            )
            for n in range(count)
        ]
        await publish_all(nc, letters)
    finally:
        await nc.close()


async def dlq_consumers(nats_url: str) -> list[str]:
    nc = await nats.connect(nats_url)
    try:
        return [consumer.name for consumer in await nc.jetstream().consumers_info(DLQ_STREAM.name)]
    finally:
        await nc.close()


def test_thousands_of_dead_letters_are_listed_limited_filtered_and_replayed_in_bulk(ledger_env: dict[str, str]) -> None:
    nats_url = ledger_env["NATS_URL"]
    asyncio.run(dead_letter_many(nats_url, 5_000))
    asyncio.run(dead_letter_many(nats_url, 3, kind="billing"))

    listed = cg_ledger(ledger_env, "dlq", "list").splitlines()[1:]
    assert len(listed) == 5_003
    assert [int(line.split("\t")[0]) for line in listed] == sorted(int(line.split("\t")[0]) for line in listed)

    oldest = cg_ledger(ledger_env, "dlq", "list", "--limit", "10").splitlines()[1:]
    assert oldest == listed[:10]
    billing = cg_ledger(ledger_env, "dlq", "list", "--subject", f"{DLQ}.billing").splitlines()[1:]
    assert [line.split("\t")[2] for line in billing] == [f"{DLQ}.billing"] * 3
    chosen = [listed[0].split("\t")[0], billing[0].split("\t")[0]]
    assert [line.split("\t")[0] for line in cg_ledger(ledger_env, "dlq", "list", *chosen).splitlines()[1:]] == chosen

    report = cg_ledger(ledger_env, "dlq", "replay", "--subject", f"{DLQ}.usage", "--delete")
    assert report.startswith("replayed 5000, deleted 5000, skipped 0")
    assert len(cg_ledger(ledger_env, "dlq", "list").splitlines()[1:]) == 3  # only the billing ones are left
    assert asyncio.run(dlq_consumers(nats_url)) == []  # the readers cleaned up after themselves


def test_a_bad_limit_is_refused_in_one_line(ledger_env: dict[str, str]) -> None:
    done = subprocess.run(
        [*script("cg-ledger"), "dlq", "list", "--limit", "0"],
        env={**os.environ, **ledger_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--limit: must be 1 or more, not 0" in done.stderr


async def dead_letter_without_origin(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await publish_all(nc, [Outgoing(f"{DLQ}.usage", b"?", "dlq:no-origin", {DLQ_REASON_HEADER: "?"})])
    finally:
        await nc.close()


def test_a_dead_letter_that_cannot_be_replayed_stays_while_those_around_it_go(ledger_env: dict[str, str]) -> None:
    """Replaying everything purges the stream's prefix chunk by chunk; a dead letter without an original subject
    ends the prefix: it and nothing else is left."""
    nats_url = ledger_env["NATS_URL"]
    asyncio.run(dead_letter_many(nats_url, 700))
    asyncio.run(dead_letter_without_origin(nats_url))
    asyncio.run(dead_letter_many(nats_url, 700, kind="usage-later"))
    report = cg_ledger(ledger_env, "dlq", "replay", "--delete")
    assert report.startswith("replayed 1400, deleted 1400, skipped 1")
    [left] = cg_ledger(ledger_env, "dlq", "list").splitlines()[1:]
    assert left.split("\t")[3] == "#"  # no original subject, no original sequence
