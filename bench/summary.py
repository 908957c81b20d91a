"""`GET /usage/summary` and `GET /data` over 10 million stored usage events.

usage_events is filled inside PostgreSQL (generate_series, two sessions in parallel) with 90 days of usage from 20
keys, 8 models and 30 sources, priced; its indexes are rebuilt afterwards and both roll-ups are built from it with
the same buckets the ledger keeps (`date_trunc('hour', occurred_at, 'UTC')`, `(occurred_at AT TIME ZONE 'UTC')::date`);
then VACUUM ANALYZE, as autovacuum would leave the table. `cg-api serve` then answers sequential requests on the
loopback, timed by the client; ranges are not aligned to hours, so every summary reads all three tiers (days from the
daily roll-up, hours from the hourly one, the partial hours at both edges from usage_events).
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from bench.support import drop_database, fake_keys, fresh_database, percentiles, say, store_keys
from cg_api.summary_repo import summarize
from cg_devstack.servers import Stack
from tests.support.processes import running_api

NAME = "summary"
ROWS = 10_000_000
DAYS = 90
KEYS = 20
SOURCES = 30
UNATTRIBUTED_SOURCES = 3  # the last sources report no stored key
# (model, USD per input token, per cached input token, per output token); None: unknown to the price data.
MODELS: tuple[tuple[str, Decimal | None, Decimal | None, Decimal | None], ...] = (
    ("gpt-4o-mini-2024-07-18", Decimal("0.15e-6"), Decimal("0.075e-6"), Decimal("0.6e-6")),
    ("gpt-4o-2024-08-06", Decimal("2.5e-6"), Decimal("1.25e-6"), Decimal("10e-6")),
    ("gpt-4.1", Decimal("2e-6"), Decimal("0.5e-6"), Decimal("8e-6")),
    ("gpt-4.1-mini", Decimal("0.4e-6"), Decimal("0.1e-6"), Decimal("1.6e-6")),
    ("gpt-4.1-nano", Decimal("0.1e-6"), Decimal("0.025e-6"), Decimal("0.4e-6")),
    ("o3-mini", Decimal("1.1e-6"), Decimal("0.55e-6"), Decimal("4.4e-6")),
    ("gpt-3.5-turbo", Decimal("0.5e-6"), Decimal("0.5e-6"), Decimal("1.5e-6")),
    ("ft:gpt-4o-mini:acme::bench", None, None, None),  # 1% of events: stored unpriced, as the ledger does
)
GROUPS = ("model", "key", "source", "day")
REQUESTS = 200
WARMUP = 20
PAGE_REQUESTS = 50
SQL_REQUESTS = 50
DEEP_PAGE = 50
SUMMARY_DAYS = 30
# Both ends of every range sit this far before a whole hour, minus the request's number in seconds.
EDGE_OFFSET = timedelta(minutes=17, seconds=23)
MIN_FREE_BYTES = 15 * 1024**3

FILL = """
INSERT INTO usage_events (source, event_id, occurred_at, recorded_at, provider, model, key_id, key_fingerprint,
                          input_tokens, cached_input_tokens, output_tokens, requests, cost, price_source, attributes)
SELECT '//service-' || r.s || '/prod', 'evt-' || r.g, r.at, r.at + interval '2 seconds', 'openai', m.model,
       k.key_id, k.fingerprint, r.input, r.cached, r.output, 1,
       CASE WHEN m.priced THEN (r.input - r.cached) * m.per_input + r.cached * m.per_cached + r.output * m.per_output
       END,
       CASE WHEN m.priced THEN 'bench openai/' || m.model END,
       jsonb_build_object('team', 'team-' || mod(r.s, 7))
FROM (
    SELECT g, s, m, input, floor(input * cached_share)::bigint AS cached, output,
           %(start)s::timestamptz + (g + jitter) * %(step)s * interval '1 second' AS at
    FROM (
        SELECT g, random() AS jitter, floor(random() * %(sources)s)::int AS s,
               CASE WHEN random() < 0.01 THEN %(unpriced_model)s ELSE floor(random() * %(priced_models)s)::int END AS m,
               floor(random() * 8000)::bigint AS input, random() * 0.5 AS cached_share,
               floor(random() * 1500)::bigint AS output
        FROM generate_series(%(first)s::bigint, %(last)s::bigint, %(stride)s::bigint) AS g
    ) AS drawn
) AS r
JOIN unnest(%(model_ix)s::int[], %(model_names)s::text[], %(priced)s::bool[], %(per_input)s::numeric[],
            %(per_cached)s::numeric[], %(per_output)s::numeric[])
     AS m(ix, model, priced, per_input, per_cached, per_output) ON m.ix = r.m
LEFT JOIN unnest(%(key_sources)s::int[], %(key_ids)s::bigint[], %(key_fps)s::text[])
     AS k(s, key_id, fingerprint) ON k.s = r.s
"""

ROLLUP = """
INSERT INTO {table} (bucket, key_id, source, provider, model, events, requests, input_tokens, cached_input_tokens,
                     output_tokens, cost, unpriced_events)
SELECT {bucket}, key_id, source, provider, model, count(*), sum(requests), sum(input_tokens), sum(cached_input_tokens),
       sum(output_tokens), coalesce(sum(cost), 0), count(*) FILTER (WHERE cost IS NULL)
FROM usage_events GROUP BY 1, 2, 3, 4, 5
"""
ROLLUPS = {
    "usage_rollup_hourly": "date_trunc('hour', occurred_at, 'UTC')",
    "usage_rollup_daily": "(occurred_at AT TIME ZONE 'UTC')::date",
}
SESSION = ("SET synchronous_commit = off", "SET maintenance_work_mem = '1GB'", "SET work_mem = '256MB'")


def check_disk(path: Path) -> None:
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise SystemExit(
            f"the summary benchmark stores 10 million rows (several GB) under {path}, which has only "
            f"{free / 1024**3:.1f} GiB free; it needs {MIN_FREE_BYTES / 1024**3:.0f} GiB"
        )


def run(stack: Stack, work_dir: Path, env_for: Callable[[str], dict[str, str]]) -> dict[str, Any]:
    say(NAME, f"disk free under {work_dir}: {shutil.disk_usage(work_dir).free / 1024**3:.1f} GiB")
    database_url = fresh_database(stack.database_url)
    try:
        env = env_for(database_url)
        # One key more than the sources report: stored, never used, as a key added today is.
        keys = store_keys(database_url, env["MASTER_KEY"], fake_keys(KEYS + 1))
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        result: dict[str, Any] = {"rows": ROWS, "days": DAYS, "fill": fill(database_url, keys[:KEYS], end)}
        result["sizes"] = _sizes(database_url)
        say(NAME, f"sizes: {result['sizes']}")
        api_env = {**env, "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "warning"}
        with (
            running_api(api_env, work_dir / "api-summary.log") as api,
            httpx.Client(base_url=api.url, headers={"X-API-Key": env["API_KEY"]}, timeout=60) as client,
        ):
            until = end - EDGE_OFFSET
            result["check"] = _check_exact(client, database_url, until - timedelta(days=SUMMARY_DAYS), until)
            result["summary"] = {group: _time_summary(client, group, until) for group in GROUPS}
            for group in GROUPS:
                result["summary"][group]["sql_p50"] = asyncio.run(_time_sql(database_url, group, until))
            result["data"] = _time_pages(client)
            result["filtered"] = _time_filtered(client, busy_key=keys[0].id, idle_key=keys[KEYS].id)
    finally:
        drop_database(stack.database_url, database_url)
    return result


def fill(database_url: str, keys: Sequence[Any], end: datetime) -> dict[str, float]:
    """10 million rows in two parallel sessions (odd and even numbers, so both advance through time together and
    the table stays in time order, as the ledger writes it), then indexes and roll-ups, then VACUUM ANALYZE."""
    start = end - timedelta(days=DAYS)
    priced = [m for m in MODELS if m[1] is not None]
    params_common: dict[str, Any] = {
        "start": start,
        "step": DAYS * 86_400 / ROWS,
        "sources": SOURCES,
        "priced_models": len(priced),
        "unpriced_model": len(MODELS) - 1,
        "model_ix": list(range(len(MODELS))),
        "model_names": [m[0] for m in MODELS],
        "priced": [m[1] is not None for m in MODELS],
        "per_input": [m[1] for m in MODELS],
        "per_cached": [m[2] for m in MODELS],
        "per_output": [m[3] for m in MODELS],
        # Each source reports one stored key (20 keys over 27 sources); the last ones report a key we do not hold.
        "key_sources": list(range(SOURCES)),
        "key_ids": [keys[s % len(keys)].id if s < SOURCES - UNATTRIBUTED_SOURCES else None for s in range(SOURCES)],
        "key_fps": [
            keys[s % len(keys)].fingerprint if s < SOURCES - UNATTRIBUTED_SOURCES else f"{s:016x}"
            for s in range(SOURCES)
        ],
        "last": ROWS - 1,
        "stride": 2,
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        indexes = conn.execute(
            """SELECT indexname, indexdef FROM pg_indexes
               WHERE schemaname = 'public' AND tablename = 'usage_events' AND indexname <> 'usage_events_pkey'"""
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
    times: dict[str, float] = {}
    started = time.perf_counter()
    say(NAME, f"filling usage_events with {ROWS:,} rows over {DAYS} days (two sessions)")
    _parallel(
        database_url,
        [
            (f"SELECT setseed({seed})", FILL, {**params_common, "first": first})
            for seed, first in ((0.25, 0), (0.75, 1))
        ],
    )
    times["insert_secs"] = time.perf_counter() - started
    say(NAME, f"rows inserted in {times['insert_secs']:.0f} s; building indexes and roll-ups")
    phase = time.perf_counter()
    jobs: list[Job] = [(None, str(definition), {}) for _, definition in indexes]
    jobs += [(None, ROLLUP.format(table=table, bucket=bucket), {}) for table, bucket in ROLLUPS.items()]
    _parallel(database_url, jobs)
    times["indexes_and_rollups_secs"] = time.perf_counter() - phase
    say(NAME, f"indexes and roll-ups built in {times['indexes_and_rollups_secs']:.0f} s; VACUUM ANALYZE")
    phase = time.perf_counter()
    vacuum = ["VACUUM (ANALYZE) usage_events", "VACUUM (ANALYZE) usage_rollup_hourly"]
    vacuum += ["VACUUM (ANALYZE) usage_rollup_daily", "ANALYZE api_keys"]
    _parallel(database_url, [(None, statement, {}) for statement in vacuum])
    times["vacuum_analyze_secs"] = time.perf_counter() - phase
    times["total_secs"] = time.perf_counter() - started
    say(NAME, f"filled in {times['total_secs']:.0f} s")
    return times


Job = tuple[str | None, str, dict[str, Any]]


def _parallel(database_url: str, jobs: Sequence[Job]) -> None:
    """Each job (optional set-up statement, statement, parameters) in its own session, two at a time."""

    def one(job: Job) -> None:
        setup, statement, params = job
        with psycopg.connect(database_url, autocommit=True) as conn:
            for setting in SESSION:
                conn.execute(setting)
            conn.execute("SET max_parallel_maintenance_workers = 0")  # two jobs at once already fill both cores
            if setup:
                conn.execute(setup)
            conn.execute(statement, params or None)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()


def _sizes(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT pg_total_relation_size('usage_events'), pg_relation_size('usage_events'),
                      pg_indexes_size('usage_events'), (SELECT count(*) FROM usage_events)"""
        ).fetchone()
        assert row is not None
        indexes = conn.execute(
            """SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index
               WHERE indrelid = 'usage_events'::regclass ORDER BY 2 DESC"""
        ).fetchall()
        rollups = {}
        for table in ROLLUPS:
            counted = conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}"  # noqa: S608 - constant names
            ).fetchone()
            assert counted is not None
            rollups[table] = {"rows": int(counted[0]), "total_bytes": int(counted[1])}
    total, heap, index_bytes, count = (int(v) for v in row)
    if count != ROWS:
        raise RuntimeError(f"usage_events holds {count} rows, expected {ROWS}")
    return {
        "total_bytes": total,
        "heap_bytes": heap,
        "indexes_bytes": index_bytes,
        "index_bytes": {name: int(size) for name, size in indexes},
        "rollups": rollups,
    }


def _check_exact(client: httpx.Client, database_url: str, since: datetime, until: datetime) -> dict[str, Any]:
    """The summary (three tiers) must equal a plain scan of usage_events over the same range."""
    response = client.get("/usage/summary", params={"group_by": "model", "since": _iso(since), "until": _iso(until)})
    response.raise_for_status()
    totals = response.json()["totals"]
    with psycopg.connect(database_url) as conn:
        started = time.perf_counter()
        row = conn.execute(
            """SELECT count(*), coalesce(sum(cost), 0), sum(input_tokens), count(*) FILTER (WHERE cost IS NULL)
               FROM usage_events WHERE occurred_at >= %s AND occurred_at < %s""",
            (since, until),
        ).fetchone()
        scan_ms = (time.perf_counter() - started) * 1000
    assert row is not None
    events, cost, input_tokens, unpriced = row
    api = (totals["events"], Decimal(str(totals["cost"])), totals["input_tokens"], totals["unpriced_events"])
    if api != (events, cost, input_tokens, unpriced):
        raise RuntimeError(f"summary {api} differs from a scan of usage_events {row}")
    say(NAME, f"summary equals a scan of usage_events ({events:,} events; the scan took {scan_ms:.0f} ms)")
    return {"events": int(events), "scan_ms": scan_ms}


def _time_summary(client: httpx.Client, group_by: str, until: datetime) -> dict[str, Any]:
    samples = []
    server_timing = []
    groups = 0
    for n in range(-WARMUP, REQUESTS):
        end = until - timedelta(seconds=max(n, 0))
        params = {"group_by": group_by, "since": _iso(end - timedelta(days=SUMMARY_DAYS)), "until": _iso(end)}
        started = time.perf_counter()
        response = client.get("/usage/summary", params=params)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        if n >= 0:
            samples.append(elapsed)
            groups = len(response.json()["groups"])
            if "server-timing" in response.headers:
                server_timing.append(response.headers["server-timing"])
    figures = percentiles(samples)
    say(NAME, f"group_by={group_by}: p50 {figures['p50']:.1f} ms, p95 {figures['p95']:.1f} ms ({groups} groups)")
    return {**figures, "groups": groups, "server_timing": server_timing[:1]}


async def _time_sql(database_url: str, group_by: str, until: datetime) -> float:
    """p50 of the summary's SQL alone (`summary_repo.summarize` on a direct connection): the api's share is the rest."""
    samples = []
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        for n in range(-WARMUP, SQL_REQUESTS):
            end = until - timedelta(seconds=max(n, 0))
            started = time.perf_counter()
            await summarize(conn, since=end - timedelta(days=SUMMARY_DAYS), until=end, group_by=(group_by,))
            if n >= 0:
                samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _time_pages(client: httpx.Client) -> dict[str, Any]:
    def page(cursor: str | None) -> tuple[float, str | None]:
        started = time.perf_counter()
        response = client.get("/data", params={"cursor": cursor} if cursor else {})
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        next_cursor: str | None = response.json()["next_cursor"]
        return elapsed, next_cursor

    cursor: str | None = None
    for _ in range(DEEP_PAGE - 1):  # follow the cursors to the 50th page
        _, cursor = page(cursor)
    assert cursor is not None
    deep = cursor
    first = [page(None)[0] for _ in range(PAGE_REQUESTS)]
    deep_samples = [page(deep)[0] for _ in range(PAGE_REQUESTS)]
    result = {"first": percentiles(first), "deep": percentiles(deep_samples)}
    say(NAME, f"/data first page p50 {result['first']['p50']:.1f} ms, page {DEEP_PAGE} p50 {result['deep']['p50']:.1f}")
    return result


def _time_filtered(client: httpx.Client, *, busy_key: int, idle_key: int) -> list[dict[str, Any]]:
    """First pages of `GET /data` with one filter: a key with usage, a stored key without any, the model with 1% of
    the events, and a model with none (through the time index alone, a read of all 90 days)."""
    cases: list[tuple[str, str, str | int, int]] = [
        ("key_id", "a key with usage", busy_key, PAGE_REQUESTS),
        ("key_id", "a stored key without usage", idle_key, PAGE_REQUESTS),
        ("model", "the model with 1% of the events", MODELS[-1][0], PAGE_REQUESTS),
        ("model", "a model without usage", "no-such-model", PAGE_REQUESTS),
    ]
    timed: list[dict[str, Any]] = []
    for name, label, value, requests in cases:
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get("/data", params={name: value})
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        rows = len(response.json()["items"])
        timed.append({"filter": name, "label": label, "rows": rows, "requests": requests, **percentiles(samples)})
        say(NAME, f"/data?{name}= {label}: {rows} rows, p50 {timed[-1]['p50']:.1f} ms")
    return timed


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def markdown(result: dict[str, Any]) -> str:
    fill, sizes = result["fill"], result["sizes"]
    millions = result["rows"] / 1_000_000
    hourly, daily = sizes["rollups"]["usage_rollup_hourly"], sizes["rollups"]["usage_rollup_daily"]
    lines = [
        f"{result['rows']:,} usage events over {DAYS} days ({KEYS} stored keys, {len(MODELS)} models of which one "
        f"unpriced, {SOURCES} sources), generated inside PostgreSQL; roll-ups built from them as the ledger keeps "
        f"them; VACUUM ANALYZE. One `cg-api serve` process (rate limiter off), {REQUESTS} sequential requests per "
        f"grouping after {WARMUP} warm-up ones, timed by an httpx client on the loopback (the api sends no "
        "`Server-Timing`), on the same cores as PostgreSQL. Each summary covers the last "
        f"{SUMMARY_DAYS} days with both ends {EDGE_OFFSET.seconds // 60} min {EDGE_OFFSET.seconds % 60} s off the "
        "hour, so it reads the daily roll-up, the hourly one and usage_events' partial hours at both edges; its "
        f"totals were checked equal to a plain scan of usage_events over the same range ({result['check']['events']:,}"
        f" events; that scan alone took {result['check']['scan_ms']:,.0f} ms, the baseline the roll-ups avoid).",
        "",
        "| request | p50 | p95 | p99 | max | groups | its SQL alone, p50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for group in GROUPS:
        s = result["summary"][group]
        lines.append(
            f"| `GET /usage/summary?group_by={group}` | {s['p50']:.1f} ms | **{s['p95']:.1f} ms** | {s['p99']:.1f} ms "
            f"| {s['max']:.1f} ms | {s['groups']} | {s['sql_p50']:.1f} ms |"
        )
    for label, key in (("first page", "first"), (f"page {DEEP_PAGE} (cursor)", "deep")):
        d = result["data"][key]
        lines.append(
            f"| `GET /data` {label}, 100 rows | {d['p50']:.1f} ms | {d['p95']:.1f} ms | {d['p99']:.1f} ms "
            f"| {d['max']:.1f} ms | | |"
        )
    for case in result.get("filtered", []):
        lines.append(
            f"| `GET /data?{case['filter']}=…` {case['label']}, first page ({case['rows']} rows) | "
            f"{case['p50']:.1f} ms | {case['p95']:.1f} ms | {case['p99']:.1f} ms | {case['max']:.1f} ms | | |"
        )
    worst = max(result["summary"][g]["p95"] for g in GROUPS)
    lines += [
        "",
        f"Target p95 < 100 ms: worst p95 **{worst:.1f} ms**. `GET /data` figures are over {PAGE_REQUESTS} requests. "
        "A key's pages come through its own index "
        "(`usage_events_key`); for a model, source or provider the hourly roll-up names the hours holding matching "
        "rows (through an index per column) and only those hours of `usage_events` are read. "
        f'"Its SQL alone": `summary_repo.summarize` called {SQL_REQUESTS} times on a direct connection, the same '
        "ranges; the rest of a request's time is the api (HTTP, auth, validation, JSON).",
        "",
        f"Fill: {fill['total_secs']:.0f} s ({fill['insert_secs']:.0f} s inserting, "
        f"{fill['indexes_and_rollups_secs']:.0f} s indexes and roll-ups, {fill['vacuum_analyze_secs']:.0f} s "
        "VACUUM ANALYZE).",
        "",
        "| relation | size | per million events |",
        "| --- | ---: | ---: |",
        _size_row("usage_events, all (pg_total_relation_size)", sizes["total_bytes"], millions),
        _size_row("usage_events heap (pg_relation_size)", sizes["heap_bytes"], millions),
        _size_row("usage_events indexes (pg_indexes_size)", sizes["indexes_bytes"], millions),
        *(_size_row(f"… {name}", size, millions) for name, size in sizes["index_bytes"].items()),
        _size_row(f"usage_rollup_hourly ({hourly['rows']:,} rows)", hourly["total_bytes"], millions),
        _size_row(f"usage_rollup_daily ({daily['rows']:,} rows)", daily["total_bytes"], millions),
    ]
    return "\n".join(lines)


def _size_row(name: str, size: int, millions: float) -> str:
    return f"| {name} | {size / 1024**2:,.0f} MiB | {size / millions / 1024**2:,.1f} MiB |"
