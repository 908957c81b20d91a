"""The Budgets page: made, shown with the current period's bar and figures (equal to the api's), changed and deleted
through plain forms; the api's refusals appear beside the fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from tests.conftest import ADMIN_KEY, web_env_for
from tests.support.processes import running_api
from tests.support.usage_rows import UsageRow, insert_usage, roll_up
from tests.test_web_access import dashboard, signed_in, web_settings

SPENT = re.compile(r'data-label="Spent" class="num" data-value="([^"]+)"')


async def test_budgets_are_made_shown_changed_and_deleted(api_env: dict[str, str], tmp_path: Path) -> None:
    await roll_up(api_env["DATABASE_URL"])
    with psycopg.connect(api_env["DATABASE_URL"], autocommit=True) as conn:
        insert_usage(
            conn,
            [
                UsageRow(occurred_at=datetime.now(UTC) - timedelta(minutes=m), attributes={"team": t}, cost=Decimal(c))
                for m, t, c in ((1, "search", "30"), (2, "search", "15.5"), (3, "ads", "99"))
            ],
        )
    with running_api(api_env, tmp_path / "api.log") as api:
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as browser:
            token = await signed_in(browser)
            form = {
                "csrf_token": token,
                "name": "search team",
                "amount": "100",
                "period": "month",
                "timezone": "Europe/Berlin",
                "thresholds": "50, 80, 100",
                "attributes.team": "search",
            }
            made = await browser.post("/dashboard/budgets", data=form)
            assert made.status_code == 303, made.text
            page = (await browser.get("/dashboard/budgets")).text
            assert "Budget “search team” created." in page
            assert SPENT.findall(page) == ["45.5"]
            assert '<span class="dim">team=search</span>' in page
            assert 'class="spent" x="0" y="2" width="45.5"' in page
            async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}) as client:
                budget = (await client.get("/budgets")).json()[0]
            assert budget["current"]["spent"] == "45.5"

            with psycopg.connect(api_env["DATABASE_URL"], autocommit=True) as conn:  # its first batch: 55.5%
                insert_usage(
                    conn, [UsageRow(occurred_at=datetime.now(UTC), attributes={"team": "search"}, cost=Decimal(10))]
                )
            alerts = (await browser.get("/dashboard/alerts", params={"budget_id": budget["id"]})).text
            assert alerts.count('data-alert-id="budget.threshold:') == 1
            assert '<span class="badge warn">50%</span>' in alerts
            assert "search team" in alerts

            refused = await browser.post("/dashboard/budgets", data={**form, "name": "x", "timezone": "Mars/Base"})
            assert refused.status_code == 422
            assert "not an IANA time zone" in refused.text
            assert 'value="Mars/Base"' in refused.text  # what was typed stays in the form

            edit = (await browser.get("/dashboard/budgets", params={"edit": budget["id"]})).text
            assert f'action="/dashboard/budgets/{budget["id"]}"' in edit
            assert 'value="search team"' in edit
            changed = await browser.post(f"/dashboard/budgets/{budget['id']}", data={**form, "amount": "50"})
            assert changed.status_code == 303
            page = (await browser.get("/dashboard/budgets")).text
            assert 'class="spent" x="0" y="2" width="100.0"' in page  # 55.5 of 50: the bar ends at the amount
            assert "111.0% · thresholds 50, 80, 100%" in page

            deleted = await browser.post(f"/dashboard/budgets/{budget['id']}/delete", data={"csrf_token": token})
            assert deleted.status_code == 303
            assert "No budgets yet." in (await browser.get("/dashboard/budgets")).text


async def test_a_hard_budget_shows_what_admission_holds_and_refused(api_env: dict[str, str], tmp_path: Path) -> None:
    with running_api(api_env, tmp_path / "api.log") as api:
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}) as client:
            body = {"name": "gateway", "amount": "1", "period": "day", "hard": True}
            assert (await client.post("/budgets", json=body)).status_code == 201
            ask = {"source": "//gw", "model": "gpt-4o-mini", "estimated_cost": "0.75"}
            assert (await client.post("/budgets/admit", json=ask)).json()["admitted"]
            assert not (await client.post("/budgets/admit", json=ask)).json()["admitted"]
        async with dashboard(web_settings(web_env_for(api_env, api.url))) as browser:
            await signed_in(browser)
            page = (await browser.get("/dashboard/budgets")).text
    assert "+ $0.75 reserved" in page
    assert 'data-testid="admission">1 refused<' in page
    assert re.search(r'class="reserved" x="0(\.0)?" y="2" width="75(\.0)?"', page), page[page.find("meter") :][:600]
