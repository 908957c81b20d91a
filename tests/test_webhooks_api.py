"""POST/GET/DELETE /webhooks and the delivery log, against real servers: clear 422s, the secret shown once and stored
only encrypted, private receivers refused where WEBHOOK_ALLOW_PRIVATE is false, read-only tokens kept out."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from cg_common.webhook_targets import WebhookTargetSettings
from tests.conftest import api_client, settings_from

HOOK = {"url": "http://127.0.0.1:9/hook", "events": ["budget.threshold"]}


def field_of(response: httpx.Response) -> tuple[str, str]:
    (error,) = response.json()["detail"]
    return ".".join(str(part) for part in error["loc"]), error["msg"]


async def test_made_listed_and_deleted_with_the_secret_shown_once(api: httpx.AsyncClient, database_url: str) -> None:
    made = await api.post("/webhooks", json={**HOOK, "format": "slack"})
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert (hook["url"], hook["events"], hook["format"], hook["pending"]) == (
        HOOK["url"],
        ["budget.threshold"],
        "slack",
        0,
    )
    listed = (await api.get("/webhooks")).json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    with psycopg.connect(database_url) as conn:
        (stored,) = conn.execute("SELECT secret_ciphertext FROM webhooks").fetchone() or (b"",)
    assert hook["secret"].encode() not in bytes(stored) and hook["secret"][6:].encode() not in bytes(stored)
    assert (await api.get(f"/webhooks/{hook['id']}/deliveries")).json() == []

    assert (await api.delete(f"/webhooks/{hook['id']}")).status_code == 204
    assert (await api.get("/webhooks")).json() == []
    assert (await api.delete(f"/webhooks/{hook['id']}")).status_code == 404
    assert (await api.get(f"/webhooks/{hook['id']}/deliveries")).status_code == 200  # its log stays readable
    assert (await api.get("/webhooks/12345/deliveries")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({**HOOK, "url": "ftp://example.com/x"}, "body.url", "http:// or https://"),
        ({**HOOK, "url": "http://user:pw@example.com/x"}, "body.url", "credentials"),
        ({**HOOK, "url": "http:///nohost"}, "body.url", "no host"),
        ({**HOOK, "events": []}, "body.events", "at least 1"),
        ({**HOOK, "events": ["budget.spent"]}, "body.events.0", "budget.threshold"),
        ({**HOOK, "events": ["budget.threshold", "budget.threshold"]}, "body.events", "once"),
        ({**HOOK, "format": "xml"}, "body.format", "json"),
        ({**HOOK, "secret": "mine"}, "body.secret", "Extra inputs"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], field: str, says: str
) -> None:
    answer = await api.post("/webhooks", json=body)
    assert answer.status_code == 422, answer.text
    where, message = field_of(answer)
    assert where == field and says in message, (where, message)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "https://100.64.0.1/hook",
    ],
)
async def test_private_receivers_refused_unless_allowed(api_env: dict[str, str], url: str) -> None:
    settings = settings_from({**api_env, "WEBHOOK_ALLOW_PRIVATE": "false"})
    async with api_client(settings) as api:
        answer = await api.post("/webhooks", json={**HOOK, "url": url})
    assert answer.status_code == 422, answer.text
    where, message = field_of(answer)
    assert where == "body.url" and "not a public address" in message and "WEBHOOK_ALLOW_PRIVATE" in message


async def test_a_host_that_does_not_resolve_is_refused_where_addresses_are_checked(api_env: dict[str, str]) -> None:
    async with api_client(settings_from({**api_env, "WEBHOOK_ALLOW_PRIVATE": "false"})) as api:
        answer = await api.post("/webhooks", json={**HOOK, "url": "http://host.invalid/x"})
    assert answer.status_code == 422 and field_of(answer) == ("body.url", "url's host host.invalid does not resolve")


def test_private_receivers_allowed_by_default_in_development_only() -> None:
    def allowed(**values: str) -> bool:
        return WebhookTargetSettings.model_validate(values).allow_private_targets

    assert allowed(env="development") and not allowed(env="production")
    assert allowed(env="production", webhook_allow_private="true")
    assert not allowed(env="development", webhook_allow_private="false")


async def test_webhooks_are_for_admins_only(api: httpx.AsyncClient) -> None:
    token = (await api.post("/tokens", json={"name": "reader", "scopes": ["read"]})).json()["token"]
    as_reader = {"X-API-Key": token}
    assert (await api.get("/webhooks", headers=as_reader)).status_code == 403
    assert (await api.post("/webhooks", json=HOOK, headers=as_reader)).status_code == 403
