"""The usage page's totals row: the whole selection's figures (every matching record, not this page's fifty), equal
to the api's summary for the same filters and range."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.conftest import ADMIN_KEY, web_env_for
from tests.support.processes import running_api
from tests.support.usage_rows import UsageRow, fold, insert_usage, roll_up
from tests.test_web_access import dashboard, signed_in, web_settings

TOTAL = re.compile(r'data-testid="total-(\w+)"[^>]*>([^<]+)<')


def rows(rng: random.Random) -> list[UsageRow]:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    return [
        UsageRow(
            occurred_at=base + timedelta(seconds=rng.randrange(3 * 86_400)),
            source=rng.choice(["//checkout/prod", "//search/prod"]),
            model=rng.choice(["gpt-4o", "o3-mini"]),
            input_tokens=rng.randrange(1, 9_000),
            output_tokens=rng.randrange(1, 900),
            requests=rng.randrange(1, 3),
            cost=Decimal(rng.randrange(1, 10**8)) / Decimal(10**10),
            attributes={"team": rng.choice(["search", "ads"]), "customer": rng.choice(["acme", "globex"])}
            if rng.random() < 0.8
            else {},
        )
        for _ in range(180)
    ]


def selected(row: UsageRow, name: str, value: str) -> bool:
    if name.startswith("attributes."):
        return row.attributes.get(name.removeprefix("attributes.")) == value
    return bool(getattr(row, name) == value)


async def test_the_totals_row_is_the_whole_selection(api_env: dict[str, str], tmp_path: Path) -> None:
    recorded = rows(random.Random(7))
    await roll_up(api_env["DATABASE_URL"])
    with psycopg.connect(api_env["DATABASE_URL"], autocommit=True) as conn:
        insert_usage(conn, recorded[::2])
        fold(conn)
        insert_usage(conn, recorded[1::2])
    since = (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)
    with running_api(api_env, tmp_path / "api.log") as api:
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as browser:
            await signed_in(browser)
            for selection in (
                {},
                {"source": "//checkout/prod"},
                {"model": "o3-mini", "since": since.strftime("%Y-%m-%dT%H:%M")},
                {"attributes.team": "search"},
                {"attributes.team": "ads", "attributes.customer": "acme", "source": "//checkout/prod"},
            ):
                page = (await browser.get("/dashboard/usage", params=selection)).text
                shown = dict(TOTAL.findall(page))
                chosen = [
                    r
                    for r in recorded
                    if all(selected(r, k, v) for k, v in selection.items() if k != "since")
                    and ("since" not in selection or r.occurred_at >= since)
                ]
                assert int(shown["input"].replace(",", "")) == sum(r.input_tokens for r in chosen), selection
                assert int(shown["output"].replace(",", "")) == sum(r.output_tokens for r in chosen), selection
                assert int(shown["requests"].replace(",", "")) == sum(r.requests for r in chosen), selection
                assert f"All {len(chosen):,} matching events" in page, selection
                cost = re.search(r'data-testid="total-cost" data-value="([^"]+)"', page)
                assert cost and Decimal(cost.group(1)) == sum((r.cost or Decimal(0) for r in chosen), Decimal(0))
                # The same figures as the api's own summary for the selection.
                async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}) as client:
                    params: dict[str, Any] = {k: v for k, v in selection.items() if k != "since"}
                    params |= {
                        "since": (since if "since" in selection else datetime(1970, 1, 1, tzinfo=UTC)).isoformat()
                    }
                    params |= {"until": "9999-01-01T00:00:00+00:00"}
                    summary = (await client.get("/usage/summary", params=params)).json()
                assert Decimal(summary["totals"]["cost"]) == Decimal(cost.group(1))


async def test_dimension_filters_narrow_the_log_and_its_exports(api_env: dict[str, str], tmp_path: Path) -> None:
    recorded = rows(random.Random(8))
    await roll_up(api_env["DATABASE_URL"])
    with psycopg.connect(api_env["DATABASE_URL"], autocommit=True) as conn:
        insert_usage(conn, recorded)
    with running_api(api_env, tmp_path / "api.log") as api:
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as browser:
            await signed_in(browser)
            page = (await browser.get("/dashboard/usage", params={"attributes.customer": "acme"})).text
            for name in ("customer", "feature", "project", "team"):
                assert f'name="attributes.{name}"' in page
            assert 'value="acme" data-testid="dimension-filter"' in page
            assert '<span class="dim">customer=acme</span>' in page
            assert '<span class="dim">customer=globex</span>' not in page
            export = await browser.get("/dashboard/usage/export.csv", params={"attributes.customer": "acme"})
            lines = export.text.strip().splitlines()
            assert lines[0].endswith(",attributes")
            wanted = [r for r in recorded if r.attributes.get("customer") == "acme"]
            assert len(lines) == 1 + len(wanted)
            assert all('""customer"":""acme""' in line for line in lines[1:])
