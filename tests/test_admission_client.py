"""The admission client helper (cg_common.admission_client) as docs/admission.md uses it: a call made with the
official `openai` SDK (against the fake OpenAI) inside `reserved(...)`, reported with `report_openai`, settles its
reservation through the ledger; a call that fails releases it; a refusal raises; and when Cost Guardian cannot be
reached the caller's choice decides: fail closed or fail open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import psycopg
import pytest

from cg_common.admission_client import AdmissionClient, AdmissionError
from tests.fake_openai import fake_key, running_fake_openai
from tests.support.processes import free_port, running_ledger
from tests.support.usage_rows import roll_up

SOURCE = "//checkout/prod"


@pytest.fixture
async def guard(api: httpx.AsyncClient) -> AsyncIterator[AdmissionClient]:
    made = await api.post("/tokens", json={"name": "checkout", "scopes": ["admit", "ingest"], "sources": [SOURCE]})
    token = made.json()["token"]
    # The in-process api, reached as a deployed one would be: the helper's own httpx client, its own credential.
    http = httpx.AsyncClient(transport=api._transport, base_url="http://api.test")
    client = AdmissionClient("http://api.test", token, source=SOURCE, client=http)
    yield client
    await client.aclose()


async def test_an_openai_call_guarded_reported_and_settled(
    api: httpx.AsyncClient, guard: AdmissionClient, ledger_env: dict[str, str], tmp_path: Path
) -> None:
    await roll_up(ledger_env["DATABASE_URL"])
    budget = (
        await api.post(
            "/budgets",
            json={"name": "checkout", "amount": "1.00", "period": "day", "hard": True, "scope": {"source": SOURCE}},
        )
    ).json()
    with running_fake_openai() as fake, running_ledger(ledger_env, tmp_path / "ledger.log"):
        llm = openai.AsyncOpenAI(api_key=fake_key(), base_url=fake.base_url)
        async with guard.reserved(model="gpt-4o-mini", max_tokens={"input": 2000, "output": 500}) as reservation:
            response = await llm.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=500
            )
            await guard.report_openai(reservation, response)
        assert reservation.id is not None and reservation.amount == Decimal("0.0006")  # 2,000 in, 500 out

        with pytest.raises(openai.NotFoundError):  # the call fails: the reservation is released, not left to expire
            async with guard.reserved(model="gpt-4o-mini", estimated_cost="0.5") as failed:
                await llm.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        await llm.close()
        for _ in range(100):
            current = (await api.get(f"/budgets/{budget['id']}")).json()["current"]
            if current["reserved"] == "0" and current["spent"] != "0":
                break
            await asyncio.sleep(0.1)
    assert current["reserved"] == "0" and Decimal(current["spent"]) > 0
    with psycopg.connect(ledger_env["DATABASE_URL"]) as conn:
        ended: dict[str, str] = dict(conn.execute("SELECT id::text, ended FROM budget_reservations").fetchall())
    assert ended == {reservation.id: "settled", failed.id: "released"}

    with pytest.raises(AdmissionError) as refused:
        await guard.admit(model="gpt-4o-mini", estimated_cost="2")
    assert refused.value.budget == {"id": budget["id"], "name": "checkout"}


async def test_unreachable_fails_closed_or_open_as_the_caller_chose() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    closed = AdmissionClient(nowhere, "token", source=SOURCE, unreachable="closed", timeout_secs=0.5)
    with pytest.raises(AdmissionError, match="failing closed"):
        await closed.admit(model="gpt-4o-mini", estimated_cost="0.01")
    await closed.aclose()
    opened = AdmissionClient(nowhere, "token", source=SOURCE, unreachable="open", timeout_secs=0.5)
    reservation = await opened.admit(model="gpt-4o-mini", estimated_cost="0.01")
    assert reservation.id is None
    await opened.release(reservation)  # nothing to release: no error
    await opened.aclose()
