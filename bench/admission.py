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
RATE = 1000  # admits a second, open loop
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
    admit = asyncio.run(_open_loop(apis, headers, sources, admit=True))
    ping = asyncio.run(_open_loop(apis, headers, sources, admit=False))
    throughput = _closed_loop(apis, headers, sources)
    say(
        NAME,
        f"{label}: admit p50 {admit['p50']:.1f} ms p99 {admit['p99']:.1f} ms at {admit['rate']:.0f}/s; "
        f"ping p99 {ping['p99']:.1f} ms; most {throughput:.0f} admits/s",
    )
    return {"admit": admit, "ping": ping, "throughput": throughput}


def _body(sources: int) -> bytes:
    return orjson.dumps(
        {"source": f"//svc-{random.randrange(sources)}", "model": MODEL, "estimated_cost": "0.001", "ttl_secs": 600}
    )


async def _open_loop(
    apis: list[ServiceProcess], headers: dict[str, str], sources: int, *, admit: bool
) -> dict[str, float]:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    clients = [httpx.AsyncClient(base_url=a.url, headers=headers, timeout=10, limits=limits) for a in apis]
    latencies: list[float] = []
    failures = 0

    async def one(client: httpx.AsyncClient, due: float, measured: bool) -> None:
        nonlocal failures
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if admit:
            answer = await client.post(
                "/budgets/admit", content=_body(sources), headers={"content-type": "application/json"}
            )
        else:
            answer = await client.get("/ping")
        if answer.status_code != 200 or (admit and not answer.json()["admitted"]):
            failures += 1
        elif measured:
            latencies.append((time.perf_counter() - due) * 1000)

    try:
        start = time.perf_counter() + 0.2
        total = RATE * (WARM_UP_SECS + SECONDS)
        tasks = [
            one(clients[n % len(clients)], start + n / RATE, measured=n >= RATE * WARM_UP_SECS) for n in range(total)
        ]
        began = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    finally:
        for client in clients:
            await client.aclose()
    return {**percentiles(latencies), "rate": total / elapsed, "failures": failures}


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
        admit, ping = figures["admit"], figures["ping"]
        rows.append(
            f"| {label} | {admit['rate']:.0f}/s | {admit['p50']:.1f} ms | {admit['p99']:.1f} ms | "
            f"{admit['failures']} | {ping['p50']:.1f} ms | {ping['p99']:.1f} ms | {figures['throughput']:,.0f}/s |"
        )
    contended = result.get("contended, 1 replica", {}).get("admit", {})
    verdict = "met" if contended and contended["p99"] < TARGET_P99_MS else "missed"
    table = "\n".join(rows)
    return f"""`bench/admission.py`: `cg-api serve` replicas (rate limiting off), PostgreSQL and NATS as in the other
sections. Open loop at {RATE} requests a second for {SECONDS} s after {WARM_UP_SECS} s of warm-up, latency from each
request's scheduled moment (no coordinated omission), with a Python httpx client on the same machine; `GET /ping`
the same way through the same replicas, as the floor of what any request costs here. Closed loop: wrk,
{CONNECTIONS} connections per replica, {SECONDS} s. Every admit is admitted (budgets far above what is asked).

| case | sent | admit p50 | admit p99 | not 200/admitted | /ping p50 | /ping p99 | most admits/s (wrk) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{table}

Target: p99 under {TARGET_P99_MS:.0f} ms at {RATE} admits/s on one contended budget — **{verdict}** (one replica).
"""
