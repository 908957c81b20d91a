"""Admission (contract section 9) through the api and the ledger, real servers: reservations against hard budgets,
refusals, release, expiry, settlement by the usage event that names the reservation (exactly once, an overrun
reported), the same answers over `cg.budget.admit`, and clear 422s."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from nats.aio.client import Client as NATS

from cg_common.subjects import BUDGET_ADMIT
from tests.support.processes import running_ledger
from tests.support.usage import encode, usage_event
from tests.support.usage_rows import roll_up
from tests.test_ledger_exactly_once import publish

SOURCE = "//checkout/prod"
MODEL = "gpt-4o-mini-2024-07-18"


async def make_budget(api: httpx.AsyncClient, name: str, amount: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "amount": amount, "period": "day", "hard": True, **extra}
    made = await api.post("/budgets", json=body)
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


async def admit(api: httpx.AsyncClient, cost: str, **extra: Any) -> dict[str, Any]:
    answer = await api.post("/budgets/admit", json={"source": SOURCE, "model": MODEL, "estimated_cost": cost, **extra})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def current(api: httpx.AsyncClient, budget_id: int) -> dict[str, Any]:
    result: dict[str, Any] = (await api.get(f"/budgets/{budget_id}")).json()["current"]
    return result


async def test_admitted_until_the_hard_budget_is_held_then_refused_and_released(api: httpx.AsyncClient) -> None:
    hard = await make_budget(api, "checkout", "1.00", scope={"source": SOURCE})
    soft = await make_budget(api, "everything", "0.10", hard=False)
    first = await admit(api, "0.40")
    assert first["admitted"] and first["amount"] == "0.4" and uuid.UUID(first["reservation_id"])
    assert set(first) == {"admitted", "reservation_id", "amount", "expires_at"}
    assert (await admit(api, "0.40"))["admitted"]  # the soft budget, long past its amount, never refuses
    refused = await admit(api, "0.40")
    assert refused == {"admitted": False, "budget": {"id": hard["id"], "name": "checkout"}, "remaining": "0.2"}
    shown = await current(api, hard["id"])
    assert (shown["reserved"], shown["remaining"], shown["refusals"]) == ("0.8", "0.2", 1)
    assert (await current(api, soft["id"]))["reserved"] == "0"
    metrics = (await api.get("/metrics")).json()["admission"]
    assert metrics == {"refusals": 1, "overruns": 0, "live_reservations": 2}

    assert (await api.delete(f"/budgets/reservations/{first['reservation_id']}")).status_code == 204
    assert (await current(api, hard["id"]))["reserved"] == "0.4"
    assert (await api.delete(f"/budgets/reservations/{first['reservation_id']}")).status_code == 204  # no change
    assert (await current(api, hard["id"]))["reserved"] == "0.4"
    assert (await api.delete(f"/budgets/reservations/{uuid.uuid4()}")).status_code == 404
    assert (await admit(api, "0.60"))["admitted"]  # exactly what is left
    assert not (await admit(api, "0.000000000001"))["admitted"]
    elsewhere = await admit(api, "5", source="//other/prod")  # no hard budget covers it: admitted, held nowhere
    assert elsewhere["admitted"]


async def test_max_tokens_are_priced_like_an_event_of_that_model(api: httpx.AsyncClient) -> None:
    await make_budget(api, "tiny", "0.001")
    priced = await api.post(
        "/budgets/admit", json={"source": SOURCE, "model": MODEL, "max_tokens": {"input": 1000, "output": 500}}
    )
    assert priced.json()["admitted"] and Decimal(priced.json()["amount"]) == Decimal("0.00045")  # 0.15 + 0.6 per M
    too_much = await api.post(
        "/budgets/admit", json={"source": SOURCE, "model": MODEL, "max_tokens": {"input": 1000, "output": 1000}}
    )
    assert too_much.json() == {"admitted": False, "budget": {"id": 1, "name": "tiny"}, "remaining": "0.00055"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"source": SOURCE, "model": MODEL}, "estimated_cost or max_tokens"),
        ({"source": SOURCE, "model": MODEL, "estimated_cost": "1", "max_tokens": {"input": 1}}, "one of them"),
        ({"source": SOURCE, "model": MODEL, "estimated_cost": 0.5}, "decimal string"),
        ({"source": SOURCE, "model": MODEL, "estimated_cost": "-1"}, "positive"),
        ({"source": SOURCE, "model": MODEL, "estimated_cost": "1", "ttl_secs": 0}, "greater than or equal to 1"),
        ({"source": SOURCE, "model": "no-such-model-9", "max_tokens": {"input": 10}}, "no price is known"),
        (
            {"source": SOURCE, "model": MODEL, "estimated_cost": "1", "key_id": 1, "key_fingerprint": "0" * 16},
            "not both",
        ),
        ({"model": MODEL, "estimated_cost": "1"}, "Field required"),
    ],
)
async def test_bad_requests_are_422s_that_say_why(api: httpx.AsyncClient, body: dict[str, Any], says: str) -> None:
    answer = await api.post("/budgets/admit", json=body)
    assert answer.status_code == 422, answer.text
    assert says in answer.text
    assert (await api.delete("/budgets/reservations/not-a-uuid")).status_code == 422


async def test_an_unsettled_reservation_expires_within_seconds_of_its_ttl(api: httpx.AsyncClient) -> None:
    budget = await make_budget(api, "short", "1.00")
    held = await admit(api, "0.9", ttl_secs=1)
    assert not (await admit(api, "0.2"))["admitted"]
    for _ in range(60):
        if (await current(api, budget["id"]))["reserved"] == "0":
            break
        await asyncio.sleep(0.1)
    assert (await current(api, budget["id"]))["reserved"] == "0"
    assert (await admit(api, "0.2"))["admitted"]
    assert (await api.delete(f"/budgets/reservations/{held['reservation_id']}")).status_code == 204  # ended already


async def test_the_usage_event_naming_a_reservation_settles_it_once(
    api: httpx.AsyncClient, ledger_env: dict[str, str], tmp_path: Path
) -> None:
    await roll_up(ledger_env["DATABASE_URL"])
    budget = await make_budget(api, "checkout", "1.00", scope={"source": SOURCE})
    within = await admit(api, "0.5")
    over = await admit(api, "0.0001")
    events = [
        usage_event(source=SOURCE, event_id="call-1", model=MODEL, reservation_id=within["reservation_id"]),
        usage_event(
            source=SOURCE, event_id="call-2", model=MODEL, input_tokens=10_000, reservation_id=over["reservation_id"]
        ),
    ]
    cost_1 = Decimal("0.00036")  # 1,200 input and 300 output tokens at 0.15 and 0.6 per million
    cost_2 = Decimal("0.00168")  # 10,000 and 300
    with running_ledger(ledger_env, tmp_path / "ledger.log"):
        await publish(ledger_env["NATS_URL"], [*events, events[0]])  # a re-send, too
        for _ in range(100):
            shown = await current(api, budget["id"])
            if shown["reserved"] == "0":
                break
            await asyncio.sleep(0.1)
    assert Decimal(shown["spent"]) == cost_1 + cost_2
    assert (shown["reserved"], Decimal(shown["overrun"])) == ("0", cost_2 - Decimal("0.0001"))
    with psycopg.connect(ledger_env["DATABASE_URL"]) as conn:
        ended = conn.execute(
            "SELECT id::text, ended, settled_cost, settled_by FROM budget_reservations ORDER BY settled_by"
        ).fetchall()
    assert ended == [
        (within["reservation_id"], "settled", cost_1, f"{SOURCE} call-1"),
        (over["reservation_id"], "settled", cost_2, f"{SOURCE} call-2"),
    ]
    assert (await api.delete(f"/budgets/reservations/{within['reservation_id']}")).status_code == 409


async def test_the_same_answers_over_nats(api: httpx.AsyncClient, nc: NATS) -> None:
    hard = await make_budget(api, "checkout", "1.00", scope={"source": SOURCE})

    async def ask(body: dict[str, Any]) -> dict[str, Any]:
        answer = await nc.request(BUDGET_ADMIT, encode(body), timeout=5)
        result: dict[str, Any] = orjson.loads(answer.data)
        return result

    admitted = await ask({"source": SOURCE, "model": MODEL, "estimated_cost": "0.75"})
    assert admitted["admitted"] and admitted["amount"] == "0.75"
    refused = await ask({"source": SOURCE, "model": MODEL, "estimated_cost": "0.5"})
    assert refused == {"admitted": False, "budget": {"id": hard["id"], "name": "checkout"}, "remaining": "0.25"}
    bad = await ask({"source": SOURCE, "model": MODEL})
    assert bad["status"] == 422 and "estimated_cost or max_tokens" in str(bad["detail"])
    assert (await current(api, hard["id"]))["reserved"] == "0.75"
