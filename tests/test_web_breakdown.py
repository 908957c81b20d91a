"""The Breakdown page: spend per value of a grouping over a range, as a table with totals and a chart per day, equal
to sums computed from the records."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from tests.conftest import ADMIN_KEY, web_env_for
from tests.support.keys import fake_openai_key
from tests.support.processes import running_api
from tests.support.usage_rows import UsageRow, fold, insert_usage, roll_up
from tests.test_web_access import dashboard, signed_in, web_settings

COST_CELL = re.compile(r'<td data-label="\w+">([^<]+)</td>\s*<td data-label="Events"[\s\S]*?data-value="([^"]+)"')


async def test_breakdown_by_each_grouping_matches_the_records(api_env: dict[str, str], tmp_path: Path) -> None:
    rng = random.Random(11)
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with running_api(api_env, tmp_path / "api.log") as api:
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}) as client:
            key = (await client.post("/keys", json={"label": "checkout key", "api_key": fake_openai_key()})).json()
        recorded = [
            UsageRow(
                occurred_at=today - timedelta(hours=rng.randrange(24 * 20)),
                source=rng.choice(["//checkout/prod", "//search/prod", "//batch"]),
                model=rng.choice(["gpt-4o", "o3-mini"]),
                key_id=rng.choice([key["id"], None]),
                cost=Decimal(rng.randrange(1, 10**8)) / Decimal(10**10),
                attributes={"team": rng.choice(["search", "ads"])} if rng.random() < 0.8 else {},
            )
            for _ in range(120)
        ]
        await roll_up(api_env["DATABASE_URL"])
        with psycopg.connect(api_env["DATABASE_URL"], autocommit=True) as conn:
            insert_usage(conn, recorded[::2])
            fold(conn)
            insert_usage(conn, recorded[1::2])
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as browser:
            await signed_in(browser)
            for by, name_of in (
                ("source", lambda r: r.source),
                ("model", lambda r: r.model),
                ("key", lambda r: "checkout key" if r.key_id else "no key"),
                ("attributes.team", lambda r: r.attributes.get("team", "none")),
            ):
                page = await browser.get("/dashboard/breakdown", params={"by": by})
                assert page.status_code == 200, page.text
                table = page.text.split('data-testid="breakdown-table"')[1].split("<tfoot")[0]
                shown = {name.split(" (")[0]: Decimal(cost) for name, cost in COST_CELL.findall(table)}
                expected: dict[str, Decimal] = defaultdict(Decimal)
                for row in recorded:
                    expected[name_of(row)] += row.cost or Decimal(0)
                assert shown == dict(expected), by
                total = re.search(r'data-testid="breakdown-totals"[\s\S]*?data-value="([^"]+)"', page.text)
                assert total and Decimal(total.group(1)) == sum(expected.values())
                assert page.text.count('<rect class="s') >= 10  # bars for the days with usage
            for unknown in ("weather", "attributes.weather"):
                refused = await browser.get("/dashboard/breakdown", params={"by": unknown})
                assert refused.status_code == 422
                assert "Choose what to group by: key, model, source, provider, customer, feature" in refused.text
