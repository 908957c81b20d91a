"""The Webhooks page: a webhook made through the form shows its secret once (and never again), a test delivery
reaches a real receiver through a real notifier and lands in the delivery log page, a bad URL is refused beside the
field, and deleting takes it off the list."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import web_env_for
from tests.support.processes import running_api, start_background
from tests.support.roles import migration_step_roles
from tests.support.webhook_receiver import WebhookReceiver
from tests.test_web_access import dashboard, signed_in, web_settings

pytestmark = pytest.mark.slow


async def test_webhooks_are_made_tested_logged_and_deleted(
    api_env: dict[str, str], ledger_env: dict[str, str], tmp_path: Path
) -> None:
    receiver = WebhookReceiver().start()
    notifier_env = {
        **ledger_env,
        "DATABASE_URL": migration_step_roles(ledger_env["DATABASE_URL"])["notifier"],
        "MASTER_KEY": api_env["MASTER_KEY"],
    }
    notifier = start_background("notifier", notifier_env, tmp_path / "notifier.log")
    try:
        with running_api(api_env, tmp_path / "api.log") as api:
            async with dashboard(web_settings(web_env_for(api_env, api.url))) as browser:
                token = await signed_in(browser)
                refused = await browser.post(
                    "/dashboard/webhooks", data={"csrf_token": token, "url": "ftp://x", "events": "budget.threshold"}
                )
                assert refused.status_code == 422 and "url must start with http:// or https://" in refused.text

                form = {"csrf_token": token, "url": receiver.url, "events": ["budget.threshold"], "format": "slack"}
                made = await browser.post("/dashboard/webhooks", data=form)
                assert made.status_code == 200, made.text
                secret = made.text.split('data-testid="webhook-secret">')[1].split("<")[0]
                assert secret.startswith("whsec_")
                page = (await browser.get("/dashboard/webhooks")).text
                assert receiver.url in page and secret not in page and "none yet" in page
                hook_id = int(page.split('data-webhook-id="')[1].split('"')[0])

                tested = await browser.post(f"/dashboard/webhooks/{hook_id}/test", data={"csrf_token": token})
                assert tested.status_code == 303
                log = (await browser.get(tested.headers["location"])).text
                assert "Test delivered: the receiver answered 200." in log
                assert "webhook.test" in log and "HTTP 200" in log and secret not in log
                receiver.verify_all(secret)

                deleted = await browser.post(f"/dashboard/webhooks/{hook_id}/delete", data={"csrf_token": token})
                assert deleted.status_code == 303
                assert "No webhooks yet" in (await browser.get("/dashboard/webhooks")).text
    finally:
        notifier.stop()
        receiver.stop()
    assert secret not in notifier.log_text()
