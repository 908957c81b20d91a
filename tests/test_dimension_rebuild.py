"""Changing DIMENSIONS on a running deployment: the ledger started with a new dimension sums its history from the
stored usage by itself, while events keep arriving, and every event counts exactly once; `cg-ledger rebuild-rollups`
does it on demand; a dimension taken out of DIMENSIONS is refused by the api."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from tests.support.nats_users import env_as
from tests.support.processes import running_ledger, script
from tests.support.usage import count_rows, encode, publish_mixed, usage_event, wait_until

DAY0 = datetime(2026, 10, 1, tzinfo=UTC)
REGIONS = ("eu", "us", "apac")


def events(batch: str, count: int) -> list[bytes]:
    """Usage spread over ten days, every event with a team and most with a region."""
    return [
        encode(
            usage_event(
                source=f"//svc/{batch}",
                event_id=f"{batch}-{n}",
                input_tokens=100 + n,
                time_=DAY0 + timedelta(minutes=97 * n),
                attributes={"team": f"t{n % 3}", **({"region": REGIONS[n % 3]} if n % 4 else {})},
            )
        )
        for n in range(count)
    ]


def by_region_from_records(database_url: str) -> dict[str | None, tuple[int, int, Decimal]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT attributes ->> 'region', count(*), sum(input_tokens), coalesce(sum(cost), 0)
               FROM usage_events GROUP BY 1"""
        ).fetchall()
    return {region: (int(events), int(tokens), Decimal(cost)) for region, events, tokens, cost in rows}


async def by_region_from_api(api: httpx.AsyncClient) -> dict[str | None, tuple[int, int, Decimal]]:
    response = await api.get(
        "/usage/summary",
        params={"group_by": "attributes.region", "since": DAY0.isoformat(), "until": "2027-01-01T00:00:00Z"},
    )
    assert response.status_code == 200, response.text
    return {g["group"]: (g["events"], g["input_tokens"], Decimal(g["cost"])) for g in response.json()["groups"]}


async def complete(api: httpx.AsyncClient) -> dict[str, bool]:
    return {g["name"]: g["complete"] for g in (await api.get("/usage/dimensions")).json()["groupings"]}


def run_rebuild(env: dict[str, str], *names: str) -> subprocess.CompletedProcess[str]:
    """`cg-ledger rebuild-rollups` with these settings, as an operator runs it."""
    return subprocess.run(
        [*script("cg-ledger"), "rebuild-rollups", *names],
        env={"PATH": "/usr/bin:/bin", **env_as(env, "ledger")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rebuild_rollups(env: dict[str, str], *names: str) -> str:
    done = run_rebuild(env, *names)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_new_dimension_gets_its_whole_history_while_usage_keeps_arriving(
    api: httpx.AsyncClient, ledger_env: dict[str, str], tmp_path: Path
) -> None:
    url = ledger_env["DATABASE_URL"]
    before = {**ledger_env, "DIMENSIONS": "team", "DIMENSION_PAIRS": ""}
    with running_ledger(before, tmp_path / "before.log"):
        await publish_mixed(ledger_env["NATS_URL"], events("old", 400), "old")
        await asyncio.to_thread(wait_until, lambda: count_rows(url) == 400, timeout=30, message="not recorded")
    assert await complete(api) == {"attributes.team": True}
    region = await api.get("/usage/summary", params={"group_by": "attributes.region"})
    assert region.status_code == 422
    assert "'region' is not a dimension" in region.text

    after = {**ledger_env, "DIMENSIONS": "team,region", "DIMENSION_PAIRS": "attributes.region+model"}
    with running_ledger(after, tmp_path / "after.log") as ledger:
        await publish_mixed(ledger_env["NATS_URL"], events("new", 400), "new")  # while the history is summed
        await asyncio.to_thread(wait_until, lambda: count_rows(url) == 800, timeout=30, message="not recorded")
        for _ in range(200):
            if all((await complete(api)).values()):
                break
            await asyncio.sleep(0.1)
        assert await complete(api) == {
            "attributes.region": True,
            "attributes.region+model": True,
            "attributes.team": True,
        }, ledger.log_text()
        assert await by_region_from_api(api) == by_region_from_records(url)
        assert "dimension roll-ups rebuilt from the stored usage" in ledger.log_text()

    assert await by_region_from_api(api) == by_region_from_records(url)  # the last batches folded on the way out
    with psycopg.connect(url) as conn:  # and read from the roll-ups themselves, not only from the records
        rolled = conn.execute(
            """SELECT sum(events) FROM (SELECT events FROM usage_rollup_dimension_daily WHERE grouping = %s
                                        UNION ALL SELECT events FROM usage_rollup_dimension_pending WHERE grouping = %s
                                       ) AS parts""",
            ("attributes.region", "attributes.region"),
        ).fetchone()
    assert rolled is not None and rolled[0] == 800

    assert "rebuilt 3 groupings" in rebuild_rollups(after)
    assert await by_region_from_api(api) == by_region_from_records(url)
    assert "rebuilt 1 groupings: attributes.region" in rebuild_rollups(after, "attributes.region")

    printed = rebuild_rollups(before)  # region taken out again: no longer rolled up, and refused by the api
    assert "no longer rolled up: attributes.region, attributes.region+model" in printed
    assert (await api.get("/usage/summary", params={"group_by": "attributes.region"})).status_code == 422


async def test_rebuilding_an_unknown_grouping_says_so(api: httpx.AsyncClient, ledger_env: dict[str, str]) -> None:
    done = run_rebuild(ledger_env, "attributes.nowhere")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "not a rolled-up grouping: attributes.nowhere (DIMENSIONS and DIMENSION_PAIRS say which)"
    )
