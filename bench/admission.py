"""Admission: admits per second and their latency, with one and two `cg-api serve` replicas, on one contended hard
budget and on 1,000 hard budgets, beside `GET /ping` through the same stack in the same run.

Latency is measured open-loop: requests are sent on a fixed schedule (`RATE` a second, spread over the replicas)
whatever the answers do, and each latency runs from the moment the schedule said to send, so a slow answer delays
none of the measurements after it. Throughput is closed-loop: wrk keeps `CONNECTIONS` requests in flight against
each replica for `SECONDS`. The contended case is one budget covering every request (every admit takes the same
lock); in the other, 1,000 budgets each cover one source and requests pick a source at random. Budgets are large
enough never to refuse, so every request does the whole work of an admit.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import wrk
from bench.support import drop_database, fresh_database, percentiles, say
from cg_devstack.servers import Stack
from tests.support.processes import ServiceProcess, running_api

NAME = "admission"
RATE = 1000  # admits a second, open loop: the target's rate
LOW_RATE = 250  # and a quarter of it, to show where the latency comes from
SECONDS = 8
WARM_UP_SECS = 1
CONNECTIONS = 32
BUDGETS = 1000
TARGET_P99_MS = 10.0
MODEL = "gpt-4o-mini-2024-07-18"
WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local body = [[BODY]]
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format(body, n % SOURCES))
end
"""


def run(stack: Stack, work_dir: Path, env_for: Callable[[str], dict[str, str]]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for scenario, sources in (("contended", 1), ("budgets", BUDGETS)):
        for replicas in (1, 2):
            database_url = fresh_database(stack.database_url)
            env = {**env_for(database_url), "LOG_LEVEL": "warning", "RATE_LIMIT_ENABLED": "false"}
            try:
                with ExitStack() as running:
                    apis = [
                        running.enter_context(running_api(env, work_dir / f"api-{scenario}-{replicas}-{n}.log"))
                        for n in range(replicas)
                    ]
                    _make_budgets(apis[0].url, env["API_KEY"], sources)
                    label = f"{scenario}, {replicas} replica{'s' if replicas > 1 else ''}"
                    results[label] = _measure(apis, env["API_KEY"], sources, label)
            finally:
                drop_database(stack.database_url, database_url)
    return results


def _make_budgets(url: str, api_key: str, sources: int) -> None:
    with httpx.Client(base_url=url, headers={"X-API-Key": api_key}, timeout=30) as client:
        for n in range(sources):
            body = {"name": f"b{n}", "amount": "1000000000", "period": "month", "hard": True}
            body["scope"] = {"source": f"//svc-{n}"}
            client.post("/budgets", json=body).raise_for_status()


def _measure(apis: list[ServiceProcess], api_key: str, sources: int, label: str) -> dict[str, Any]:
    headers = {"X-API-Key": api_key}
    low = asyncio.run(_open_loop(apis, headers, sources, admit=True, rate=LOW_RATE))
    admit = asyncio.run(_open_loop(apis, headers, sources, admit=True, rate=RATE))
    ping = asyncio.run(_open_loop(apis, headers, sources, admit=False, rate=RATE))
    throughput = _closed_loop(apis, headers, sources)
    say(
        NAME,
        f"{label}: admit p50 {admit['p50']:.1f} ms p99 {admit['p99']:.1f} ms at {admit['rate']:.0f}/s; "
        f"ping p99 {ping['p99']:.1f} ms; most {throughput:.0f} admits/s",
    )
    return {"low": low, "admit": admit, "ping": ping, "throughput": throughput}


def _body(sources: int) -> bytes:
    return orjson.dumps(
        {"source": f"//svc-{random.randrange(sources)}", "model": MODEL, "estimated_cost": "0.001", "ttl_secs": 600}
    )


async def _open_loop(
    apis: list[ServiceProcess], headers: dict[str, str], sources: int, *, admit: bool, rate: int
) -> dict[str, float]:
    """Requests due every 1/rate s, handed to the first free of CONNECTIONS kept-alive connections per replica; a
    request that finds none free waits, and its wait counts. A bare HTTP/1.1 client on asyncio streams: a Python
    HTTP library spends more time per request than the api does, and would measure itself."""
    due_requests: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    failures = 0
    total = rate * (WARM_UP_SECS + SECONDS)
    measured_from = time.perf_counter() + 0.5 + WARM_UP_SECS

    async def connection(api: ServiceProcess) -> None:
        nonlocal failures
        host, port = api.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        try:
            while (due := await due_requests.get()) is not None:
                if admit:
                    body = _body(sources)
                    head = f"POST /budgets/admit HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                    writer.write(f"{head}{extra}content-length: {len(body)}\r\n\r\n".encode() + body)
                else:
                    writer.write(f"GET /ping HTTP/1.1\r\nhost: {host}\r\n{extra}\r\n".encode())
                status_line, answer = await _response(reader)
                good = status_line.startswith(b"HTTP/1.1 200") and (not admit or b'"admitted":true' in answer)
                if not good:
                    failures += 1
                elif due >= measured_from:
                    latencies.append((time.perf_counter() - due) * 1000)
        finally:
            writer.close()

    workers = [asyncio.create_task(connection(api)) for api in apis for _ in range(CONNECTIONS)]
    start = time.perf_counter() + 0.5
    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due_requests.put_nowait(due)
    sent_in = time.perf_counter() - start
    for _ in workers:
        due_requests.put_nowait(None)
    await asyncio.gather(*workers)
    return {**percentiles(latencies), "rate": total / sent_in, "failures": failures}


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in rest.split(b"\r\n") if line.lower().startswith(b"content-length")),
        0,
    )
    return status_line, await reader.readexactly(length)


def _closed_loop(apis: list[ServiceProcess], headers: dict[str, str], sources: int) -> float:
    body = orjson.dumps({"source": "//svc-%d", "model": MODEL, "estimated_cost": "0.001", "ttl_secs": 600}).decode()
    script = WRK_SCRIPT.replace("BODY", body).replace("SOURCES", str(sources))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    runs = [
        subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{CONNECTIONS}",
                f"-d{SECONDS}s",
                "-s",
                file.name,
                *(part for name, value in headers.items() for part in ("-H", f"{name}: {value}")),
                api.url + "/budgets/admit",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for api in apis
    ]
    total = 0.0
    for process in runs:
        report, _ = process.communicate()
        total += float(wrk._find(r"Requests/sec:\s+([\d.]+)", report))
    Path(file.name).unlink()
    return total


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for label, figures in result.items():
        low, admit, ping = figures["low"], figures["admit"], figures["ping"]
        rows.append(
            f"| {label} | {low['p50']:.1f} / {low['p99']:.1f} ms | {admit['rate']:.0f}/s | {admit['p50']:.1f} ms | "
            f"{admit['p99']:.1f} ms | {admit['failures']} | {ping['p50']:.1f} / {ping['p99']:.1f} ms | "
            f"{figures['throughput']:,.0f}/s |"
        )
    contended = result.get("contended, 1 replica", {}).get("admit", {})
    verdict = "met" if contended and contended["p99"] < TARGET_P99_MS else "missed"
    table = "\n".join(rows)
    return f"""`bench/admission.py`: `cg-api serve` replicas (rate limiting off), PostgreSQL and NATS as in the other
sections. Open loop at {RATE} requests a second for {SECONDS} s after {WARM_UP_SECS} s of warm-up, latency from each
request's scheduled moment (no coordinated omission), from a bare asyncio HTTP/1.1 client ({CONNECTIONS} kept-alive
connections per replica) on the same machine; `GET /ping`
the same way through the same replicas, as the floor of what any request costs here (at {RATE}/s). Closed loop
(the last column, the most admits a second): wrk, {CONNECTIONS} connections per replica, {SECONDS} s. Every admit
is admitted (budgets far above what is asked); "failed" counts answers other than 200-admitted.

| case | admit p50 / p99 at {LOW_RATE}/s | sent at {RATE}/s | admit p50 | admit p99 | failed | /ping p50 / p99 | wrk |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{table}

Target: p99 under {TARGET_P99_MS:.0f} ms at {RATE} admits/s on one contended budget — **{verdict}** (one replica).
"""
