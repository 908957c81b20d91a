"""`cg-ledger dlq list` and `dlq replay --delete` over 20,000 dead letters, beside the plain JetStream API's way.

The baselines do the same work one request per dead letter: `get_msg` for each sequence (reading), `delete_msg` for
each replayed one (deleting). A private nats-server is started, since the benchmark empties streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS

from bench.support import say
from cg_common.consumer import DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import DLQ, DLQ_STREAM, USAGE, USAGE_STREAM
from cg_common.topology import provision
from cg_devstack.nats_server import start_nats
from cg_ledger import dead_letters
from tests.support.jetstream import topology_for

NAME = "dlq"
LETTERS = 20_000
CHUNK = 2_000


def run(work_dir: Path) -> dict[str, Any]:
    server = start_nats(work_dir / "dlq-servers")
    try:
        return asyncio.run(_measure(server.url))
    finally:
        server.stop()


async def _measure(nats_url: str) -> dict[str, Any]:
    nc = await nats.connect(nats_url)
    try:
        await provision(nc.jetstream(), topology_for({}))
        result = {
            "list": await _timed(nc, "dlq list", _list),
            "list_baseline": await _timed(nc, "get_msg per sequence", _get_each),
            "replay_delete": await _timed(nc, "dlq replay --delete", _replay_delete),
            "replay_delete_baseline": await _timed(nc, "replay, then delete_msg per message", _replay_delete_each),
        }
    finally:
        await nc.close()
    return result


async def _timed(nc: NATS, label: str, work: Callable[[NATS], Awaitable[int]]) -> dict[str, Any]:
    """Fill the dead-letter stream afresh, then time `work` over it; `work` returns how many it handled."""
    js = nc.jetstream()
    await js.purge_stream(DLQ_STREAM.name)
    await js.purge_stream(USAGE_STREAM.name)
    await _fill(nc)
    started = time.perf_counter()
    handled = await work(nc)
    seconds = time.perf_counter() - started
    if handled != LETTERS:
        raise RuntimeError(f"{label} handled {handled} of {LETTERS} dead letters")
    say(NAME, f"{label}: {handled / seconds:,.0f}/s")
    return {"seconds": seconds, "rate": handled / seconds}


async def _fill(nc: NATS) -> None:
    stamp = time.time_ns()
    for start in range(0, LETTERS, CHUNK):
        await publish_all(
            nc,
            [
                Outgoing(
                    f"{DLQ}.usage",
                    b'{"specversion": "1.0", "id": "%d"' % n,
                    f"bench-dlq:{stamp}:{n}",
                    {
                        DLQ_REASON_HEADER: "not a structured CloudEvent in JSON: the body is not valid JSON",
                        DLQ_SUBJECT_HEADER: f"{USAGE}.bench",
                        DLQ_SEQUENCE_HEADER: str(n),
                    },
                )
                for n in range(start, start + CHUNK)
            ],
        )


async def _list(nc: NATS) -> int:
    return len([letter async for letter in dead_letters.dead_letters(nc)])


async def _get_each(nc: NATS) -> int:
    js = nc.jetstream()
    state = (await js.stream_info(DLQ_STREAM.name)).state
    for sequence in range(state.first_seq, state.last_seq + 1):
        await js.get_msg(DLQ_STREAM.name, sequence)
    return state.last_seq - state.first_seq + 1


async def _replay_delete(nc: NATS) -> int:
    report = await dead_letters.replay(nc, delete=True)
    return report.deleted


async def _replay_delete_each(nc: NATS) -> int:
    js = nc.jetstream()
    state = (await js.stream_info(DLQ_STREAM.name)).state
    await dead_letters.replay(nc)
    for sequence in range(state.first_seq, state.last_seq + 1):
        await js.delete_msg(DLQ_STREAM.name, sequence)
    return state.last_seq - state.first_seq + 1


def markdown(result: dict[str, Any]) -> str:
    rows = [
        ("`cg-ledger dlq list` (a short-lived consumer)", result["list"]),
        ("baseline: `get_msg` for each sequence", result["list_baseline"]),
        ("`cg-ledger dlq replay --delete` (purges the replayed prefix)", result["replay_delete"]),
        ("baseline: the same replay, then `delete_msg` for each", result["replay_delete_baseline"]),
    ]
    lines = [
        f"{LETTERS:,} dead letters on `{DLQ}.usage` (private nats-server, file storage), the stream refilled before "
        "each row; replays go to `CG_USAGE` with JetStream's acks.",
        "",
        "| what | dead letters/s | wall |",
        "| --- | ---: | ---: |",
        *(f"| {label} | {figures['rate']:,.0f} | {figures['seconds']:.2f} s |" for label, figures in rows),
    ]
    return "\n".join(lines)
