"""Defence in depth: a probe result or a billed day stamped in the future (beyond a few minutes of clock skew) is
dead-lettered with the reason; believing it would hide every real fact after it."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import nats
import psycopg

from cg_common.billing import BilledCost
from cg_common.clock_skew import ALLOWED_SKEW
from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import BILLING
from tests.support.keys import fake_openai_key
from tests.support.probes import probe_result, publish_results
from tests.support.processes import running_ledger
from tests.support.usage import dead_letters


async def test_a_probe_result_from_the_future_is_dead_lettered_and_hides_nothing(
    api: httpx.AsyncClient, ledger_env: dict[str, str], tmp_path: Path
) -> None:
    key_id = (await api.post("/keys", json={"label": "k", "api_key": fake_openai_key()})).json()["id"]
    now = datetime.now(UTC)
    results = [
        probe_result(key_id, "forged", datetime(2999, 1, 1, tzinfo=UTC), ok=True),
        probe_result(key_id, "an-hour-ahead", now + timedelta(hours=1), ok=True),
        probe_result(key_id, "within-skew", now + ALLOWED_SKEW / 2, ok=False, outcome="timeout", http_status=None),
    ]
    with running_ledger(ledger_env, tmp_path / "ledger.log"):
        await publish_results(ledger_env["NATS_URL"], results, batch="future")
        for _ in range(300):  # until the real result is applied and both forged ones are dead-lettered
            key = next(k for k in (await api.get("/keys")).json() if k["id"] == key_id)
            if key["last_outcome"] is not None and len(await dead_letters(ledger_env["NATS_URL"])) >= 2:
                break
            await asyncio.sleep(0.1)
    assert key["last_success_at"] is None and key["last_outcome"] == "timeout"  # the real one counted
    reasons = [d["headers"]["Cg-Dlq-Reason"] for d in await dead_letters(ledger_env["NATS_URL"])]
    assert len(reasons) == 2 and all(r.startswith("probe result from the future: probed_at") for r in reasons)
    assert "2999-01-01" in reasons[0]


async def test_a_billed_day_that_has_not_begun_is_dead_lettered(ledger_env: dict[str, str], tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    costs = [
        BilledCost(
            source="//openai.com/organization/f",
            day=day,
            amount=Decimal("1.25"),
            currency="usd",
            pulled_at=datetime.now(UTC),
        )
        for day in (today, today + timedelta(days=2), date(2999, 1, 1))
    ]
    with running_ledger(ledger_env, tmp_path / "ledger.log"):
        nc = await nats.connect(ledger_env["NATS_URL"])
        try:
            await publish_all(
                nc, [Outgoing(f"{BILLING}.openai.costs", c.model_dump_json().encode(), c.msg_id()) for c in costs]
            )
        finally:
            await nc.close()
        for _ in range(100):
            dlq = await dead_letters(ledger_env["NATS_URL"])
            if len(dlq) == 2:
                break
            await asyncio.sleep(0.1)
    assert [d["headers"]["Cg-Dlq-Reason"].split(": ")[0] for d in dlq] == [
        "billed cost for a day that has not begun"
    ] * 2
    with psycopg.connect(ledger_env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT day FROM billed_costs").fetchall() == [(today,)]
