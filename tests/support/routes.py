"""Every route of the api with a valid request and its normal answer (as the admin), for tests that walk them all:
a route added to the api without a line here fails those tests (they compare this with the app's own list)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from tests.support.keys import fake_openai_key
from tests.support.usage import usage_event

SOURCE = "//route-walk"
KEY_ID = 1  # the key every route about one key names; stored before the walk
PROBE = "/keys/{key_id}/probe"

ADMIT = {"source": "//route-walk", "model": "gpt-4o-mini-2024-07-18", "estimated_cost": "0.01"}
Call = tuple[str, str, dict[str, Any]]
# (method, route path): ((method, url, httpx kwargs), normal status, needs PostgreSQL)
REQUESTS: dict[tuple[str, str], tuple[Call, int, bool]] = {
    ("GET", "/ping"): (("GET", "/ping", {}), 200, False),
    ("GET", "/ready"): (("GET", "/ready", {}), 200, True),
    ("GET", "/dashboard"): (("GET", "/dashboard", {}), 307, False),
    ("GET", "/keys"): (("GET", "/keys", {}), 200, True),
    ("POST", "/keys"): (("POST", "/keys", {"json": "new key"}), 201, True),
    ("PATCH", "/keys/{key_id}/active"): (("PATCH", f"/keys/{KEY_ID}/active", {"json": {"active": True}}), 200, True),
    ("POST", PROBE): (("POST", f"/keys/{KEY_ID}/probe", {}), 504, True),  # no prober runs: its documented answer
    ("DELETE", "/keys/{key_id}"): (("DELETE", "/keys/999999", {}), 404, True),
    ("GET", "/data"): (("GET", "/data", {}), 200, True),
    ("GET", "/usage/summary"): (("GET", "/usage/summary", {}), 200, True),
    ("GET", "/usage/dimensions"): (("GET", "/usage/dimensions", {}), 200, True),
    ("GET", "/usage/billed"): (("GET", "/usage/billed", {}), 200, True),
    ("POST", "/usage/events"): (("POST", "/usage/events", {"json": "event"}), 202, False),
    ("DELETE", "/reset"): (("DELETE", "/reset", {}), 204, True),
    ("GET", "/metrics"): (("GET", "/metrics", {}), 200, True),
    ("GET", "/tokens"): (("GET", "/tokens", {}), 200, True),
    ("POST", "/tokens"): (("POST", "/tokens", {"json": {"name": "walk", "scopes": ["read"]}}), 201, True),
    ("DELETE", "/tokens/{token_id}"): (("DELETE", "/tokens/999999", {}), 404, True),
    ("POST", "/sessions"): (("POST", "/sessions", {"json": "admin credential"}), 201, True),
    ("DELETE", "/sessions/current"): (("DELETE", "/sessions/current", {}), 400, True),  # no session named
    ("GET", "/audit"): (("GET", "/audit", {}), 200, True),
    ("GET", "/budgets"): (("GET", "/budgets", {}), 200, True),
    ("GET", "/alerts"): (("GET", "/alerts", {}), 200, True),
    ("POST", "/budgets"): (("POST", "/budgets", {"json": "new budget"}), 201, True),
    ("GET", "/budgets/{budget_id}"): (("GET", "/budgets/999999", {}), 404, True),
    ("PATCH", "/budgets/{budget_id}"): (("PATCH", "/budgets/999999", {"json": {"amount": "5"}}), 404, True),
    ("DELETE", "/budgets/{budget_id}"): (("DELETE", "/budgets/999999", {}), 404, True),
    ("POST", "/budgets/admit"): (("POST", "/budgets/admit", {"json": ADMIT}), 200, True),
    ("DELETE", "/budgets/reservations/{reservation_id}"): (
        ("DELETE", f"/budgets/reservations/{uuid.UUID(int=1)}", {}),
        404,
        True,
    ),
    ("GET", "/webhooks"): (("GET", "/webhooks", {}), 200, True),
    ("POST", "/webhooks"): (
        ("POST", "/webhooks", {"json": {"url": "http://127.0.0.1:9/hook", "events": ["budget.threshold"]}}),
        201,
        True,
    ),
    ("DELETE", "/webhooks/{webhook_id}"): (("DELETE", "/webhooks/999999", {}), 404, True),
    ("GET", "/webhooks/{webhook_id}/deliveries"): (("GET", "/webhooks/999999/deliveries", {}), 404, True),
    ("POST", "/webhooks/{webhook_id}/test"): (("POST", "/webhooks/999999/test", {}), 404, True),
}
EXEMPT = {("GET", "/ping"), ("GET", "/dashboard")}  # the api's default RATE_LIMIT_EXEMPT


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every route of the app, as its OpenAPI document lists them (FastAPI keeps included routers nested)."""
    return {(method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations}


async def call(
    client: httpx.AsyncClient, request: Call, *, admin_key: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, float]:
    """Makes the request, with fresh bodies where one may be used once (events, keys)."""
    method, url, kwargs = request
    body = kwargs.get("json")
    if body == "event":
        kwargs = {"json": usage_event(source=SOURCE, event_id=f"walk-{time.monotonic_ns()}")}
    elif body == "new key":
        kwargs = {"json": {"label": "more", "api_key": fake_openai_key()}}
    elif body == "new budget":
        kwargs = {"json": {"name": f"walk {time.monotonic_ns()}", "amount": "10", "period": "day"}}
    elif body == "admin credential":
        kwargs = {"json": {"credential": admin_key}}
    started = time.monotonic()
    response = await client.request(method, url, headers=headers, **kwargs)
    return response, time.monotonic() - started
