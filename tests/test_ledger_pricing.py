"""Prices through the whole ledger: exact against genai-prices, unknown models kept and later repriced."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import psycopg
from genai_prices import Usage, calc_price

from cg_common.db import open_pool
from cg_common.pricing import Pricer
from cg_common.subjects import COST_STREAM
from cg_ledger.reprice import reprice
from tests.support.prices import CUSTOM, prices_from
from tests.support.processes import running_ledger, script
from tests.support.usage import count_rows, encode, publish_mixed, usage_event, wait_until
from tests.support.usage_rows import rollup_totals

WHEN = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
KNOWN = [
    ("gpt-4o-mini-2024-07-18", 12_000, 8_000, 900),
    ("gpt-4o", 3_000, 0, 1_500),
    ("gpt-4.1-mini", 50_000, 49_000, 10),
    ("o3-mini", 700, 100, 20_000),
    ("gpt-3.5-turbo", 4_000, 1_000, 400),
]


def reference(model: str, input_tokens: int, cached: int, output: int, at: datetime = WHEN) -> Decimal:
    usage = Usage(input_tokens=input_tokens, cache_read_tokens=cached, output_tokens=output)
    return calc_price(usage, model, provider_id="openai", genai_request_timestamp=at).total_price


async def cost_messages(nats_url: str) -> list[dict[str, Any]]:
    """Every cg.cost.recorded message, as subscribers read it."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(COST_STREAM.name)).state
        raw = [await js.get_msg(COST_STREAM.name, seq) for seq in range(state.first_seq, state.last_seq + 1)]
        return [json.loads(m.data or b"") for m in raw]
    finally:
        await nc.close()


def stored(database_url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT event_id, cost, price_source FROM usage_events").fetchall()
    return {r[0]: {"cost": r[1], "price_source": r[2]} for r in rows}


def rollup_cost(database_url: str) -> tuple[Decimal, int, Decimal, int]:
    with psycopg.connect(database_url) as conn:
        hourly = rollup_totals(conn, "usage_rollup_hourly", ("cost", "unpriced_events"))
        daily = rollup_totals(conn, "usage_rollup_daily", ("cost", "unpriced_events"))
    return hourly[0], hourly[1], daily[0], daily[1]


def test_costs_equal_genai_prices_and_unknown_models_wait_for_reprice(
    ledger_env: dict[str, str], tmp_path: Path
) -> None:
    events = [
        usage_event(
            source="//pricing",
            event_id=model,
            model=model,
            input_tokens=i,
            cached_input_tokens=c,
            output_tokens=o,
            time_=WHEN,
        )
        for model, i, c, o in KNOWN
    ]
    events.append(
        usage_event(
            source="//pricing",
            event_id="new-model",
            model="gpt-cg-test",
            input_tokens=1000,
            cached_input_tokens=200,
            output_tokens=10,
            time_=WHEN,
        )
    )
    database_url = ledger_env["DATABASE_URL"]
    with running_ledger(ledger_env, tmp_path / "ledger.log"):
        asyncio.run(publish_mixed(ledger_env["NATS_URL"], [encode(e) for e in events], "pricing"))
        wait_until(lambda: count_rows(database_url) == len(events), timeout=30, message="events not recorded")

    rows = stored(database_url)
    messages = asyncio.run(cost_messages(ledger_env["NATS_URL"]))
    assert len(messages) == len(events)
    published = {m["data"]["event"]["id"]: m for m in messages}
    first = published["gpt-4o"]
    assert first["type"] == "io.costguardian.cost.recorded.v1"
    assert first["source"] == "//cost-guardian/ledger"
    assert first["data"]["occurred_at"] == "2026-11-20T15:30:00Z"
    assert first["data"]["cost"] == str(reference("gpt-4o", 3_000, 0, 1_500).normalize())
    assert (first["data"]["priced"], first["data"]["currency"]) == (True, "USD")
    assert (first["data"]["input_tokens"], first["data"]["output_tokens"]) == (3_000, 1_500)
    assert published["new-model"]["data"]["cost"] is None
    assert published["new-model"]["data"]["priced"] is False
    for model, i, c, o in KNOWN:
        assert rows[model]["cost"] == reference(model, i, c, o), model
        assert rows[model]["price_source"].startswith("genai-prices ")
    # Unknown to the price data: kept, flagged, counted, never dropped.
    assert rows["new-model"] == {"cost": None, "price_source": None}
    known_total = sum(reference(*k) for k in KNOWN)
    assert rollup_cost(database_url) == (known_total, 1, known_total, 1)

    # The command itself, with the bundled price data: nothing new to price yet.
    result = subprocess.run(
        [*script("cg-ledger"), "reprice"], env={**os.environ, **ledger_env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "examined 1 rows, changed 0, 1 still without a price"

    with prices_from(CUSTOM):  # the price data now knows the model, as after a genai-prices upgrade
        report = asyncio.run(_reprice(database_url))
    assert (report.examined, report.changed, report.still_unpriced) == (1, 1, 0)
    repriced = stored(database_url)["new-model"]
    assert repriced["cost"] == Decimal("0.001095")
    assert repriced["price_source"].endswith("openai/gpt-cg-test")
    total = known_total + Decimal("0.001095")
    assert rollup_cost(database_url) == (total, 0, total, 0)
    # Repricing again changes nothing.
    with prices_from(CUSTOM):
        assert asyncio.run(_reprice(database_url, unpriced_only=False)).changed == 0


async def _reprice(database_url: str, *, unpriced_only: bool = True) -> Any:
    db = await open_pool(database_url, name="reprice-test")
    try:
        return await reprice(db, Pricer(), unpriced_only=unpriced_only)
    finally:
        await db.close()
