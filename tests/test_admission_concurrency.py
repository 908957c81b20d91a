"""The admission guarantee under concurrency, with real api processes: three replicas, 500 concurrent admits of 0.01
against a hard budget of 1.00 admit exactly 100, round after round, over HTTP and over NATS request-reply alike; an
api replica SIGKILLed in the middle of admitting leaves no reservation alive past its ttl."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import psycopg
import pytest

from cg_common.subjects import BUDGET_ADMIT
from tests.conftest import ADMIN_KEY
from tests.support.processes import ServiceProcess, running_api

pytestmark = pytest.mark.slow

REPLICAS = 3
REQUESTS = 500
ROUNDS = 5
SOURCE = "//gateway/prod"
REQUEST = {"source": SOURCE, "model": "gpt-4o-mini-2024-07-18", "estimated_cost": "0.01"}


@pytest.fixture
def replicas(api_env: dict[str, str], tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    with ExitStack() as stack:
        yield [stack.enter_context(running_api(api_env, tmp_path / f"api-{n}.log")) for n in range(REPLICAS)]


def budget(url: str, name: str) -> int:
    with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN_KEY}) as client:
        made = client.post(
            "/budgets",
            json={"name": name, "amount": "1.00", "period": "day", "hard": True, "scope": {"source": SOURCE}},
        )
        assert made.status_code == 201, made.text
        return int(made.json()["id"])


def live_reserved(database_url: str, budget_id: int) -> tuple[Decimal, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """SELECT coalesce((SELECT reserved FROM budget_holds WHERE budget_id = %s), 0),
                      (SELECT count(*) FROM budget_reservations WHERE ended IS NULL)""",
            (budget_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def release_all(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM end_reservations(NULL, 'released', 100000)")
        conn.execute("UPDATE budget_reservations SET expires_at = now() WHERE ended IS NULL")
        conn.execute("SELECT count(*) FROM end_reservations(NULL, 'released', 100000)")


async def test_500_concurrent_admits_over_three_replicas_admit_exactly_100(
    replicas: list[ServiceProcess], api_env: dict[str, str]
) -> None:
    budget_id = budget(replicas[0].url, "gateway")
    for round_ in range(ROUNDS):
        # Fresh connections each round: a kept-alive one the server closes as idle could meet the next request.
        clients = [
            httpx.AsyncClient(
                base_url=r.url, headers={"X-API-Key": ADMIN_KEY}, timeout=30, limits=httpx.Limits(max_connections=200)
            )
            for r in replicas
        ]
        try:
            spread = itertools.cycle(clients)
            answers = await asyncio.gather(
                *(next(spread).post("/budgets/admit", json=REQUEST) for _ in range(REQUESTS))
            )
        finally:
            for client in clients:
                await client.aclose()
        assert {a.status_code for a in answers} == {200}
        admitted = [a.json() for a in answers if a.json()["admitted"]]
        assert len(admitted) == 100, round_
        assert len({a["reservation_id"] for a in admitted}) == 100
        assert live_reserved(api_env["DATABASE_URL"], budget_id) == (Decimal("1.00"), 100)
        release_all(api_env["DATABASE_URL"])


async def test_the_nats_path_gives_the_same_answers_under_the_same_concurrency(
    replicas: list[ServiceProcess], api_env: dict[str, str]
) -> None:
    budget_id = budget(replicas[0].url, "gateway over nats")
    nc = await nats.connect(api_env["NATS_URL"])
    try:
        for round_ in range(ROUNDS):
            answers = await asyncio.gather(
                *(nc.request(BUDGET_ADMIT, orjson.dumps(REQUEST), timeout=30) for _ in range(REQUESTS))
            )
            decided = [orjson.loads(a.data) for a in answers]
            assert sum(1 for d in decided if d["admitted"]) == 100, round_
            assert all(d["remaining"] == "0" for d in decided if not d["admitted"])
            assert live_reserved(api_env["DATABASE_URL"], budget_id) == (Decimal("1.00"), 100)
            release_all(api_env["DATABASE_URL"])
    finally:
        await nc.close()


async def test_a_replica_killed_mid_admit_leaves_nothing_alive_past_the_ttl(
    api_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        running_api(api_env, tmp_path / "victim.log") as victim,
        running_api(api_env, tmp_path / "survivor.log") as survivor,
    ):
        budget_id = budget(survivor.url, "killed")

        async def admit_many(url: str) -> list[Any]:
            async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": ADMIN_KEY}, timeout=30) as client:
                body = {**REQUEST, "estimated_cost": "0.001", "ttl_secs": 2}
                return await asyncio.gather(
                    *(client.post("/budgets/admit", json=body) for _ in range(300)), return_exceptions=True
                )

        flood = asyncio.create_task(admit_many(victim.url))
        for _ in range(200):  # killed once admits are being decided, with more still in flight
            if live_reserved(api_env["DATABASE_URL"], budget_id)[1] >= 20:
                break
            await asyncio.sleep(0.01)
        victim.kill()
        answers = await flood
        assert any(isinstance(answer, httpx.HTTPError) for answer in answers)  # cut off mid-flight
        made = live_reserved(api_env["DATABASE_URL"], budget_id)
        for _ in range(100):  # the survivor's sweeper ends them within seconds of their ttl
            if live_reserved(api_env["DATABASE_URL"], budget_id) == (Decimal(0), 0):
                break
            await asyncio.sleep(0.1)
        assert live_reserved(api_env["DATABASE_URL"], budget_id) == (Decimal(0), 0), made
        with psycopg.connect(api_env["DATABASE_URL"]) as conn:
            late = conn.execute(
                "SELECT count(*) FROM budget_reservations WHERE ended_at > expires_at + interval '5 seconds'"
            ).fetchone()
        assert late == (0,)
