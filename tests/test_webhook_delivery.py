"""Webhook deliveries through the real notifier (`cg-notifier run`, its own PostgreSQL role and NATS user) to real
local HTTP receivers: one that fails the first attempts of every message, one that is down for a while and comes
back, with the notifier SIGKILLed in between; a slow one beside a fast one; one that never answers 2xx. Every
signature is checked with svix's `Webhook.verify`, the reference implementation."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest

from cg_common.publishing import Outgoing, publish_all
from cg_common.subjects import ALERT_BUDGET
from tests.support.processes import start_background
from tests.support.roles import migration_step_roles
from tests.support.usage import wait_until
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow


RUN = uuid.uuid4().hex[:8]
MADE = itertools.count()  # every alert its own id: JetStream remembers message ids for a day, across tests and runs


def alert(n: int, kind: str = "budget.threshold") -> dict[str, Any]:
    """An alert as the ledger publishes it (contract section 8)."""
    return {
        "id": f"{kind}:{n}:{RUN}-{next(MADE)}:80",
        "type": kind,
        "budget": {
            "id": n,
            "name": f"team-{n}",
            "amount": "1000.00",
            "period": "month",
            "timezone": "Europe/Berlin",
            "scope": {"attributes": {"team": f"team-{n}"}},
        },
        "threshold": 80,
        "period_start": "2026-11-30T23:00:00Z",
        "period_end": "2026-12-31T23:00:00Z",
        "spent": "812.40",
        "forecast": None,
        "occurred_at": "2026-12-21T09:14:03Z",
    }


async def publish_alerts(nats_url: str, alerts: list[dict[str, Any]], *, prefix: str = "") -> None:
    """As the ledger does (Nats-Msg-Id = the alert's id); `prefix` makes a re-send JetStream does not recognise, as
    a ledger re-publishing after its duplicate window would."""
    nc = await nats.connect(nats_url)
    try:
        await publish_all(nc, [Outgoing(ALERT_BUDGET, orjson.dumps(a), prefix + a["id"]) for a in alerts])
    finally:
        await nc.close()


@pytest.fixture
def notifier_env(ledger_env: dict[str, str], api_env: dict[str, str]) -> dict[str, str]:
    url = migration_step_roles(ledger_env["DATABASE_URL"])["notifier"]
    return {
        **ledger_env,
        "DATABASE_URL": url,
        "MASTER_KEY": api_env["MASTER_KEY"],
        "WEBHOOK_TIMEOUT_SECS": "2",
        "WEBHOOK_RETRY_DELAYS_SECS": "0.3,0.5,1,1,2,2,3",
        "LOG_LEVEL": "debug",
    }


@pytest.fixture
def receivers() -> Iterator[list[WebhookReceiver]]:
    made: list[WebhookReceiver] = []
    yield made
    for receiver in made:
        receiver.stop()


async def make_webhook(api: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    made = await api.post("/webhooks", json={"url": url, "events": ["budget.threshold", "budget.forecast"], **extra})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def wait_for(check: Any, *, within: float, message: str) -> None:
    await asyncio.to_thread(wait_until, check, timeout=within, message=message)


async def test_every_alert_delivered_once_per_webhook_through_failures_an_outage_and_a_killed_notifier(
    api: httpx.AsyncClient,
    notifier_env: dict[str, str],
    receivers: list[WebhookReceiver],
    tmp_path: Path,
) -> None:
    flaky = WebhookReceiver(lambda _id, seen: (500, 0.0) if seen < 2 else (200, 0.0)).start()
    down = WebhookReceiver()  # not listening yet
    receivers += [flaky, down]
    json_hook = await make_webhook(api, flaky.url)
    slack_hook = await make_webhook(api, down.url, format="slack")
    alerts = [alert(n) for n in range(20)] + [alert(n, "budget.forecast") for n in range(5)]
    ids = {a["id"] for a in alerts}

    notifier = start_background("notifier", notifier_env, tmp_path / "notifier-1.log")
    await publish_alerts(notifier_env["NATS_URL"], alerts)
    await publish_alerts(notifier_env["NATS_URL"], alerts[:10], prefix="again:")  # re-sent: nothing more
    await wait_for(lambda: set(flaky.delivered()) == ids, within=60, message="the flaky receiver never got all")
    first_log = notifier.log_text()
    notifier.kill()  # with the slack receiver's deliveries still pending
    assert not down.received

    down.start()
    notifier = start_background("notifier", notifier_env, tmp_path / "notifier-2.log")
    try:
        await wait_for(lambda: set(down.delivered()) == ids, within=60, message="the receiver that came back")
    finally:
        assert notifier.stop() == 0

    for receiver, hook in ((flaky, json_hook), (down, slack_hook)):
        receiver.verify_all(hook["secret"])  # every request, failed ones included
        delivered = receiver.delivered()
        assert {message: len(requests) for message, requests in delivered.items()} == dict.fromkeys(ids, 1)
        for message in ids:  # the same bytes under the same webhook-id on every attempt
            assert len({r.body for r in receiver.received if r.message_id == message}) == 1
    assert {r.message_id for r in flaky.received if r.status == 500} == ids  # each failed twice first
    assert orjson.loads(flaky.delivered()[alerts[0]["id"]][0].body) == alerts[0]
    slack_text = orjson.loads(down.delivered()[alerts[0]["id"]][0].body)["text"]
    assert "team-0" in slack_text and "80%" in slack_text

    log = (await api.get(f"/webhooks/{json_hook['id']}/deliveries", params={"limit": 200})).json()
    assert len(log) == len(ids) and {d["status"] for d in log} == {"delivered"}
    assert all(d["attempts"] == 3 and [a["response_status"] for a in d["log"]] == [500, 500, 200] for d in log)
    listed = {h["id"]: h for h in (await api.get("/webhooks")).json()}
    assert listed[slack_hook["id"]]["pending"] == 0 and "secret" not in listed[slack_hook["id"]]
    for text in (first_log, notifier.log_text()):
        assert json_hook["secret"] not in text and slack_hook["secret"] not in text


async def test_a_slow_receiver_holds_up_no_other(
    api: httpx.AsyncClient, notifier_env: dict[str, str], receivers: list[WebhookReceiver], tmp_path: Path
) -> None:
    slow = WebhookReceiver(lambda _id, _seen: (200, 5.0)).start()  # beyond the 2 s timeout: every attempt fails
    fast = WebhookReceiver().start()
    receivers += [slow, fast]
    await make_webhook(api, slow.url)
    await make_webhook(api, fast.url)
    alerts = [alert(n) for n in range(40)]
    env = {**notifier_env, "WEBHOOK_CONCURRENCY": "8", "WEBHOOK_PER_RECEIVER": "2"}
    with_notifier = start_background("notifier", env, tmp_path / "notifier.log")
    try:
        started = time.monotonic()
        await publish_alerts(notifier_env["NATS_URL"], alerts)
        await wait_for(lambda: len(fast.delivered()) == len(alerts), within=20, message="the fast receiver waited")
        took = time.monotonic() - started
    finally:
        with_notifier.stop()
    # 40 slow attempts two at a time would take 40 s; the fast receiver had all of its own in a fraction of that.
    assert took < 10, took
    assert len(slow.received) <= 2 * (took / 2 + 2)


async def test_a_delivery_fails_for_good_after_its_schedule(
    api: httpx.AsyncClient, notifier_env: dict[str, str], receivers: list[WebhookReceiver], tmp_path: Path
) -> None:
    broken = WebhookReceiver(lambda _id, _seen: (503, 0.0)).start()
    receivers.append(broken)
    hook = await make_webhook(api, broken.url)
    env = {**notifier_env, "WEBHOOK_RETRY_DELAYS_SECS": "0.2,0.2"}
    with_notifier = start_background("notifier", env, tmp_path / "notifier.log")
    try:
        await publish_alerts(notifier_env["NATS_URL"], [alert(1)])

        async def settled() -> list[dict[str, Any]]:
            return list((await api.get(f"/webhooks/{hook['id']}/deliveries")).json())

        for _ in range(100):
            log = await settled()
            if log and log[0]["status"] != "pending":
                break
            await asyncio.sleep(0.1)
    finally:
        with_notifier.stop()
    (delivery,) = log
    assert delivery["status"] == "failed" and delivery["attempts"] == 3
    assert [a["error"] for a in delivery["log"]] == ["answered HTTP 503"] * 3
    assert len(broken.received) == 3
    failed = (await api.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "failed"})).json()
    assert [d["id"] for d in failed] == [delivery["id"]]


async def test_test_endpoint_sends_a_signed_delivery_now(
    api: httpx.AsyncClient, notifier_env: dict[str, str], receivers: list[WebhookReceiver], tmp_path: Path
) -> None:
    receiver = WebhookReceiver().start()
    receivers.append(receiver)
    hook = await make_webhook(api, receiver.url)
    without = await api.post(f"/webhooks/{hook['id']}/test")
    assert without.status_code == 503 and without.headers["retry-after"]
    assert without.json()["dependency"] == "notifier"

    with_notifier = start_background("notifier", notifier_env, tmp_path / "notifier.log")
    try:
        answer = await api.post(f"/webhooks/{hook['id']}/test")
    finally:
        with_notifier.stop()
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["status"], result["response_status"], result["error"]) == ("delivered", 200, None)
    (request,) = receiver.received
    receiver.verify_all(hook["secret"])
    assert request.message_id == result["message_id"] and request.message_id.startswith("webhook.test:")
    assert orjson.loads(request.body)["type"] == "webhook.test"
    (logged,) = (await api.get(f"/webhooks/{hook['id']}/deliveries")).json()
    assert (logged["id"], logged["event_type"], logged["status"]) == (
        result["delivery_id"],
        "webhook.test",
        "delivered",
    )
    assert (await api.post("/webhooks/999/test")).status_code == 404
