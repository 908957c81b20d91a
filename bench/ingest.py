"""End-to-end ingest: 200,000 usage events waiting in JetStream, recorded by `cg-ledger run` (one, then two replicas).

The events are published before any ledger starts, so the ledger drains a full stream at its own pace and the time
from its readiness until Postgres holds every event is its throughput. Two backlogs: "live" events stamped over the
last 10 minutes (what a stream holds after the ledger was down a while: the roll-ups see the same hours again and
again) and a "backfill" stamped over 30 days (nearly every event opens roll-up groups of its own: the worst case).
Baselines, on the same servers and the same messages: bare JetStream pull consumers that only acknowledge (nats-py's
own `fetch`, and the ledger's `PullFetcher`: the ceiling of the messaging side), binary COPY of the same rows, already
parsed and priced (the ceiling of the database side), the ledger's own SQL path without NATS, the Python parse + price
cost of an event, and publishing (the ledger publishes one `cg.cost.recorded` per event). CPU seconds of every
process show where the time goes.

The benchmark empties JetStream streams and deletes consumers, so it never runs against a NATS it did not start: with
NATS_URL set, it starts a private embedded nats-server for itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import psycopg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bench import profile, summary
from bench.support import CpuMeter, drop_database, fake_keys, fmt_cpu, fresh_database, per_thousand, say, store_keys
from cg_common.crypto import fingerprint
from cg_common.dimensions import DEFAULT_COARSE, DEFAULT_DIMENSIONS, DEFAULT_PAIRS
from cg_common.pricing import Price, Pricer
from cg_common.publishing import MSG_ID_HEADER, Outgoing, publish_all
from cg_common.pull import PullFetcher
from cg_common.subjects import COST_STREAM, DLQ_STREAM, USAGE, USAGE_STREAM
from cg_common.topology import provision
from cg_common.usage_event import UsageEvent, parse_usage_events
from cg_common.usage_publisher import usage_msg_id
from cg_devstack.nats_server import start_nats
from cg_devstack.servers import Stack
from cg_ledger.service import usage_consumer_spec
from cg_ledger.settings import LedgerSettings
from cg_ledger.store import UsageRow, create_staging_table, fold_pending, record_usage
from tests.support.jetstream import settled_consumer_info, topology_for
from tests.support.processes import ServiceProcess, start_ledger
from tests.support.usage import usage_event

K = TypeVar("K")
NAME = "ingest"
EVENTS = 200_000
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-mini", "o3-mini", "gpt-3.5-turbo")
SOURCES = 30
LIVE_SPAN = timedelta(minutes=10)
BACKFILL_SPAN = timedelta(days=30)
STORED_KEYS = 20
UNKNOWN_KEYS = 5  # fingerprints no stored key has: attributed to nothing, like usage of keys we do not hold
SUBJECT = f"{USAGE}.bench"
PUBLISH_CHUNK = 4_000
SCRATCH_STREAM = "BENCH_PUBLISH"  # for the second publish baseline, deleted after it
REPLICAS = (1, 2)
REPEATS = 3  # runs per replica count: the machine's speed drifts by ±10% from minute to minute
POLL_SECS = 0.1
DRAIN_TIMEOUT_SECS = 600.0
CORES = os.cpu_count() or 1
# `BENCH_INGEST_ONLY=dimensions`: run only the dimensions comparison (for iterating on it; `make bench` runs all).
ONLY_ENV = "BENCH_INGEST_ONLY"
DIMENSION_TARGET = 0.90
BUDGETS = 1000
BUDGET_TARGET = 0.80
# The consumer the ledger runs, exactly: its defaults, whatever they become (no environment is read here).
LEDGER_SPEC = usage_consumer_spec(
    LedgerSettings.model_construct(nats_url="nats://-", database_url="postgresql://-", redis_url="redis://-"),
    topology_for({}),
)
COPY_BATCH = LEDGER_SPEC.batch_size  # rows per transaction, as the ledger commits
COLUMNS = (
    "source, event_id, occurred_at, provider, model, key_id, key_fingerprint, input_tokens, cached_input_tokens, "
    "output_tokens, requests, cost, price_source, attributes"
)
BINARY_TYPES = ["text", "text", "timestamptz", "text", "text", "int8", "text"]
BINARY_TYPES += ["int8", "int8", "int8", "int8", "numeric", "text", "jsonb"]
Parsed = list[tuple[UsageEvent, Price]]


@dataclasses.dataclass(frozen=True)
class Servers:
    nats_url: str
    nats_pid: int
    postgres_pid: int | None  # None: a server this run did not start, whose processes it cannot watch

    def meter(self, **processes: Sequence[int]) -> CpuMeter:
        """CPU of these processes plus both servers'."""
        pg = [self.postgres_pid] if self.postgres_pid is not None else None
        return CpuMeter({**processes, "postgres": pg, "nats": [self.nats_pid]})


def run(
    stack: Stack, work_dir: Path, master_key: str, *, py_spy: str | None = None, profile_dir: Path | None = None
) -> dict[str, Any]:
    rng = random.Random(20261126)
    result: dict[str, Any] = {"events": EVENTS, "batch_size": LEDGER_SPEC.batch_size}
    with nats_to_empty(stack, work_dir) as (nats_url, nats_pid):
        postgres = stack.servers.get("postgres")
        servers = Servers(nats_url, nats_pid, postgres.pid if postgres else None)
        plain_keys = fake_keys(STORED_KEYS + UNKNOWN_KEYS)  # the first STORED_KEYS are stored in each database
        keys_to_store = (master_key, plain_keys[:STORED_KEYS])
        fingerprints = [fingerprint(k) for k in plain_keys]
        if os.environ.get(ONLY_ENV) == "dimensions":
            say(NAME, f"{ONLY_ENV}=dimensions: only the dimensions comparison (its section shows nothing else)")
            return {**result, "dimensions": dimension_runs(stack, servers, work_dir, keys_to_store, fingerprints, rng)}
        if os.environ.get(ONLY_ENV) == "budgets":
            say(NAME, f"{ONLY_ENV}=budgets: only the budgets comparison (its section shows nothing else)")
            return {**result, "budgets": budget_runs(stack, servers, work_dir, keys_to_store, fingerprints, rng)}
        events = make_events(EVENTS, rng, fingerprints, LIVE_SPAN)
        payloads = [json.dumps(e).encode() for e in events]
        say(NAME, f"{EVENTS:,} events made ({sum(map(len, payloads)) / EVENTS:.0f} bytes each); publishing")
        result["publish"] = asyncio.run(publish_backlog(servers, events, payloads))
        say(NAME, f"published at {result['publish']['rate']:,.0f} msgs/s")
        result["publish_bare"] = asyncio.run(_publish_bare(servers, events, payloads))
        say(NAME, f"bare publish_async: {result['publish_bare']['rate']:,.0f} msgs/s")

        result["raw_consume"] = asyncio.run(_raw_consume(servers))
        say(NAME, f"baseline (a) nats-py fetch + ack: {result['raw_consume']['rate']:,.0f} msgs/s")
        result["lean_consume"] = asyncio.run(_lean_consume(servers))
        say(NAME, f"baseline (a) PullFetcher fetch + ack: {result['lean_consume']['rate']:,.0f} msgs/s")

        parsed, result["parse_price"] = parse_and_price(payloads)
        figures = result["parse_price"]
        say(NAME, f"parse {figures['parse_us']:.1f} µs + price {figures['price_us']:.1f} µs an event, one core")

        copy_db = fresh_database(stack.database_url)
        try:
            keys = store_keys(copy_db, *keys_to_store)
            result["copy"] = _copy_baselines(copy_db, parsed, {key.fingerprint: key.id for key in keys}, servers)
            result["store_path"] = asyncio.run(_store_path(copy_db, parsed, servers))
            say(NAME, f"ledger SQL path alone (record_usage): {result['store_path']['rate']:,.0f} rows/s")
        finally:
            drop_database(stack.database_url, copy_db)

        result["ledger"] = _ledger_runs(stack, servers, work_dir, keys_to_store, "live")
        if py_spy and profile_dir:
            result["profile"] = _profiled_run(stack, servers, work_dir, keys_to_store, py_spy, profile_dir)
        backfill = make_events(EVENTS, rng, fingerprints, BACKFILL_SPAN, name="backfill")
        asyncio.run(publish_backlog(servers, backfill, [json.dumps(e).encode() for e in backfill]))
        result["backfill"] = _ledger_runs(stack, servers, work_dir, keys_to_store, "backfill")
        result["dimensions"] = dimension_runs(stack, servers, work_dir, keys_to_store, fingerprints, rng)
        result["budgets"] = budget_runs(stack, servers, work_dir, keys_to_store, fingerprints, rng)
    copy_rate = result["copy"]["usage_events"]["rate"]
    # The ledger's rate as a share of the slower baseline (target ≥ 50%), with the consume baseline read both ways:
    # nats-py's own fetch, and the ledger's own lean consume path.
    result["ratios"] = {
        consume: {
            replicas: figures["rate"] / min(result[consume]["rate"], copy_rate)
            for replicas, figures in result["ledger"].items()
        }
        for consume in ("raw_consume", "lean_consume")
    }
    result["scaling"] = result["ledger"][2]["rate"] / result["ledger"][1]["rate"]
    return result


def _ledger_runs(
    stack: Stack, servers: Servers, work_dir: Path, keys: tuple[str, Sequence[str]], backlog: str
) -> dict[int, dict[str, Any]]:
    """REPEATS runs per replica count, interleaved (1, 2, 1, 2, …) so that a slow spell of the machine hits both;
    each count's figures are those of its median run, with every run's rate beside them."""
    runs: dict[int, list[dict[str, Any]]] = {replicas: [] for replicas in REPLICAS}
    for _ in range(REPEATS):
        for replicas in REPLICAS:
            figures = _ledger_run(stack, servers, work_dir, replicas, keys)
            runs[replicas].append(figures)
            say(NAME, f"{backlog}: ledger ×{replicas}: {figures['rate']:,.0f} events/s ({figures['seconds']:.1f} s)")
    return _medians(runs)


def _medians(runs: dict[K, list[dict[str, Any]]]) -> dict[K, dict[str, Any]]:
    """Each variant's median run by rate, with every run's rate beside it."""
    medians = {}
    for variant, done in runs.items():
        ranked = sorted(done, key=lambda run: run["rate"])
        medians[variant] = {**ranked[len(ranked) // 2], "rates": [run["rate"] for run in done]}
    return medians


@dataclasses.dataclass(frozen=True)
class Variant:
    """One side of a with/without comparison: how its events look, and how its ledger run is set up and checked."""

    shape: Callable[[dict[str, Any]], dict[str, Any]] = lambda event: event
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    setup: Callable[[str], None] | None = None
    check: Callable[[str], None] | None = None


def compare_runs(
    stack: Stack,
    servers: Servers,
    work_dir: Path,
    keys: tuple[str, Sequence[str]],
    events: Sequence[dict[str, Any]],
    label: str,
    variants: Mapping[str, Variant],
) -> dict[str, Any]:
    """One ledger on the live backlog, the same events once per variant ("with" and "without"), REPEATS runs each,
    interleaved; each backlog published afresh before its run (new event ids, the rest identical), outside the
    measured time. The medians, and the ratio of "with" to "without"."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for repeat in range(REPEATS):
        for name, variant in variants.items():
            backlog = [{**variant.shape(event), "id": f"{name}{repeat}-{event['id']}"} for event in events]
            asyncio.run(publish_backlog(servers, backlog, [json.dumps(e).encode() for e in backlog]))
            figures = _ledger_run(
                stack, servers, work_dir, 1, keys, extra_env=variant.env, check=variant.check, setup=variant.setup
            )
            runs[name].append(figures)
            say(NAME, f"{label} {name}: ledger ×1: {figures['rate']:,.0f} events/s ({figures['seconds']:.1f} s)")
    medians = _medians(runs)
    ratio = medians["with"]["rate"] / medians["without"]["rate"]
    say(NAME, f"{label}: with/without {ratio:.1%}")
    return {**medians, "ratio": ratio}


def dimension_runs(
    stack: Stack,
    servers: Servers,
    work_dir: Path,
    keys: tuple[str, Sequence[str]],
    fingerprints: Sequence[str],
    rng: random.Random,
) -> dict[str, Any]:
    """The events carrying the four dimensions, with the default DIMENSIONS and DIMENSION_PAIRS (six groupings
    rolled up), against the same without attributes, DIMENSIONS and DIMENSION_PAIRS empty (nothing rolled up)."""
    events = make_events(EVENTS, rng, fingerprints, LIVE_SPAN, name="dims", attributes=dimension_attributes(rng))
    variants = {
        "with": Variant(
            env={"DIMENSIONS": ",".join(DEFAULT_DIMENSIONS), "DIMENSION_PAIRS": ",".join(DEFAULT_PAIRS)},
            check=partial(_check_dimensions, True),
        ),
        "without": Variant(
            shape=_without_attributes,
            env={"DIMENSIONS": "", "DIMENSION_PAIRS": ""},
            check=partial(_check_dimensions, False),
        ),
    }
    return compare_runs(stack, servers, work_dir, keys, events, "dimensions", variants)


def budget_runs(
    stack: Stack,
    servers: Servers,
    work_dir: Path,
    keys: tuple[str, Sequence[str]],
    fingerprints: Sequence[str],
    rng: random.Random,
) -> dict[str, Any]:
    """The events with their four dimensions, with BUDGETS budgets defined (`budget_scopes`: each event falls under
    about five) against none."""
    events = make_events(EVENTS, rng, fingerprints, LIVE_SPAN, name="budg", attributes=dimension_attributes(rng))
    variants = {
        "with": Variant(setup=partial(define_budgets, len(keys[1])), check=partial(_check_budgets, True)),
        "without": Variant(check=partial(_check_budgets, False)),
    }
    result = compare_runs(stack, servers, work_dir, keys, events, "budgets", variants)
    return {**result, "budgets": BUDGETS, "matches": _matches_per_event(events, len(keys[1]))}


def budget_scopes(stored_keys: int) -> list[dict[str, Any]]:
    """BUDGETS scopes spread over models, sources, stored keys and the dimensions (a team, a project, a customer):
    an event falls under its model's, its source's, its team's and its project's, its key's when stored, and its
    customer's for the busier customers — about five."""
    scopes: list[dict[str, Any]] = [{"model": model} for model in MODELS]
    scopes += [{"source": f"//service-{n}/prod"} for n in range(SOURCES)]
    scopes += [{"key_id": n} for n in range(1, stored_keys + 1)]
    scopes += [{"attributes": {"team": f"team-{n}"}} for n in range(summary.TEAMS)]
    scopes += [{"attributes": {"project": f"project-{n}"}} for n in range(summary.PROJECTS)]
    customers = BUDGETS - len(scopes)
    return scopes + [{"attributes": {"customer": f"customer-{n}"}} for n in range(customers)]


def define_budgets(stored_keys: int, database_url: str) -> None:
    """The budgets as the api stores them (their spend counted from this month's start), far above what the backlog
    spends, so that the run measures matching and counting, not alerts."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n, scope in enumerate(budget_scopes(stored_keys)):
            zone = "Europe/Berlin" if n % 2 else "UTC"
            conn.execute(
                """INSERT INTO budgets (name, amount, period, timezone, scope, thresholds, opening_period_start)
                   VALUES (%s, 1e12, 'month', %s, %s, '{50,80,100}', date_trunc('month', now(), %s))""",
                (f"budget-{n}", zone, Jsonb(scope), zone),
            )


def _matches_per_event(events: Sequence[dict[str, Any]], stored_keys: int) -> float:
    """How many of the budgets an event falls under, on average (a stored key is any of the first fingerprints)."""
    customers = BUDGETS - len(MODELS) - SOURCES - stored_keys - summary.TEAMS - summary.PROJECTS
    stored = STORED_KEYS / (STORED_KEYS + UNKNOWN_KEYS)
    customer_share = sum(
        int(e["data"]["attributes"]["customer"].removeprefix("customer-")) < customers for e in events
    ) / len(events)
    return 4 + stored + customer_share


def _check_budgets(defined: bool, database_url: str) -> None:
    """With budgets: their spend holds every event's cost the expected number of times; without: none."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM budget_spend), (SELECT coalesce(sum(cost), 0) FROM usage_events)"
        ).fetchone()
    assert row is not None
    if defined != bool(row[0]):
        raise RuntimeError(f"budget spend rows after the run: {row[0]} (budgets defined: {defined})")


def dimension_attributes(rng: random.Random) -> Callable[[int], dict[str, str]]:
    """The four dimensions as the summary benchmark draws them: project p of team p mod 20, customer and feature
    independent, each skewed (⌊u^k × count⌋)."""

    def draw(count: int, skew: float) -> int:
        return int(rng.random() ** skew * count)

    def attributes(_n: int) -> dict[str, str]:
        project = draw(summary.PROJECTS, summary.PROJECT_SKEW)
        return {
            "team": f"team-{project % summary.TEAMS}",
            "project": f"project-{project}",
            "customer": f"customer-{draw(summary.CUSTOMERS, summary.CUSTOMER_SKEW)}",
            "feature": f"feature-{draw(summary.FEATURES, summary.FEATURE_SKEW)}",
        }

    return attributes


def _without_attributes(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "data": {name: value for name, value in event["data"].items() if name != "attributes"}}


def _check_dimensions(rolled_up: bool, database_url: str) -> None:
    """With dimensions: each of the six groupings holds every event once (daily roll-up plus pending sums; the
    coarse customer grouping has no hourly one). Without: no grouping listed, no dimension roll-up row."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT g.grouping,
                      (SELECT coalesce(sum(events), 0) FROM usage_rollup_dimension_daily d
                       WHERE d.grouping = g.grouping)
                      + (SELECT coalesce(sum(events), 0) FROM usage_rollup_dimension_pending p
                         WHERE p.grouping = g.grouping)
               FROM usage_rollup_groupings g ORDER BY 1"""
        ).fetchall()
        stray = conn.execute(
            """SELECT (SELECT count(*) FROM usage_rollup_dimension_daily)
                      + (SELECT count(*) FROM usage_rollup_dimension_pending)"""
        ).fetchone()
    expected = len(DEFAULT_DIMENSIONS) + len(DEFAULT_PAIRS) if rolled_up else 0
    if len(rows) != expected or any(int(events) != EVENTS for _, events in rows):
        raise RuntimeError(f"dimension roll-ups after the run: {rows}, expected {expected} groupings of {EVENTS}")
    if not rolled_up and stray and stray[0]:
        raise RuntimeError(f"{stray[0]} dimension roll-up rows with DIMENSIONS empty")


def make_events(
    count: int,
    rng: random.Random,
    fingerprints: Sequence[str],
    spread: timedelta,
    *,
    name: str = "bench",
    attributes: Callable[[int], dict[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Valid usage events: 5 OpenAI models, random tokens (cached ≤ input), 30 sources, stamped over `spread` up to
    a minute ago; `attributes(n)` gives the n-th event's (default: a team out of 7)."""
    end = datetime.now(UTC) - timedelta(minutes=1)
    span = spread.total_seconds()
    events = []
    for n in range(count):
        input_tokens = rng.randint(0, 20_000)
        events.append(
            usage_event(
                source=f"//service-{rng.randrange(SOURCES)}/prod",
                event_id=f"{name}-{n}",  # another name, another event: not a re-send JetStream would drop
                model=rng.choice(MODELS),
                input_tokens=input_tokens,
                cached_input_tokens=rng.randint(0, input_tokens) if rng.random() < 0.5 else 0,
                output_tokens=rng.randint(0, 4_000),
                time_=end - timedelta(seconds=rng.uniform(0, span)),
                key_fingerprint=rng.choice(fingerprints),
                attributes=attributes(n) if attributes else {"team": f"team-{n % 7}"},
            )
        )
    return events


@contextlib.contextmanager
def nats_to_empty(stack: Stack, work_dir: Path, bench: str = NAME) -> Iterator[tuple[str, int]]:
    """The stack's nats-server when this run started it, else a private one: streams are emptied here."""
    if "nats" in stack.servers:
        yield stack.nats_url, stack.servers["nats"].pid
        return
    say(bench, "NATS_URL is set: starting a private nats-server, since this benchmark empties streams")
    server = start_nats(work_dir / f"{bench}-servers")
    try:
        yield server.url, server.pid
    finally:
        server.stop()


async def _reset_streams(nats_url: str, *, usage_too: bool) -> None:
    """No consumers, and no cost or DLQ stream (the ledger creates them afresh: new de-duplication windows too)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await provision(js, topology_for({}))
        for consumer in await js.consumers_info(USAGE_STREAM.name):
            await js.delete_consumer(USAGE_STREAM.name, consumer.name)
        if usage_too:
            await js.purge_stream(USAGE_STREAM.name)
        for spec in (COST_STREAM, DLQ_STREAM):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(spec.name)
        await provision(js, topology_for({}))
    finally:
        await nc.close()


def _figures(count: int, seconds: float, client_cpu: float, cpu: dict[str, float | None]) -> dict[str, Any]:
    per_1000 = {name: per_thousand(value, count) for name, value in cpu.items()}
    return {
        "seconds": seconds,
        "rate": count / seconds,
        "cpu_per_1000": {"client": client_cpu / count * 1000, **per_1000},
    }


async def publish_backlog(
    servers: Servers, events: Sequence[dict[str, Any]], payloads: Sequence[bytes]
) -> dict[str, Any]:
    """The events into an emptied CG_USAGE with `publish_all` (what the api and the ledger publish with)."""
    await _reset_streams(servers.nats_url, usage_too=True)
    outgoing = [
        Outgoing(SUBJECT, payload, msg_id=usage_msg_id(event["source"], event["id"]))
        for event, payload in zip(events, payloads, strict=True)
    ]
    nc = await nats.connect(servers.nats_url)
    meter = servers.meter()
    try:
        js = nc.jetstream()
        meter.start()
        cpu_started, started = time.process_time(), time.perf_counter()
        for start in range(0, len(outgoing), PUBLISH_CHUNK):
            await publish_all(nc, outgoing[start : start + PUBLISH_CHUNK])
        seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        cpu = meter.stop()
        stored = (await js.stream_info(USAGE_STREAM.name)).state.messages
    finally:
        await nc.close()
    if stored != len(outgoing):
        raise RuntimeError(f"CG_USAGE holds {stored} messages after publishing {len(outgoing)}")
    return _figures(len(outgoing), seconds, client_cpu, cpu)


async def _publish_bare(
    servers: Servers, events: Sequence[dict[str, Any]], payloads: Sequence[bytes]
) -> dict[str, Any]:
    """The same messages, ids and chunks with nats-py's `publish_async` alone (no `wait_stall`, no re-send
    bookkeeping), into a scratch stream: what `publish_all` adds to the bare client."""
    nc = await nats.connect(servers.nats_url)
    meter = servers.meter()
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=SCRATCH_STREAM, subjects=["bench.publish.>"], duplicate_window=120))
        meter.start()
        cpu_started, started = time.process_time(), time.perf_counter()
        for start in range(0, len(payloads), PUBLISH_CHUNK):
            futures = [
                await js.publish_async(
                    "bench.publish.usage", payload, headers={MSG_ID_HEADER: usage_msg_id(event["source"], event["id"])}
                )
                for event, payload in zip(
                    events[start : start + PUBLISH_CHUNK], payloads[start : start + PUBLISH_CHUNK], strict=True
                )
            ]
            await asyncio.gather(*futures)
        seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        cpu = meter.stop()
        stored = (await js.stream_info(SCRATCH_STREAM)).state.messages
        await js.delete_stream(SCRATCH_STREAM)
    finally:
        await nc.close()
    if stored != len(payloads):
        raise RuntimeError(f"{SCRATCH_STREAM} holds {stored} messages after publishing {len(payloads)}")
    return _figures(len(payloads), seconds, client_cpu, cpu)


async def _raw_consume(servers: Servers) -> dict[str, Any]:
    """Baseline (a): the ledger's consumer (same config, batch size, fetch timeout), fetch + ack, nothing else."""
    spec = LEDGER_SPEC
    consumer = dataclasses.replace(spec.consumer, durable="bench-raw")
    nc = await nats.connect(servers.nats_url)
    meter = servers.meter()
    try:
        js = nc.jetstream()
        subscription = await js.pull_subscribe(
            consumer.filter_subject, durable=consumer.durable, stream=consumer.stream, config=consumer.config()
        )
        meter.start()
        cpu_started, started = time.process_time(), time.perf_counter()
        # Counted by stream sequence: now and then nats-py's fetch drops a message that arrives as its wait ends,
        # and JetStream redelivers it after ack_wait; the run ends once every message was received and acked.
        received: set[str] = set()
        while len(received) < EVENTS:
            try:
                messages = await subscription.fetch(spec.batch_size, timeout=spec.fetch_timeout_secs)
            except (NatsTimeoutError, TimeoutError):
                continue
            for message in messages:
                await message.ack()
                received.add(message.reply.split(".")[5])  # $JS.ACK.<stream>.<consumer>.<n>.<stream seq>.…
        await nc.flush()
        seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        cpu = meter.stop()
        info = await settled_consumer_info(js, consumer.stream, consumer.durable)
        await subscription.unsubscribe()
        await js.delete_consumer(consumer.stream, consumer.durable)
    finally:
        await nc.close()
    if info.num_ack_pending:
        raise RuntimeError(f"raw consumer left {info.num_ack_pending} messages unacknowledged")
    return _figures(len(received), seconds, client_cpu, cpu)


async def _lean_consume(servers: Servers) -> dict[str, Any]:
    """Baseline (a), the ledger's way: the same consumer config and batch size through `PullFetcher`, fetch + ack."""
    spec = LEDGER_SPEC
    consumer = dataclasses.replace(spec.consumer, durable="bench-lean")
    nc = await nats.connect(servers.nats_url)
    meter = servers.meter()
    try:
        js = nc.jetstream()
        await js.add_consumer(consumer.stream, config=consumer.config())
        fetcher = PullFetcher(nc, consumer.stream, consumer.durable)
        await fetcher.start()
        meter.start()
        cpu_started, started = time.process_time(), time.perf_counter()
        received = 0
        while received < EVENTS:
            messages = await fetcher.fetch(spec.batch_size, spec.fetch_timeout_secs)
            for message in messages:  # as the consumer loop acknowledges a batch
                await message.ack()
            received += len(messages)
        await nc.flush()
        seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        cpu = meter.stop()
        await fetcher.stop()
        info = await settled_consumer_info(js, consumer.stream, consumer.durable)
        await js.delete_consumer(consumer.stream, consumer.durable)
    finally:
        await nc.close()
    if info.num_ack_pending:
        raise RuntimeError(f"lean consumer left {info.num_ack_pending} messages unacknowledged")
    return _figures(received, seconds, client_cpu, cpu)


def parse_and_price(payloads: Sequence[bytes]) -> tuple[Parsed, dict[str, Any]]:
    """What the ledger's Python does per event before SQL: parse_usage_events in the ledger's batches, then
    Pricer.price; timed apart."""
    batch, now = LEDGER_SPEC.batch_size, datetime.now(UTC)
    # The cyclic collector paused, as good as the ledger's (cli._tune_gc): here all 200,000 parsed events stay alive,
    # and its full collections over them would be counted as parsing.
    gc.disable()
    try:
        started = time.process_time()
        parsed = [
            event
            for start in range(0, len(payloads), batch)
            for event in parse_usage_events(payloads[start : start + batch], now=now)
        ]
        parse_secs = time.process_time() - started
        events = [event for event in parsed if isinstance(event, UsageEvent)]
        if len(events) != len(parsed):
            raise RuntimeError(f"{len(parsed) - len(events)} bench events are invalid")
        pricer = Pricer()
        started = time.process_time()
        prices = [
            pricer.price(
                event.data.provider,
                event.data.model,
                event.time or datetime.now(UTC),
                input_tokens=event.data.input_tokens,
                cached_input_tokens=event.data.cached_input_tokens,
                output_tokens=event.data.output_tokens,
                requests=event.data.requests,
            )
            for event in events
        ]
        price_secs = time.process_time() - started
    finally:
        gc.enable()
    unpriced = sum(1 for price in prices if price.cost is None)
    if unpriced:
        raise RuntimeError(f"{unpriced} bench events have no price: the model list needs updating")
    timing = {"parse_us": parse_secs / len(events) * 1e6, "price_us": price_secs / len(events) * 1e6}
    return list(zip(events, prices, strict=True)), timing


def usage_row(event: UsageEvent, price: Price, key_id: int | None) -> UsageRow:
    return UsageRow.from_event(event, price, occurred_at=event.time or datetime.now(UTC), key_id=key_id)


def _copy_tuple(row: UsageRow) -> tuple[Any, ...]:
    return tuple(getattr(row, column.strip()) for column in COLUMNS.split(","))


def _copy_baselines(database_url: str, parsed: Parsed, key_of: dict[str, int], servers: Servers) -> dict[str, Any]:
    """Baseline (b): the rows, parsed, priced and attributed to their key, written by binary COPY in the ledger's
    batch size, one commit per batch as the ledger commits: into a plain table with usage_events' columns, the same
    with the unique (source, event_id) index, and usage_events itself with all its indexes (emptied before)."""
    rows = [
        _copy_tuple(usage_row(event, price, key_of.get(event.data.key_fingerprint or ""))) for event, price in parsed
    ]
    like = "(LIKE usage_events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
    results = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE bench_plain {like}")
        conn.execute(f"CREATE TABLE bench_unique {like}")
        conn.execute("CREATE UNIQUE INDEX ON bench_unique (source, event_id)")
        for name, table in (("plain", "bench_plain"), ("unique", "bench_unique"), ("usage_events", "usage_events")):
            conn.execute("TRUNCATE usage_events, usage_rollup_hourly, usage_rollup_daily")
            conn.execute("CHECKPOINT")
            results[name] = _copy_into(conn, table, rows, servers)
            say(NAME, f"baseline (b) binary COPY into {table}: {results[name]['rate']:,.0f} rows/s")
        conn.execute("DROP TABLE bench_plain, bench_unique")
        conn.execute("TRUNCATE usage_events, usage_rollup_hourly, usage_rollup_daily")
        conn.execute("CHECKPOINT")
    return results


def _copy_into(
    conn: psycopg.Connection[Any], table: str, rows: Sequence[tuple[Any, ...]], servers: Servers
) -> dict[str, Any]:
    meter = servers.meter()
    meter.start()
    cpu_started, started = time.process_time(), time.perf_counter()
    for start in range(0, len(rows), COPY_BATCH):
        with conn.transaction(), conn.cursor().copy(f"COPY {table} ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(BINARY_TYPES)
            for row in rows[start : start + COPY_BATCH]:
                copy.write_row(row)
    seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    cpu = meter.stop()
    count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - a constant table name
    if not count or count[0] != len(rows):
        raise RuntimeError(f"{table} holds {count} rows after copying {len(rows)}")
    return _figures(len(rows), seconds, client_cpu, cpu)


async def _store_path(database_url: str, parsed: Parsed, servers: Servers) -> dict[str, Any]:
    """The ledger's own SQL (cg_ledger.store.record_usage: binary COPY into its staging table, then INSERT … ON
    CONFLICT DO NOTHING RETURNING with key attribution and the pending roll-up sums) in the ledger's batches, one
    commit each, as its recorder calls it, then one fold of all pending sums; no NATS, no parsing. usage_events is
    empty before."""
    rows = [usage_row(event, price, event.data.key_id) for event, price in parsed]
    batch = LEDGER_SPEC.batch_size
    meter = servers.meter()
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        await create_staging_table(conn)
        meter.start()
        cpu_started, started = time.process_time(), time.perf_counter()
        inserted = 0
        for start in range(0, len(rows), batch):
            async with conn.transaction():
                inserted += len(await record_usage(conn, rows[start : start + batch]))
        async with conn.transaction():
            await fold_pending(conn)
        seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        cpu = meter.stop()
        await conn.execute("TRUNCATE usage_events, usage_rollup_hourly, usage_rollup_daily, usage_rollup_pending")
        await conn.commit()
    if inserted != len(rows):
        raise RuntimeError(f"record_usage inserted {inserted} of {len(rows)} rows")
    return _figures(len(rows), seconds, client_cpu, cpu)


def ledger_env(stack: Stack, servers: Servers, database_url: str) -> dict[str, str]:
    return {"NATS_URL": servers.nats_url, "DATABASE_URL": database_url, "REDIS_URL": stack.redis_url}


def _start_ledgers(env: dict[str, str], work_dir: Path, replicas: int, label: str) -> list[ServiceProcess]:
    """All replicas spawned at once (each waits for its own /healthz), so none gets a head start."""
    with ThreadPoolExecutor(max_workers=replicas) as pool:
        futures = [pool.submit(start_ledger, env, work_dir / f"ledger-{label}-{n}.log") for n in range(replicas)]
    started = [f.result() for f in futures if f.exception() is None]
    errors = [error for f in futures if (error := f.exception()) is not None]
    if errors:
        for ledger in started:
            ledger.stop()
        raise errors[0]
    return started


COUNTERS = (
    "cg_ledger_events_recorded_total",
    "cg_ledger_duplicates_total",
    "cg_ledger_batch_seconds_sum",
    "cg_ledger_batch_seconds_count",
)


def ledger_counters(client: httpx.Client, ledgers: Sequence[ServiceProcess]) -> dict[str, float]:
    """The ledgers' own Prometheus counters, summed over replicas."""
    totals = dict.fromkeys(COUNTERS, 0.0)
    for ledger in ledgers:
        text = client.get(ledger.url + "/metrics", headers={"Accept": "text/plain"}).text
        for name in COUNTERS:
            match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
            totals[name] += float(match.group(1)) if match else 0.0
    return totals


def prepare_ledger_run(stack: Stack, servers: Servers, keys: tuple[str, Sequence[str]]) -> str:
    """A fresh database with the keys stored, no consumer, empty cost and DLQ streams, a checkpoint behind."""
    database_url = fresh_database(stack.database_url)
    store_keys(database_url, *keys)
    asyncio.run(_reset_streams(servers.nats_url, usage_too=False))
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return database_url


def _ledger_run(
    stack: Stack,
    servers: Servers,
    work_dir: Path,
    replicas: int,
    keys: tuple[str, Sequence[str]],
    *,
    extra_env: Mapping[str, str] | None = None,
    check: Callable[[str], None] | None = None,
    setup: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    database_url = prepare_ledger_run(stack, servers, keys)
    try:
        if setup is not None:
            setup(database_url)
        spawned = time.perf_counter()
        env = {**ledger_env(stack, servers, database_url), **(extra_env or {})}
        ledgers = _start_ledgers(env, work_dir, replicas, f"x{replicas}")
        try:
            figures = _drain(ledgers, servers, database_url, spawned)
        finally:
            codes = [ledger.stop() for ledger in ledgers]
        if any(codes):
            raise RuntimeError(f"ledger exit codes {codes}:\n{ledgers[0].log_text()[-2000:]}")
        if check is not None:
            check(database_url)
        return figures
    finally:
        drop_database(stack.database_url, database_url)


def _drain(
    ledgers: Sequence[ServiceProcess],
    servers: Servers,
    database_url: str,
    spawned: float,
    on_ready: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """From the moment every replica answers /healthz until their counters show every event committed."""
    meter = servers.meter(ledger=[ledger.process.pid for ledger in ledgers])
    with httpx.Client(timeout=5) as client:
        meter.start()
        ready = time.perf_counter()
        before = ledger_counters(client, ledgers)["cg_ledger_events_recorded_total"]
        if on_ready is not None:
            on_ready()
        while (counters := ledger_counters(client, ledgers))["cg_ledger_events_recorded_total"] < EVENTS:
            if time.perf_counter() > ready + DRAIN_TIMEOUT_SECS:
                raise TimeoutError(f"the ledger recorded {counters} of {EVENTS} in {DRAIN_TIMEOUT_SECS} s")
            for ledger in ledgers:
                if ledger.process.poll() is not None:
                    raise RuntimeError(f"a ledger exited with {ledger.process.returncode}:\n{ledger.log_text()}")
            time.sleep(POLL_SECS)
        done = time.perf_counter()
        cpu = meter.stop()
    check_recorded(database_url, servers, counters)
    events = EVENTS - int(before)  # recorded while measured; a replica may have started a batch before all were up
    seconds = done - ready
    return {
        "replicas": len(ledgers),
        "seconds": seconds,
        "rate": events / seconds,
        "events_before_ready": int(before),
        "startup_seconds": ready - spawned,
        "rate_from_spawn": EVENTS / (done - spawned),
        "mean_batch_ms": 1000 * counters["cg_ledger_batch_seconds_sum"] / counters["cg_ledger_batch_seconds_count"],
        "cpu_per_1000": {name: per_thousand(value, events) for name, value in cpu.items()},
        "cores": {name: None if value is None else value / seconds for name, value in cpu.items()},
    }


def check_recorded(database_url: str, servers: Servers, counters: dict[str, float]) -> None:
    """Every event in usage_events and both roll-ups (with the sums still pending), one cost.recorded each, no
    duplicate, nothing dead-lettered."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """WITH pending AS (SELECT coalesce(sum(events), 0) AS events FROM usage_rollup_pending)
               SELECT (SELECT count(*) FROM usage_events),
                      (SELECT coalesce(sum(events), 0) FROM usage_rollup_hourly) + (SELECT events FROM pending),
                      (SELECT coalesce(sum(events), 0) FROM usage_rollup_daily) + (SELECT events FROM pending)"""
        ).fetchone()
    if row is None or list(row) != [EVENTS] * 3:
        raise RuntimeError(f"after the run: usage_events, hourly, daily = {row}, expected {EVENTS} each")
    costs, dead = asyncio.run(_wait_for_costs(servers.nats_url))
    if costs != EVENTS or dead or counters["cg_ledger_duplicates_total"]:
        raise RuntimeError(f"cost.recorded {costs}, dead-lettered {dead}, counters {counters}: the run was not clean")


async def _wait_for_costs(nats_url: str) -> tuple[int, int]:
    """cg.cost.recorded messages (published after each commit, so they may trail a little) and DLQ messages."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 30
        while (costs := (await js.stream_info(COST_STREAM.name)).state.messages) < EVENTS:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        dead = (await js.stream_info(DLQ_STREAM.name)).state.messages
    finally:
        await nc.close()
    return costs, dead


PROFILE_FOCUS = {  # py-spy's names → what to call them in the report
    "PullFetcher.fetch": "fetch (PullFetcher)",
    "parse_usage_events": "parse_usage_events",
    "Pricer.price": "Pricer.price",
    "record_usage": "record_usage (SQL)",
    "cost_recorded_message": "cost_recorded_message",
    "publish_all": "publish_all",
    "Consumer._settle": "acks (Consumer._settle)",
    "Client._read_loop": "nats-py reading (acks, messages)",
    "RollupFolder.fold_once": "roll-up folds",
    "EpollSelector.select": "waiting in epoll",
}


def _profiled_run(
    stack: Stack, servers: Servers, work_dir: Path, keys: tuple[str, Sequence[str]], py_spy: str, profile_dir: Path
) -> dict[str, Any]:
    """One more single-replica run, outside the figures, with py-spy sampling the ledger for the whole drain."""
    database_url = prepare_ledger_run(stack, servers, keys)
    profile_dir.mkdir(parents=True, exist_ok=True)
    raw = profile_dir / "ledger-py-spy.txt"
    recorders: list[subprocess.Popen[bytes]] = []
    try:
        ledgers = _start_ledgers(ledger_env(stack, servers, database_url), work_dir, 1, "profiled")
        pid = str(ledgers[0].process.pid)

        def attach() -> None:
            with (profile_dir / "py-spy.log").open("wb") as log:
                argv = [py_spy, "record", "-p", pid, "-o", str(raw), "-f", "raw", "-r", "200", "-d", "600"]
                recorders.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

        try:
            figures = _drain(ledgers, servers, database_url, time.perf_counter(), on_ready=attach)
        finally:
            for recorder in recorders:
                recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
                recorder.wait(60)
            for ledger in ledgers:
                ledger.stop()
    finally:
        drop_database(stack.database_url, database_url)
    summary = profile.summarise(raw.read_text() if raw.exists() else "", focus=list(PROFILE_FOCUS))
    (profile_dir / "ledger-profile-summary.json").write_text(json.dumps(summary, indent=2))
    say(NAME, f"py-spy profile of one ledger in {raw} ({figures['rate']:,.0f} events/s under the profiler)")
    return {"path": str(raw), "rate_under_profiler": figures["rate"], **summary}


def dimensions_markdown(result: dict[str, Any]) -> list[str]:
    dims = result["dimensions"]
    with_, without = dims["with"], dims["without"]
    verdict = "met" if dims["ratio"] >= DIMENSION_TARGET else "**missed**"
    return [
        "### Dimensions on and off",
        "",
        f"One ledger on the live backlog ({EVENTS:,} events over the last {LIVE_SPAN.seconds // 60} minutes), the same "
        "events twice, interleaved, "
        f"{REPEATS} runs each, each on a fresh database with its backlog published afresh just before (new event "
        "ids, outside the measured time): **with** every event carrying the four dimensions of the summary "
        f"benchmark (team of {summary.TEAMS}, project of {summary.PROJECTS} belonging to one team, customer of "
        f"{summary.CUSTOMERS:,}, feature of {summary.FEATURES}, skewed the same way) and the default DIMENSIONS "
        f"`{','.join(DEFAULT_DIMENSIONS)}`, DIMENSION_PAIRS `{','.join(DEFAULT_PAIRS)}` and DIMENSION_COARSE "
        f"`{','.join(DEFAULT_COARSE)}` (six groupings rolled up, the customer one per day and month: every batch "
        "also writes its pending dimension sums, every fold moves them), and **without** "
        "attributes, with DIMENSIONS and DIMENSION_PAIRS empty (nothing rolled up). Checked after each run: "
        "every grouping holds every event once (daily roll-up plus pending sums), and nothing is rolled up "
        "without dimensions.",
        "",
        "| ledger ×1, live backlog | events/s (median) | runs | mean batch | CPU/1k: ledger | postgres | nats-server |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {label} | {figures['rate']:,.0f} | {_rates(figures)} | {figures['mean_batch_ms']:.0f} ms | "
            f"{fmt_cpu(figures['cpu_per_1000'].get('ledger'))} | {fmt_cpu(figures['cpu_per_1000'].get('postgres'))} | "
            f"{fmt_cpu(figures['cpu_per_1000'].get('nats'))} |"
            for label, figures in (
                ("without attributes, DIMENSIONS empty", without),
                ("**with four dimensions, default DIMENSIONS and pairs**", with_),
            )
        ),
        "",
        f"With dimensions: **{dims['ratio']:.1%}** of the rate without (target ≥ {DIMENSION_TARGET:.0%}), {verdict}.",
    ]


def budgets_markdown(result: dict[str, Any]) -> list[str]:
    budgets = result["budgets"]
    with_, without = budgets["with"], budgets["without"]
    verdict = "**met**" if budgets["ratio"] >= BUDGET_TARGET else "**missed**"

    def rates(runs: dict[str, Any]) -> str:
        return ", ".join(f"{rate:,.0f}" for rate in runs["rates"])

    return [
        "### With 1,000 budgets",
        "",
        f"One ledger, the same {EVENTS:,} events (four dimensions each) twice: with {budgets['budgets']:,} budgets "
        f"defined (scopes over models, sources, stored keys, teams, projects and customers; an event falls under "
        f"{budgets['matches']:.1f} of them on average; half in Europe/Berlin, half in UTC) and with none "
        f"(`BENCH_INGEST_ONLY=budgets`). Medians of {REPEATS} interleaved runs.",
        "",
        "| | events/s | runs |",
        "| --- | ---: | --- |",
        f"| with {budgets['budgets']:,} budgets | {with_['rate']:,.0f} | {rates(with_)} |",
        f"| no budget | {without['rate']:,.0f} | {rates(without)} |",
        "",
        f"With budgets: **{budgets['ratio']:.1%}** of the rate without (target ≥ {BUDGET_TARGET:.0%}), {verdict}.",
    ]


def markdown(result: dict[str, Any]) -> str:
    if "ledger" not in result and "budgets" in result:  # BENCH_INGEST_ONLY=budgets
        return "\n".join(budgets_markdown(result))
    if "ledger" not in result:  # BENCH_INGEST_ONLY=dimensions
        return "\n".join(dimensions_markdown(result))
    one, two = result["ledger"][1], result["ledger"][2]
    back_one, back_two = result["backfill"][1], result["backfill"][2]
    copy, pp = result["copy"], result["parse_price"]
    lines = [
        f"{EVENTS:,} valid usage events ({len(MODELS)} OpenAI models, {SOURCES} sources, {STORED_KEYS} stored keys "
        f"and {UNKNOWN_KEYS} unknown ones named by fingerprint) are published to `{SUBJECT}` before any ledger "
        f"starts; then `cg-ledger run` (batch size {result['batch_size']}) drains the stream, and the time from its "
        "readiness until its counter shows every event committed gives events/s (checked after: every row in "
        "`usage_events`, both roll-ups (with the sums still pending) and `cg.cost.recorded` complete, no duplicate, "
        "nothing dead-lettered). Each ledger run starts on a fresh database with the consumer and the cost stream "
        "deleted; two replicas share the durable consumer. Two backlogs: **live**, events stamped over the last "
        f"{LIVE_SPAN.seconds // 60} minutes (what the stream holds after the ledger was away a while), and "
        f"**backfill**, stamped over {BACKFILL_SPAN.days} days (history sent in bulk: nearly every event opens "
        f"roll-up groups of its own, {SOURCES} sources × {len(MODELS)} models × {STORED_KEYS + 1} keys per hour). "
        "Baselines use the same servers and the live messages: (a) bare fetch + ack with the ledger's consumer "
        "config, through nats-py's `fetch` and through the ledger's own `PullFetcher`; (b) binary COPY of the same "
        f"rows already parsed and priced, {COPY_BATCH:,} rows per transaction as the ledger commits. Everything "
        f"(ledger, PostgreSQL, nats-server, this client) shares the machine's {CORES} cores. CPU is user + system "
        "seconds per 1,000 events of each process (PostgreSQL: all its backends).",
        "",
        "| what | per second | wall | CPU/1k: ledger or client | postgres | nats-server |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        _row("publish, `publish_all` (as api and ledger do), 4,000 a chunk", result["publish"], "client"),
        _row("publish, bare nats-py `publish_async` (baseline for `publish_all`)", result["publish_bare"], "client"),
        _row("(a) raw consume + ack, nats-py `fetch`", result["raw_consume"], "client"),
        _row(
            "(a) raw consume + ack, `PullFetcher` (one pull request, one plain subscription) and `Msg.ack` (the "
            "ledger's way)",
            result["lean_consume"],
            "client",
        ),
        _row("(b) binary COPY, plain table, no index", copy["plain"], "client"),
        _row("(b) binary COPY, plain table + unique (source, event_id)", copy["unique"], "client"),
        _row("(b) binary COPY into `usage_events` (its 4 indexes + PK)", copy["usage_events"], "client"),
        _row("ledger SQL alone (`record_usage` + one fold, no NATS)", result["store_path"], "client"),
        _row(f"**ledger ×1, live backlog** (median of {REPEATS})", one, "ledger"),
        _row(f"**ledger ×2, live backlog** (median of {REPEATS})", two, "ledger"),
        _row(f"ledger ×1, backfill over 30 days (median of {REPEATS})", back_one, "ledger"),
        _row(f"ledger ×2, backfill over 30 days (median of {REPEATS})", back_two, "ledger"),
        "",
        f"Live backlog: one ledger **{one['rate']:,.0f} events/s**, two replicas **{two['rate']:,.0f} events/s** "
        f"(×{result['scaling']:.2f}; target ≥ 20,000). As a share of the slower baseline (target ≥ 50%), one and two "
        f"replicas: {_ratio(result, 'raw_consume')} when the consume baseline is nats-py's `fetch`, "
        f"{_ratio(result, 'lean_consume')} when it is the ledger's own `PullFetcher` (the slower baseline being the "
        f"lower of consume and COPY into `usage_events`). {_floor(result)} One "
        f"ledger's mean batch {one['mean_batch_ms']:.0f} ms; counting its start-up ({one['startup_seconds']:.1f} s) "
        f"{one['rate_from_spawn']:,.0f} events/s. Backfill: {back_one['rate']:,.0f} and {back_two['rate']:,.0f} "
        "events/s. Every run, in the order they ran: live ×1 "
        + _rates(one)
        + ", ×2 "
        + _rates(two)
        + "; backfill ×1 "
        + _rates(back_one)
        + ", ×2 "
        + _rates(back_two)
        + ".",
        "",
        ADAPTER_DECISION,
        "",
        f"Where the time goes (live): the single ledger used {_cores(one, 'ledger')} cores, PostgreSQL "
        f"{_cores(one, 'postgres')}, nats-server {_cores(one, 'nats')} (of {CORES}); with two replicas "
        f"{_cores(two, 'ledger')}, {_cores(two, 'postgres')} and {_cores(two, 'nats')}. In Python, parsing an event "
        f"(`parse_usage_events`, in batches of {result['batch_size']:,}) costs {pp['parse_us']:.0f} µs and pricing "
        f"it (`Pricer.price`) {pp['price_us']:.0f} µs "
        "(this process, one core); add the client CPU per event of consume + ack, of the SQL path and of `publish_all` "
        f"above for the rest of the ledger's work. {_ceiling(two)}",
    ]
    if "profile" in result:
        focus = result["profile"].get("focus", {})
        lines += [
            "",
            f"py-spy, one ledger, a separate live run ({result['profile']['rate_under_profiler']:,.0f} events/s while "
            f"sampled; share of the {result['profile']['samples']:,} samples py-spy kept, which leave out most idle "
            "time, under each function): "
            + ", ".join(f"{PROFILE_FOCUS.get(name, name)} {share:.0%}" for name, share in focus.items())
            + ".",
        ]
    if "dimensions" in result:
        lines += ["", *dimensions_markdown(result)]
    if "budgets" in result:
        lines += ["", *budgets_markdown(result)]
    return "\n".join(lines)


# Measured once, while both existed; kept here so that every run of this section still shows why it is so.
ADAPTER_DECISION = (
    "**NATS client: public calls only.** Until 2026-12-05 the ledger's hot path used private parts of nats-py "
    "(direct subscriptions, acks and publishes encoded in bulk), in one adapter module. In that day's run "
    "(commit dbb8acb, this machine), one ledger on the live backlog with the adapter recorded 23,294 events/s "
    "(34 µs of its CPU per event; runs 22,972 / 23,294 / 24,047), and the same ledger with public nats-py calls "
    "only (a plain subscription for pull replies, `Msg.ack()`, `nc.publish` per message) 21,315 events/s (41 µs; "
    "runs 21,348 / 21,315 / 20,604): 92% of the adapter's rate, above the 85% at which the adapter was not worth "
    "its private names. It was deleted; the figures above are of the public-calls ledger."
)


def _floor(result: dict[str, Any]) -> str:
    """The ledger's work, each part measured alone in this run (client and servers): no ledger doing all of it can
    pass the rate those CPU seconds allow on this machine's cores, however its parts are glued together."""
    parts = (
        (result["lean_consume"], ("client", "nats")),
        (result["store_path"], ("client", "postgres")),
        (result["publish"], ("client", "nats")),
    )
    costs = [figures["cpu_per_1000"].get(name) for figures, names in parts for name in names]
    if any(cost is None for cost in costs):
        return ""
    # CPU seconds per 1,000 events are ms per event; parse and price are µs per event.
    floor_us = 1000 * sum(cost for cost in costs if cost is not None)
    floor_us += result["parse_price"]["parse_us"] + result["parse_price"]["price_us"]
    cap = CORES / floor_us * 1e6
    slower = min(result["lean_consume"]["rate"], result["copy"]["usage_events"]["rate"])
    return (
        "The ledger's parts, each measured alone above (fetch + ack through `PullFetcher`, the SQL path with its "
        f"roll-ups, `publish_all`, parse and price), cost {floor_us:.0f} µs of CPU per event, client and servers: "
        f"on {CORES} cores no ledger made of them could pass {cap:,.0f} events/s, {cap / slower:.0%} of the slower "
        "baseline read the second way."
    )


def _ratio(result: dict[str, Any], consume: str) -> str:
    return " and ".join(f"{share:.0%}" for share in result["ratios"][consume].values())


def _rates(figures: dict[str, Any]) -> str:
    return " / ".join(f"{rate:,.0f}" for rate in figures["rates"])


def _ceiling(figures: dict[str, Any]) -> str:
    """What the CPU per event of all processes together allows on this machine's cores, however many replicas."""
    per_1000 = figures["cpu_per_1000"]
    if any(per_1000.get(name) is None for name in ("ledger", "postgres", "nats")):
        return ""
    total = sum(per_1000[name] for name in ("ledger", "postgres", "nats")) / 1000
    return (
        f"In all, {total * 1e6:.0f} µs of CPU per event (ledger, PostgreSQL and nats-server): {CORES} cores cap "
        f"ingest near {CORES / total:,.0f} events/s at that cost, however many replicas."
    )


def _cores(figures: dict[str, Any], name: str) -> str:
    value = figures["cores"].get(name)
    return "n/a" if value is None else f"{value:.2f}"


def _row(name: str, figures: dict[str, Any], first: str) -> str:
    cpu = figures["cpu_per_1000"]
    return (
        f"| {name} | {figures['rate']:,.0f} | {figures['seconds']:.2f} s | {fmt_cpu(cpu.get(first))} | "
        f"{fmt_cpu(cpu.get('postgres'))} | {fmt_cpu(cpu.get('nats'))} |"
    )
