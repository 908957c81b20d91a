"""The dashboard's live feed while the ledger ingests at full rate: CPU seconds of `cg-web serve` per 1,000 events.

The ingest benchmark's live backlog (200,000 usage events stamped over the last 10 minutes) waits in JetStream, and
one `cg-ledger run` drains it at its own pace, as in that benchmark. Meanwhile a `cg-web serve` runs with one
browser's event stream open (`/dashboard/events`, read by an httpx client that notes each `cost` notice; it asks for
no page, so the api is never called and none runs). The web's CPU is counted from the ledger's readiness until the
web is quiet again after the last commit (what it received late is its work too). Baselines in the same run: the
same web, idle, over the same wall time; and, during a second drain of the same backlog, a bare subscriber process
on `cg.cost.recorded.>` whose callback only counts (`bench.subscriber`): what receiving every `cg.cost.recorded`
costs a Python process at least, whatever it then does with them. And what the notices cost the ledger: building
and encoding one (`cg_ledger.batch_notice`) for each of the backlog's batches, timed in this process.

Streams are emptied here, so with NATS_URL set a private nats-server is started, as for the ingest benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import ingest
from bench.ingest import Servers
from bench.subscriber import READY
from bench.support import CpuMeter, drop_database, fake_keys, per_thousand, process_tree_cpu, say
from cg_common.crypto import fingerprint
from cg_common.subjects import COST_RECORDED
from cg_devstack.servers import Stack
from cg_ledger.batch_notice import batch_notice
from cg_web.live import EVENT_NAME
from cg_web.routes.overview import EVENTS_PATH
from tests.support.processes import ServiceProcess, free_port, running_web, start_ledger

NAME = "live"
EVENTS = ingest.EVENTS
POLL_SECS = 0.1
DRAIN_TIMEOUT_SECS = 300.0
QUIET_SAMPLE_SECS = 0.25
QUIET_CORES = 0.05  # below this share of a core over a sample, a process has caught up
QUIET_TIMEOUT_SECS = 60.0
SUBSCRIBER_SUBJECT = f"{COST_RECORDED}.>"
REPO = Path(__file__).resolve().parent.parent
NOTICE_ROUNDS = 5  # the notice's cost is the best of these rounds over every batch: a few milliseconds each


@dataclass(frozen=True)
class Before:
    """Figures of the same benchmark on the code before the web listened to `cg.cost.batch.recorded`, when it read
    every `cg.cost.recorded` (docs/benchmarks.md as of commit e45c1f3): what each run is compared with."""

    commit: str
    measured: str
    web_cpu_per_1000: float
    web_cores: float
    ledger_rate: float
    ledger_cpu_per_1000: float
    idle_cpu_per_1000: float
    subscriber_cpu_per_1000: float


BEFORE = Before(
    commit="0f45f71",
    measured="2026-12-05 01:32 UTC",
    web_cpu_per_1000=0.00925,
    web_cores=0.186,
    ledger_rate=20_608,
    ledger_cpu_per_1000=0.03305,
    idle_cpu_per_1000=0.00015,
    subscriber_cpu_per_1000=0.0061,
)


def run(stack: Stack, work_dir: Path, master_key: str, api_key: str) -> dict[str, Any]:
    rng = random.Random(20261212)
    result: dict[str, Any] = {"events": EVENTS}
    with ingest.nats_to_empty(stack, work_dir, NAME) as (nats_url, nats_pid):
        postgres = stack.servers.get("postgres")
        servers = Servers(nats_url, nats_pid, postgres.pid if postgres else None)
        plain_keys = fake_keys(ingest.STORED_KEYS + ingest.UNKNOWN_KEYS)
        keys = (master_key, plain_keys[: ingest.STORED_KEYS])
        events = ingest.make_events(EVENTS, rng, [fingerprint(k) for k in plain_keys], ingest.LIVE_SPAN, name=NAME)
        payloads = [json.dumps(e).encode() for e in events]
        asyncio.run(ingest.publish_backlog(servers, events, payloads))
        say(NAME, f"{EVENTS:,} events waiting in CG_USAGE")
        result["notice"] = _notice_cost(payloads)
        say(NAME, f"a batch's notice: {result['notice']['us_per_batch']:.0f} µs to build and encode")

        web_env = {
            "NATS_URL": nats_url,
            "REDIS_URL": stack.redis_url,
            "API_KEY": api_key,
            "API_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: no page is asked for
            "DASHBOARD_PUBLIC": "true",  # the event stream without signing in
            "LOG_LEVEL": "warning",
        }
        with running_web(web_env, work_dir / "web-live.log") as web, _browser(web.url + EVENTS_PATH) as notices:
            figures = _drain(stack, servers, work_dir, keys, "web", {"web": web.process.pid})
            figures["notices"] = sum(1 for at in notices if figures["started"] <= at <= figures["ended"])
            figures["nats_warnings"] = _nats_warnings(web)
            result["web"] = figures
            say(NAME, f"web while the ledger drains: {_describe(figures, 'web')}, {figures['notices']} notices")
            result["idle"] = _idle(web.process.pid, figures["window"], EVENTS - figures["events_before_ready"])
            say(NAME, f"idle web over the same {figures['window']:.1f} s: {result['idle']['cpu']:.3f} s of CPU")

        with _subscriber(nats_url) as subscriber:
            figures = _drain(stack, servers, work_dir, keys, "subscriber", {"subscriber": subscriber.pid})
        figures["received"] = _received(subscriber)
        result["subscriber"] = figures
        say(NAME, f"bare subscriber on {SUBSCRIBER_SUBJECT}: {_describe(figures, 'subscriber')}")
    return result


@contextlib.contextmanager
def _browser(url: str) -> Iterator[list[float]]:
    """One browser's open event stream, read in a thread of its own; yields the times (`time.perf_counter`) at which
    `cost` notices arrived, a list that grows until the stream is closed on exit."""
    notices: list[float] = []
    connected = threading.Event()
    loop = asyncio.new_event_loop()

    async def read() -> None:
        # Reads wait for the next notice or heartbeat (every 15 s): never long, unless the web hangs.
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as client,
            client.stream("GET", url) as response,
        ):
            response.raise_for_status()
            connected.set()
            async for line in response.aiter_lines():
                if line == f"event: {EVENT_NAME}":
                    notices.append(time.perf_counter())

    task = loop.create_task(read())

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=serve, name="browser", daemon=True)
    thread.start()
    try:
        if not connected.wait(10):
            raise TimeoutError(f"{url} did not answer within 10 s")
        yield notices
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def _subscriber(nats_url: str) -> Iterator[subprocess.Popen[str]]:
    """`bench.subscriber` on `cg.cost.recorded.>`, subscribed before this yields; stopped with SIGTERM on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.subscriber", nats_url, SUBSCRIBER_SUBJECT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # log lines may come first
            if line.strip() == READY:
                break
        else:
            raise RuntimeError(f"bench.subscriber did not start (exit code {process.poll()})")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(30)


def _received(process: subprocess.Popen[str]) -> int:
    """What the subscriber printed last, on its way out (after the connection's log lines): how many messages it
    received."""
    assert process.stdout is not None
    lines = process.stdout.read().split()
    return int(lines[-1]) if lines and lines[-1].isdigit() else -1


def _notice_cost(payloads: Sequence[bytes]) -> dict[str, Any]:
    """CPU to build and encode the notice of every batch of the backlog (the ledger's batch size, its rows parsed and
    priced as the ledger does), best of NOTICE_ROUNDS rounds, in this process."""
    parsed, _ = ingest.parse_and_price(payloads)
    rows = [ingest.usage_row(event, price, None) for event, price in parsed]
    size = ingest.LEDGER_SPEC.batch_size
    batches = [rows[start : start + size] for start in range(0, len(rows), size)]
    rounds = []
    for _ in range(NOTICE_ROUNDS):
        started = time.process_time()
        for batch in batches:
            notice = batch_notice(batch)
            assert notice is not None
            notice.model_dump_json().encode()
        rounds.append(time.process_time() - started)
    seconds = min(rounds)
    return {
        "batches": len(batches),
        "batch_size": size,
        "days": len({row.occurred_at.date() for row in rows}),
        "us_per_batch": seconds / len(batches) * 1e6,
        "ns_per_event": seconds / len(rows) * 1e9,
    }


def _drain(
    stack: Stack,
    servers: Servers,
    work_dir: Path,
    keys: tuple[str, Sequence[str]],
    label: str,
    watched: Mapping[str, int],
) -> dict[str, Any]:
    """One ledger drains the backlog into a fresh database (the ingest benchmark's way, checked the same way after);
    CPU of the ledger, the servers and the `watched` processes from the ledger's readiness until every watched
    process is quiet again after the last commit."""
    database_url = ingest.prepare_ledger_run(stack, servers, keys)
    try:
        ledger = start_ledger(ingest.ledger_env(stack, servers, database_url), work_dir / f"ledger-live-{label}.log")
        try:
            figures, counters = _measure(ledger, servers, watched)
        finally:
            code = ledger.stop()
        if code:
            raise RuntimeError(f"the ledger exited with {code}:\n{ledger.log_text()[-2000:]}")
        ingest.check_recorded(database_url, servers, counters)
    finally:
        drop_database(stack.database_url, database_url)
    return figures


def _measure(
    ledger: ServiceProcess, servers: Servers, watched: Mapping[str, int]
) -> tuple[dict[str, Any], dict[str, float]]:
    meter = servers.meter(ledger=[ledger.process.pid], **{name: [pid] for name, pid in watched.items()})
    with httpx.Client(timeout=5) as client:
        meter.start()
        started = time.perf_counter()
        before = ingest.ledger_counters(client, [ledger])["cg_ledger_events_recorded_total"]
        while (counters := ingest.ledger_counters(client, [ledger]))["cg_ledger_events_recorded_total"] < EVENTS:
            if time.perf_counter() > started + DRAIN_TIMEOUT_SECS:
                raise TimeoutError(f"the ledger recorded {counters} of {EVENTS} in {DRAIN_TIMEOUT_SECS} s")
            if ledger.process.poll() is not None:
                raise RuntimeError(f"the ledger exited with {ledger.process.returncode}:\n{ledger.log_text()}")
            time.sleep(POLL_SECS)
        drained = time.perf_counter()
        _wait_quiet(list(watched.values()))
        ended = time.perf_counter()
        cpu = meter.stop()
    events = EVENTS - int(before)  # recorded while measured: a batch may have been committed before the first read
    window = ended - started
    figures = {
        "events_before_ready": int(before),
        "seconds": drained - started,
        "rate": events / (drained - started),
        "started": started,
        "ended": ended,
        "window": window,
        "cpu": cpu,
        "cpu_per_1000": {name: per_thousand(value, events) for name, value in cpu.items()},
        "cores": {name: None if value is None else value / window for name, value in cpu.items()},
    }
    return figures, counters


def _wait_quiet(pids: Sequence[int]) -> None:
    """Until none of these processes used more than QUIET_CORES over a sample: they have worked off what they got."""
    deadline = time.perf_counter() + QUIET_TIMEOUT_SECS
    while True:
        before = [process_tree_cpu(pid) for pid in pids]
        time.sleep(QUIET_SAMPLE_SECS)
        used = [process_tree_cpu(pid) - cpu for pid, cpu in zip(pids, before, strict=True)]
        if max(used) <= QUIET_CORES * QUIET_SAMPLE_SECS:
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(f"processes {pids} still busy {QUIET_TIMEOUT_SECS} s after the ledger's last commit")


def _idle(pid: int, seconds: float, events: int) -> dict[str, Any]:
    """CPU of the web over `seconds` with nothing recorded, and per 1,000 of the `events` the drain recorded in as
    long: what it would have used anyway."""
    meter = CpuMeter({"web": [pid]})
    meter.start()
    time.sleep(seconds)
    cpu = meter.stop()["web"]
    return {"seconds": seconds, "cpu": cpu, "cpu_per_1000": per_thousand(cpu, events), "cores": (cpu or 0) / seconds}


def _nats_warnings(web: ServiceProcess) -> int:
    """NATS errors and disconnections the web logged (a slow consumer is cut off by the server, or drops messages)."""
    return sum(web.log_text().count(f'"{what}"') for what in ("nats error", "nats disconnected"))


def _describe(figures: dict[str, Any], name: str) -> str:
    return (
        f"{_ms(figures['cpu_per_1000'][name])} of CPU per 1,000 events, {figures['cores'][name]:.2f} cores; "
        f"ledger {figures['rate']:,.0f} events/s"
    )


def markdown(result: dict[str, Any]) -> str:
    web, idle, subscriber = result["web"], result["idle"], result["subscriber"]
    lines = [
        f"{result['events']:,} usage events (the ingest benchmark's live backlog: stamped over the last "
        f"{ingest.LIVE_SPAN.seconds // 60} minutes) wait in JetStream; one `cg-ledger run` drains them into a fresh "
        "database while a `cg-web serve` runs with one browser's event stream (`/dashboard/events`) open and no page "
        "asked for (so no api is needed). The web's CPU (user + system) is counted from the ledger's readiness until "
        "the web is quiet again after the last commit, and divided by the events recorded meanwhile. Baselines in the "
        "same run: the same web idle over the same wall time, and a bare subscriber process on "
        f"`{SUBSCRIBER_SUBJECT}` (nats-py, a callback that only counts) during a second drain of the same backlog. "
        f"Everything shares the machine's {ingest.CORES} cores. CPU per 1,000 events in milliseconds: 1 ms is 1 µs "
        "an event.",
        "",
        "| process | CPU per 1,000 events | cores | wall | ledger events/s | CPU/1k: ledger | postgres | nats-server |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        _row("**`cg-web serve`, one event stream open, while the ledger drains**", web, "web"),
        f"| `cg-web serve` idle, the same wall time (baseline) | {_ms(idle['cpu_per_1000'])} | "
        f"{idle['cores']:.3f} | {idle['seconds']:.1f} s | | | | |",
        _row(f"bare subscriber on `{SUBSCRIBER_SUBJECT}`, a second drain (baseline)", subscriber, "subscriber"),
        "",
        f"The open event stream got {web['notices']} `cost` notices over the web's {web['window']:.1f} s "
        f"(at most one a second); the web logged {web['nats_warnings']} NATS errors or disconnections; the bare "
        f"subscriber received {subscriber['received']:,} messages.",
        "",
        _before_and_now(result),
    ]
    return "\n".join(lines)


def _before_and_now(result: dict[str, Any]) -> str:
    web, idle, notice = result["web"], result["idle"], result["notice"]
    now, before = web["cpu_per_1000"]["web"], BEFORE.web_cpu_per_1000
    # The kernel counts CPU time in 10 ms ticks: over a ten-second window a quiet process may show none at all.
    less = f"{before / now:,.0f} times less" if now else "less than one tick of the kernel's CPU clock"
    ledger_us = web["cpu_per_1000"]["ledger"] * 1000  # CPU seconds per 1,000 events → µs per event
    return (
        f"**Before and now.** Before the web listened to `cg.cost.batch.recorded` it read every `cg.cost.recorded`: "
        f"the same benchmark on commit {BEFORE.commit} ({BEFORE.measured}) measured the web at "
        f"**{_ms(before)}** of CPU per 1,000 events ({BEFORE.web_cores:.3f} cores) while the ledger drained "
        f"{BEFORE.ledger_rate:,.0f} events/s (ledger {_ms(BEFORE.ledger_cpu_per_1000)} per 1,000), against "
        f"{_ms(BEFORE.idle_cpu_per_1000)} idle and {_ms(BEFORE.subscriber_cpu_per_1000)} for the bare subscriber. "
        f"Now: **{_ms(now)}** ({web['cores']['web']:.3f} cores), {less}; the idle web {_ms(idle['cpu_per_1000'])}. "
        f"The ledger pays for the notices once a batch: building and encoding one for each of this backlog's "
        f"{notice['batches']} batches of {notice['batch_size']:,} ({_days(notice['days'])} in all) takes "
        f"{notice['us_per_batch']:.0f} µs a batch, {notice['ns_per_event']:.0f} ns an event: "
        f"{notice['ns_per_event'] / 1000 / ledger_us:.2%} of the ledger's {ledger_us:.0f} µs of CPU per event in "
        "this run, less than that figure moves from one run to the next."
    )


def _days(count: int) -> str:
    return "one UTC day" if count == 1 else f"{count} UTC days"


def _row(label: str, figures: dict[str, Any], name: str) -> str:
    cpu = figures["cpu_per_1000"]
    return (
        f"| {label} | {_ms(cpu[name])} | {figures['cores'][name]:.3f} | {figures['window']:.1f} s | "
        f"{figures['rate']:,.0f} | {_ms(cpu['ledger'])} | {_ms(cpu.get('postgres'))} | {_ms(cpu.get('nats'))} |"
    )


def _ms(cpu_per_1000: float | None) -> str:
    """CPU seconds per 1,000 events as milliseconds: the web's figure after the change is well under one."""
    return "n/a" if cpu_per_1000 is None else f"{cpu_per_1000 * 1000:.2f} ms"
