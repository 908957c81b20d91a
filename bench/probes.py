"""Probing throughput: 10,000 stored keys probed through the whole pipeline against the fake OpenAI answering in
100 ms — JetStream request → `cg-prober run` (PostgreSQL read, MultiFernet decrypt, HTTP call) → result on JetStream.

One run per replica count, each on a fresh consumer and empty request/result streams. Rate = keys / seconds from the
moment every prober answers /healthz until JetStream holds every result (publishing the requests included).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats

from bench.support import CpuMeter, drop_database, fresh_database, say, store_keys
from cg_common.probes import ProbeRequest, probe_request_subject
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import PROBE_REQUEST_STREAM, PROBE_RESULT_STREAM
from cg_common.topology import provision
from cg_devstack.servers import Stack
from tests.fake_openai import fake_key
from tests.support.jetstream import topology_for
from tests.support.processes import ServiceProcess, free_port, start_prober

NAME = "probes"
KEYS = 10_000
LATENCY_MS = 100
CONCURRENCY = 128  # PROBER_CONCURRENCY of each replica
REPLICAS = (1, 2)
TARGET_PER_REPLICA = 500
PUBLISH_CHUNK = 2_000
TIMEOUT_SECS = 600.0
REPO = Path(__file__).resolve().parent.parent


def run(stack: Stack, work_dir: Path, master_key: str) -> dict[str, Any]:
    database_url = fresh_database(stack.database_url)
    try:
        say(NAME, f"storing {KEYS:,} encrypted keys")
        stored = store_keys(database_url, master_key, [fake_key() for _ in range(KEYS)])
        with _fake_openai(work_dir) as (base_url, fake_pid):
            env = {
                "NATS_URL": stack.nats_url,
                "DATABASE_URL": database_url,
                "REDIS_URL": stack.redis_url,
                "MASTER_KEY": master_key,
                "OPENAI_BASE_URL": base_url,
                "PROBER_CONCURRENCY": str(CONCURRENCY),
                "LOG_LEVEL": "warning",
            }
            pids = {
                "fake": [fake_pid],
                "nats": [stack.servers["nats"].pid] if "nats" in stack.servers else None,
                "postgres": [stack.servers["postgres"].pid] if "postgres" in stack.servers else None,
            }
            runs = {}
            for replicas in REPLICAS:
                runs[replicas] = figures = _run(env, work_dir, [k.id for k in stored], replicas, pids)
                say(NAME, f"prober ×{replicas}: {figures['rate']:,.0f} probes/s ({figures['seconds']:.1f} s)")
    finally:
        drop_database(stack.database_url, database_url)
    return {"keys": KEYS, "latency_ms": LATENCY_MS, "concurrency": CONCURRENCY, "runs": runs}


@contextlib.contextmanager
def _fake_openai(work_dir: Path) -> Iterator[tuple[str, int]]:
    """The fake as its own process (`python -m tests.fake_openai`), so its CPU is not this process's."""
    port = free_port()
    log = (work_dir / "fake-openai.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai", "--port", str(port), "--latency-ms", str(LATENCY_MS)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {fake_key()}"}).is_success:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.1)
        yield base_url, process.pid
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _run(
    env: dict[str, str], work_dir: Path, key_ids: Sequence[int], replicas: int, pids: dict[str, list[int] | None]
) -> dict[str, Any]:
    asyncio.run(_reset(env["NATS_URL"]))
    with ThreadPoolExecutor(max_workers=replicas) as pool:
        futures = [pool.submit(start_prober, env, work_dir / f"prober-x{replicas}-{n}.log") for n in range(replicas)]
    probers = [f.result() for f in futures]
    try:
        meter = CpuMeter({"prober": [p.process.pid for p in probers], **pids})
        meter.start()
        started = time.perf_counter()
        asyncio.run(_publish_and_wait(env["NATS_URL"], key_ids))
        seconds = time.perf_counter() - started
        cpu = meter.stop()
        outcomes = _outcomes(probers)
    finally:
        for prober in probers:
            prober.stop()
    if outcomes.get("ok", 0) != len(key_ids):
        raise RuntimeError(f"not every probe succeeded: {outcomes}")
    return {
        "rate": len(key_ids) / seconds,
        "seconds": seconds,
        "cpu_ms_per_probe": {name: None if v is None else v / len(key_ids) * 1000 for name, v in cpu.items()},
        "cores": {name: None if v is None else v / seconds for name, v in cpu.items()},
    }


async def _reset(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await provision(js, topology_for({}))
        for spec in (PROBE_REQUEST_STREAM, PROBE_RESULT_STREAM):
            for consumer in await js.consumers_info(spec.name):
                await js.delete_consumer(spec.name, consumer.name)
            await js.purge_stream(spec.name)
    finally:
        await nc.close()


async def _publish_and_wait(nats_url: str, key_ids: Sequence[int]) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        now = datetime.now(UTC)
        run_id = int(time.time() * 1000)
        requests = [
            ProbeRequest(request_id=f"bench:{run_id}:{k}", key_id=k, reason="scheduled", requested_at=now, slot=0)
            for k in key_ids
        ]
        for start in range(0, len(requests), PUBLISH_CHUNK):
            chunk = requests[start : start + PUBLISH_CHUNK]
            await publish_all(
                nc,
                [Outgoing(probe_request_subject(r.key_id), r.model_dump_json().encode(), r.request_id) for r in chunk],
            )
        deadline = time.monotonic() + TIMEOUT_SECS
        while (await js.stream_info(PROBE_RESULT_STREAM.name)).state.messages < len(key_ids):
            if time.monotonic() > deadline:
                raise TimeoutError("the probers did not answer every request in time")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


def _outcomes(probers: Sequence[ServiceProcess]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for prober in probers:
        text = httpx.get(prober.url + "/metrics").text
        for outcome, value in re.findall(r'^cg_prober_probes_total\{outcome="([a-z_]+)"\} (\S+)$', text, re.MULTILINE):
            totals[outcome] = totals.get(outcome, 0) + int(float(value))
    return totals


def markdown(result: dict[str, Any]) -> str:
    one, two = result["runs"][1], result["runs"][2]
    scaling = two["rate"] / one["rate"]
    lines = [
        f"{result['keys']:,} stored keys (encrypted, scheduled requests, `PROBE_MODE=models`), the fake OpenAI "
        f"(`python -m tests.fake_openai`, one uvicorn process) answering every `GET /models` after "
        f"{result['latency_ms']} ms; each `cg-prober run` with `PROBER_CONCURRENCY={result['concurrency']}`. Rate = "
        "keys / seconds from every prober ready until JetStream holds every result (publishing the requests "
        "included); every probe checked `ok`. CPU is user + system milliseconds per probe of each process tree.",
        "",
        "| replicas | probes/s | wall | CPU ms/probe: prober | fake OpenAI | nats-server | postgres |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(_row(n, figures) for n, figures in result["runs"].items()),
        "",
        f"One replica: **{one['rate']:,.0f} probes/s** (target ≥ {TARGET_PER_REPLICA}); two: "
        f"**{two['rate']:,.0f} probes/s**, ×{scaling:.2f} of one. Cores busy with one replica: prober "
        f"{_cores(one, 'prober')}, fake {_cores(one, 'fake')}, nats-server {_cores(one, 'nats')}, postgres "
        f"{_cores(one, 'postgres')}; with two: {_cores(two, 'prober')}, {_cores(two, 'fake')}, {_cores(two, 'nats')}, "
        f"{_cores(two, 'postgres')}.",
        "",
        f"Ceilings: {result['concurrency']} probes in flight over {result['latency_ms']} ms allow "
        f"{result['concurrency'] * 1000 // result['latency_ms']:,} probes/s per replica; at "
        f"{one['cpu_ms_per_probe']['prober']:.2f} ms of prober CPU a probe, one core allows "
        f"{1000 / one['cpu_ms_per_probe']['prober']:,.0f}/s. The fake, nats-server and PostgreSQL share the same "
        "2 cores, so two replicas compete with them (and with whatever else runs on the machine).",
    ]
    return "\n".join(lines)


def _row(replicas: int, figures: dict[str, Any]) -> str:
    cpu = figures["cpu_ms_per_probe"]
    cells = " | ".join("n/a" if cpu.get(n) is None else f"{cpu[n]:.2f}" for n in ("prober", "fake", "nats", "postgres"))
    return f"| {replicas} | {figures['rate']:,.0f} | {figures['seconds']:.1f} s | {cells} |"


def _cores(figures: dict[str, Any], name: str) -> str:
    value = figures["cores"].get(name)
    return "n/a" if value is None else f"{value:.2f}"
