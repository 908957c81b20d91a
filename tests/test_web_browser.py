"""The dashboard in a real browser (headless Chromium driven by Playwright) against the real api, ledger and
dashboard processes: signing in, keys from adding to deleting, live updates from NATS, totals, no foreign requests,
the same flows with JavaScript off, and the screenshots in docs/screenshots (CG_SCREENSHOT_DIR=docs/screenshots)."""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright

from tests.conftest import ADMIN_KEY, web_env_for
from tests.fake_openai import fake_key, running_fake_openai
from tests.support.browser import CHROMIUM_ARGS, chromium_path
from tests.support.keys import fake_openai_key
from tests.support.processes import running_api, running_background, running_ledger, running_prober, running_web
from tests.support.roles import migration_step_roles
from tests.support.usage import encode, publish_mixed, usage_event, wait_until
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "gpt-4.1-nano")
TIMEOUT_MS = 20_000  # generous: the machine is shared
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class Dashboard:
    web: str
    api: httpx.Client
    nats_url: str


@pytest.fixture
def dashboard(api_env: dict[str, str], ledger_env: dict[str, str], tmp_path: Path) -> Iterator[Dashboard]:
    with (
        running_fake_openai() as fake,
        running_api({**api_env, "PROBE_WAIT_SECS": "5"}, tmp_path / "api.log") as api,
        running_ledger(ledger_env, tmp_path / "ledger.log"),
        running_prober(
            {**ledger_env, "MASTER_KEY": api_env["MASTER_KEY"], "OPENAI_BASE_URL": fake.base_url},
            tmp_path / "prober.log",
        ),
        running_background(
            "notifier",
            {
                **ledger_env,
                "DATABASE_URL": migration_step_roles(ledger_env["DATABASE_URL"])["notifier"],
                "MASTER_KEY": api_env["MASTER_KEY"],
            },
            tmp_path / "notifier.log",
        ),
        running_web(web_env_for(api_env, api.url), tmp_path / "web.log") as web,
        httpx.Client(base_url=api.url, headers={"X-API-Key": ADMIN_KEY}, timeout=10) as client,
    ):
        yield Dashboard(web.url, client, api_env["NATS_URL"])


@pytest.fixture
def browser(dashboard: Dashboard) -> Iterator[Browser]:
    """After the services: Playwright's sync API keeps an event loop in this thread, where fixtures that call
    asyncio.run could not run any more."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def publish_usage(d: Dashboard, events: list[dict[str, object]]) -> None:
    """Usage onto NATS, then wait until the ledger has recorded all of it (as the api reports)."""
    before = recorded_events(d)
    batch = f"web-{random.getrandbits(48)}"
    with ThreadPoolExecutor(1) as pool:  # a thread of its own: this one hosts Playwright's event loop
        pool.submit(asyncio.run, publish_mixed(d.nats_url, [encode(e) for e in events], batch=batch)).result()
    wait_until(lambda: recorded_events(d) >= before + len(events), timeout=30, message="the ledger did not record")


def recorded_events(d: Dashboard) -> int:
    now = datetime.now(UTC)
    params = {
        "group_by": "model",
        "since": (now - timedelta(days=40)).isoformat(),
        "until": (now + timedelta(hours=1)).isoformat(),
    }
    return int(d.api.get("/usage/summary", params=params).json()["totals"]["events"])


TEAMS = ("search", "ads", "ml-platform")


def history(key_ids: list[int], days: int = 30) -> list[dict[str, object]]:
    """A month of plausible usage: several models, most of it on the stored keys, some from elsewhere."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    events = []
    for n in range(160):
        when = now - timedelta(days=rng.random() * (days - 1), minutes=5)
        key = rng.choice([*key_ids, None])
        extra: dict[str, Any] = {"key_id": key} if key is not None else {}
        extra["attributes"] = {"team": rng.choice(TEAMS), "customer": f"customer-{rng.randint(1, 9)}"}
        events.append(
            usage_event(
                source=f"//service-{rng.randint(1, 4)}/prod",
                event_id=f"history-{n}",
                model=rng.choices(MODELS, weights=(8, 3, 2, 4, 1, 2))[0],
                input_tokens=rng.randint(2_000, 400_000),
                output_tokens=rng.randint(200, 60_000),
                time_=when,
                **extra,
            )
        )
    return events


def sign_in(page: Page, web: str) -> None:
    page.goto(web + "/dashboard")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))
    page.fill("#api_key", ADMIN_KEY)
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(re.compile(r"/dashboard$"))


def row(page: Page, label: str) -> Locator:
    return page.locator("tr[data-key-id]", has=page.locator("td.label-cell", has_text=label))


def add_key(page: Page, label: str, secret: str) -> None:
    page.fill("#label", label)
    page.fill("#api_key", secret)
    page.click("button:has-text('Add key')")


def test_a_full_session_in_the_browser(dashboard: Dashboard, browser: Browser, tmp_path: Path) -> None:
    d = dashboard
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, d.web)

    # Add two keys; each shows masked, and the page never holds the key itself.
    secrets = {"billing bot": fake_key("valid"), "search indexer": fake_openai_key("sk-")}
    page.goto(d.web + "/dashboard/keys")
    for label, secret in secrets.items():
        add_key(page, label, secret)
        expect(row(page, label).locator("code.masked")).to_have_text(re.compile(r"^sk-.*…" + secret[-4:] + "$"))
        expect(page.locator("#api_key")).to_have_value("")
        assert secret not in page.content()
    # Inline validation errors from the api's 422 and 409, next to the field.
    add_key(page, "broken", "not-a-key")
    expect(page.locator("#api_key-error")).to_be_visible()
    add_key(page, "twice", secrets["billing bot"])
    expect(page.locator("#api_key-error")).to_contain_text("already stored")
    assert all(secret not in page.content() for secret in secrets.values())

    keys = {k["label"]: k["id"] for k in d.api.get("/keys").json()}
    publish_usage(d, history(list(keys.values())))

    # The overview follows recorded costs live (server-sent events from the ledger's batch notices), without a reload.
    page.goto(d.web + "/dashboard")
    today = page.get_by_test_id("spend-today")
    before = today.inner_text()
    page.evaluate("window.notReloaded = true")
    publish_usage(
        d,
        [
            usage_event(
                source="//live/test",
                event_id="live-1",
                model="gpt-4.1",
                input_tokens=3_000_000,
                output_tokens=500_000,
                key_id=keys["billing bot"],
            )
        ],
    )
    expect(today).not_to_have_text(before)
    assert page.evaluate("window.notReloaded") is True

    # The keys table's totals row is the sum of its rows.
    page.goto(d.web + "/dashboard/keys")
    costs = [
        Decimal(v)
        for v in page.locator("[data-testid=row-cost]").evaluate_all("cells => cells.map(c => c.dataset.value)")
    ]
    tokens = [int(t.replace(",", "")) for t in page.get_by_test_id("row-tokens").all_inner_texts()]
    assert sum(costs) > 0
    assert Decimal(page.get_by_test_id("total-cost").get_attribute("data-value") or "") == sum(costs)
    assert int(page.get_by_test_id("total-tokens").inner_text().replace(",", "")) == sum(tokens)

    # The usage log, page after page (cursors), and the exports: every matching record, filters applied.
    everything = page.request.get(d.web + "/dashboard/usage/export.json").json()
    assert len(everything) == recorded_events(d) > 100
    page.goto(d.web + "/dashboard/usage")
    seen = page.locator("[data-testid=usage-table] tbody tr").count()
    while page.locator("a[rel=next]").count():
        page.click("a[rel=next]")
        seen += page.locator("[data-testid=usage-table] tbody tr").count()
    assert seen == len(everything)
    rows = page.request.get(d.web + "/dashboard/usage/export.csv?model=gpt-4.1").text().strip().splitlines()
    assert rows[0].startswith("id,occurred_at") and len(rows) - 1 == sum(e["model"] == "gpt-4.1" for e in everything)

    for name, amount, scope in (("all usage", "400", {}), ("search team", "60", {"attributes": {"team": "search"}})):
        budget = {"name": name, "amount": amount, "period": "month", "timezone": "Europe/Berlin", "scope": scope}
        assert d.api.post("/budgets", json=budget).status_code == 201
    take_screenshots(context, d.web, tmp_path)
    page.goto(d.web + "/dashboard/keys")

    # Toggle: paused, and still paused after a reload.
    row(page, "billing bot").get_by_role("switch").click()
    expect(row(page, "billing bot").get_by_role("switch")).to_have_text("Paused")
    page.reload()
    expect(row(page, "billing bot").get_by_role("switch")).to_have_attribute("aria-checked", "false")

    # Test: a probe through the real prober against the fake OpenAI, its result in the row (a paused key can be
    # tested by hand).
    row(page, "billing bot").get_by_role("button", name="Test").click()
    result = row(page, "billing bot").get_by_test_id("probe-result")
    expect(result).to_contain_text(re.compile(r"Works: ok\s*· HTTP 200"))

    # Delete, after confirming.
    indexer = row(page, "search indexer")
    indexer.locator("summary").click()
    indexer.get_by_role("button", name="Delete key").click()
    expect(row(page, "search indexer")).to_have_count(0)
    assert "search indexer" not in [k["label"] for k in d.api.get("/keys").json()]

    # Signing out closes the door again.
    page.click("button:has-text('Sign out')")
    page.goto(d.web + "/dashboard/keys")
    expect(page).to_have_url(re.compile(r"/dashboard/login"))

    refused = [line for line in console if "Content Security Policy" in line or "Refused to" in line]
    assert not refused, f"the page broke its own Content-Security-Policy: {refused}"
    foreign = [url for url in requests if not url.startswith(d.web + "/")]
    assert not foreign, f"requests to other origins: {foreign}"
    assert len(requests) > 20
    context.close()


def test_every_change_works_with_javascript_off(dashboard: Dashboard, browser: Browser) -> None:
    d = dashboard
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, d.web)
    page.goto(d.web + "/dashboard/keys")
    secret = fake_openai_key()
    add_key(page, "plain form", secret)
    expect(page).to_have_url(re.compile(r"/dashboard/keys$"))  # after the 303
    expect(page.locator("#messages")).to_contain_text("added")
    expect(row(page, "plain form").locator("code.masked")).to_contain_text(secret[-4:])
    assert secret not in page.content()
    add_key(page, "bad", "sk-short")
    expect(page.locator("#api_key-error")).to_be_visible()
    row(page, "plain form").get_by_role("switch").click()
    expect(row(page, "plain form").get_by_role("switch")).to_have_text("Paused")
    row(page, "plain form").get_by_role("button", name="Test").click()
    expect(row(page, "plain form").get_by_test_id("probe-result")).to_contain_text("Works: ok")
    row(page, "plain form").locator("summary").click()
    row(page, "plain form").get_by_role("button", name="Delete key").click()
    expect(page.locator("#messages")).to_contain_text("deleted")
    expect(row(page, "plain form")).to_have_count(0)
    context.close()


def test_tokens_are_made_and_revoked_in_the_browser(dashboard: Dashboard, browser: Browser, tmp_path: Path) -> None:
    d = dashboard
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, d.web)
    page.click("nav >> text=Access")
    page.fill("#name", "checkout-service")
    page.fill("#sources", "//checkout/*")
    page.fill("input[name=rpm]", "600")
    page.click("button:has-text('Create token')")
    secret = page.get_by_test_id("token-secret").inner_text()
    assert secret.startswith("cg_")
    assert d.api.get("/keys", headers={"X-API-Key": secret}).status_code == 403  # ingest only
    page.fill("#name", "reporting")
    page.uncheck("input[name=scopes][value=ingest]")
    page.check("input[name=scopes][value=read]")
    page.click("button:has-text('Create token')")
    expect(page.get_by_test_id("token-secret")).to_be_visible()
    page.goto(d.web + "/dashboard/access")
    expect(page.get_by_test_id("new-token")).to_have_count(0)  # shown once: gone on the next view
    assert secret not in page.content()
    target = Path(os.environ.get("CG_SCREENSHOT_DIR") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / "access-desktop.png"), full_page=True)
    checkout = page.locator("tr[data-token-id]", has_text="checkout-service")
    checkout.locator("summary").click()
    checkout.get_by_role("button", name="Revoke checkout-service").click()
    expect(page.locator("#messages")).to_contain_text("revoked")
    assert d.api.get("/usage/summary", headers={"X-API-Key": secret}).status_code == 401
    page.click("nav >> text=Audit")
    expect(page.get_by_test_id("audit-table")).to_contain_text("dashboard: admin (API_KEY)")
    page.screenshot(path=str(target / "audit-desktop.png"), full_page=True)
    context.close()


def test_webhooks_are_made_tested_and_logged_in_the_browser(
    dashboard: Dashboard, browser: Browser, tmp_path: Path
) -> None:
    d = dashboard
    receiver = WebhookReceiver().start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, d.web)
        page.click("nav >> text=Webhooks")
        page.fill("#url", receiver.url)
        page.select_option("#format", "json")
        page.click("button:has-text('Create webhook')")
        secret = page.get_by_test_id("webhook-secret").inner_text()
        assert secret.startswith("whsec_")
        target = Path(os.environ.get("CG_SCREENSHOT_DIR") or tmp_path / "screenshots")
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / "webhooks-desktop.png"), full_page=True)
        page.goto(d.web + "/dashboard/webhooks")
        expect(page.get_by_test_id("new-webhook")).to_have_count(0)  # shown once
        assert secret not in page.content()
        page.locator("tr[data-webhook-id]").get_by_role("button", name="Send test").click()
        expect(page.locator("#messages")).to_contain_text("Test delivered: the receiver answered 200.")
        expect(page.get_by_test_id("deliveries-table")).to_contain_text("HTTP 200")
        receiver.verify_all(secret)
        page.screenshot(path=str(target / "webhook-deliveries-desktop.png"), full_page=True)
    finally:
        context.close()
        receiver.stop()


def test_totals_breakdown_and_billing_in_the_browser(dashboard: Dashboard, browser: Browser) -> None:
    """With JavaScript off, as the plain forms must work: the usage totals equal the summary for the same selection,
    the breakdown regroups and its table adds up, the billing page takes a range."""
    d = dashboard
    publish_usage(d, history([], days=10))
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, d.web)

    page.goto(d.web + "/dashboard/usage")
    page.fill("#f-source", "//service-2/prod")
    page.fill("input[name='attributes.team']", "search")
    page.click("button:has-text('Filter')")
    summary = d.api.get(
        "/usage/summary",
        params={
            "source": "//service-2/prod",
            "attributes.team": "search",
            "since": "1970-01-01T00:00:00Z",
            "until": "9999-01-01T00:00:00Z",
        },
    ).json()["totals"]
    assert 0 < summary["events"] < 160
    expect(page.get_by_test_id("total-cost")).to_have_attribute("data-value", re.compile(r"^[\d.]+$"))
    assert Decimal(page.get_by_test_id("total-cost").get_attribute("data-value") or "") == Decimal(summary["cost"])
    assert page.get_by_test_id("total-requests").inner_text().replace(",", "") == str(summary["requests"])

    page.click("nav >> text=Breakdown")
    page.select_option("#d-by", "source")
    page.click("button:has-text('Show')")
    rows = page.locator("[data-testid=breakdown-table] tbody tr")
    expect(rows).to_have_count(4)  # the four services
    costs = [
        Decimal(c)
        for c in page.locator("[data-testid=breakdown-table] tbody td[data-value]").evaluate_all(
            "cells => cells.map(c => c.dataset.value)"
        )
    ]
    total = page.locator("[data-testid=breakdown-totals] td[data-value]").get_attribute("data-value")
    assert sum(costs) == Decimal(total or "")
    assert page.locator("svg.chart rect").count() > 0
    page.select_option("#d-by", "attributes.team")
    page.click("button:has-text('Show')")
    expect(rows).to_have_count(len(TEAMS))
    expect(page.locator("[data-testid=breakdown-table] thead")).to_contain_text("Team")

    page.click("nav >> text=Billing")
    expect(page.get_by_test_id("billing-table")).to_be_visible()
    page.fill("#b-since", "2026-01-10")
    page.fill("#b-until", "2026-01-01")
    page.click("button:has-text('Show')")
    expect(page.locator("p.message.error")).to_contain_text("on or before the last")

    page.click("nav >> text=Budgets")
    page.fill("#b-name", "search team")
    page.fill("#b-amount", "50")
    page.fill("#b-attributes\\.team", "search")
    page.click("button:has-text('Create')")
    expect(page.locator("p.message.ok")).to_contain_text("Budget “search team” created.")
    spent = page.locator("[data-testid=budgets-table] td[data-label=Spent]").get_attribute("data-value")
    month = d.api.get("/budgets").json()[0]["current"]
    assert spent == month["spent"] and Decimal(spent or "0") > 0
    expect(page.locator("svg.meter")).to_have_count(1)
    context.close()


def take_screenshots(context: BrowserContext, web: str, tmp_path: Path) -> None:
    """Each page at desktop and phone widths, into CG_SCREENSHOT_DIR (docs/screenshots to refresh the docs)."""
    target = Path(os.environ.get("CG_SCREENSHOT_DIR") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    page = context.new_page()
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        pages = (("overview", "/dashboard"), ("keys", "/dashboard/keys"), ("usage", "/dashboard/usage"))
        more = (
            ("breakdown", "/dashboard/breakdown"),
            ("billing", "/dashboard/billing"),
            ("budgets", "/dashboard/budgets"),
        )
        for name, path in (*pages, *more):
            page.goto(web + path)
            page.screenshot(path=str(target / f"{name}-{width_name}.png"), full_page=name != "usage")
    page.close()
    assert context.browser is not None
    anonymous = context.browser.new_context()
    login = anonymous.new_page()
    for width_name, (width, height) in WIDTHS.items():
        login.set_viewport_size({"width": width, "height": height})
        login.goto(web + "/dashboard/login")
        login.screenshot(path=str(target / f"login-{width_name}.png"))
    anonymous.close()
