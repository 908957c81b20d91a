"""The Billing page: billed (OpenAI's cost reports) beside computed (the organization's usage, priced) per UTC day,
as a chart and a table with the drift per day and over the range, equal to GET /usage/billed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from cg_common.organization import organization_source
from tests.conftest import ADMIN_KEY, web_env_for
from tests.support.processes import running_api
from tests.support.usage_rows import UsageRow, fold, insert_usage
from tests.test_web_access import dashboard, signed_in, web_settings

TOTAL = re.compile(r'<td data-label="(\w+)" class="num" data-value="([^"]+)"')


async def test_billing_shows_billed_beside_computed_with_the_drift(api_env: dict[str, str], tmp_path: Path) -> None:
    source = organization_source("0123456789abcdef")
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=n) for n in (1, 2, 5)]
    with psycopg.connect(api_env["DATABASE_URL"], autocommit=True) as conn:
        insert_usage(conn, [UsageRow(occurred_at=day, source=source, cost=Decimal("1.250000000000")) for day in days])
        fold(conn)  # computed cost is read from the daily roll-up, as the ledger keeps it within a second
        for day, amount in zip(days[:2], ("1.30", "1.10"), strict=True):
            conn.execute(
                """INSERT INTO billed_costs (source, day, project_id, line_item, amount, currency, pulled_at)
                   VALUES (%s, %s, '', '', %s, 'usd', now())""",
                (source, day.date(), Decimal(amount)),
            )
    with running_api(api_env, tmp_path / "api.log") as api:
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as browser:
            await signed_in(browser)
            page = await browser.get("/dashboard/billing")
            assert page.status_code == 200, page.text
            assert 'class="chart"' in page.text and page.text.count('<rect class="s') == 5  # 2 billed, 3 computed
            table = page.text.split('data-testid="billing-table"')[1]
            assert table.count("no report yet") == 1  # the day with usage but no cost report
            totals = dict(TOTAL.findall(page.text.split('data-testid="billing-totals"')[1]))
            assert Decimal(totals["Billed"]) == Decimal("2.40") and Decimal(totals["Computed"]) == Decimal("3.75")
            assert Decimal(totals["Drift"]) == Decimal("-1.35")
            async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}) as client:
                billed = (await client.get("/usage/billed")).json()
            assert Decimal(billed["billed"]) == Decimal(totals["Billed"])
            assert Decimal(billed["computed"]) == Decimal(totals["Computed"])
            first, last = (today - timedelta(days=2)).date(), (today - timedelta(days=1)).date()
            narrowed = await browser.get("/dashboard/billing", params={"since": str(first), "until": str(last)})
            narrowed_totals = dict(TOTAL.findall(narrowed.text.split('data-testid="billing-totals"')[1]))
            assert Decimal(narrowed_totals["Computed"]) == Decimal("2.50")
            refused = await browser.get("/dashboard/billing", params={"since": str(last), "until": str(first)})
            assert refused.status_code == 422 and "on or before the last" in refused.text
