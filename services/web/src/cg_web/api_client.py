"""The api, as the dashboard sees it: one shared httpx client, every failure turned into an `ApiError` with a
message a person can act on (the api down, too slow, or refusing the request)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

API_KEY_HEADER = "X-API-Key"
SESSION_HEADER = "X-Dashboard-Session"


@dataclass
class ApiError(Exception):
    """What went wrong, in words for the page; `fields` names each bad form field (from a 422)."""

    status: int  # the api's status, or 502 (unreachable) / 504 (too slow) when it did not answer
    message: str
    fields: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class SessionEndedError(Exception):
    """The api refused the person's session: signed out elsewhere, its token revoked, expired, or API_KEY changed.
    Not an ApiError, so that no page shows it as a passing problem: the person is signed out."""


class Api:
    """Thin, typed calls to the api for one signed-in person (their session), through the dashboard's own
    credential; answers are the api's JSON, unchanged."""

    def __init__(self, client: httpx.AsyncClient, session: str | None = None) -> None:
        self._client = client
        self._headers = {SESSION_HEADER: session} if session else {}

    @classmethod
    def client(cls, base_url: str, dashboard_key: str, timeout_secs: float) -> httpx.AsyncClient:
        """One pool of connections for every page, carrying the dashboard's credential (its own rate-limit bucket)."""
        return httpx.AsyncClient(
            base_url=base_url,
            headers={API_KEY_HEADER: dashboard_key},
            timeout=httpx.Timeout(timeout_secs, connect=min(timeout_secs, 3.0)),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    async def keys(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json("GET", "/keys")
        return result

    async def add_key(self, *, label: str, api_key: str, kind: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST", "/keys", json={"label": label, "api_key": api_key, "kind": kind}
        )
        return result

    async def set_active(self, key_id: int, active: bool) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("PATCH", f"/keys/{key_id}/active", json={"active": active})
        return result

    async def delete_key(self, key_id: int) -> None:
        await self._json("DELETE", f"/keys/{key_id}")

    async def probe(self, key_id: int, *, wait_secs: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", f"/keys/{key_id}/probe", timeout=wait_secs + 5)
        return result

    async def summary(
        self, group_by: str, *, since: str, until: str, filters: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        params = {**(filters or {}), "group_by": group_by, "since": since, "until": until}
        result: dict[str, Any] = await self._json("GET", "/usage/summary", params=params)
        return result

    async def dimensions(self) -> list[str]:
        """The dimension names usable as `attributes.<name>` filters and groupings."""
        result: dict[str, Any] = await self._json("GET", "/usage/dimensions")
        return [str(name) for name in result["dimensions"]]

    async def billed(self, *, since: str, until: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/usage/billed", params={"since": since, "until": until})
        return result

    async def usage_page(self, params: Mapping[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/data", params=dict(params))
        return result

    async def open_session(self, credential: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "/sessions", json={"credential": credential})
        return result

    async def end_session(self) -> None:
        await self._json("DELETE", "/sessions/current")

    async def tokens(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json("GET", "/tokens")
        return result

    async def create_token(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "/tokens", json=dict(body))
        return result

    async def revoke_token(self, token_id: int) -> None:
        await self._json("DELETE", f"/tokens/{token_id}")

    async def budgets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json("GET", "/budgets")
        return result

    async def create_budget(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "/budgets", json=dict(body))
        return result

    async def change_budget(self, budget_id: int, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("PATCH", f"/budgets/{budget_id}", json=dict(body))
        return result

    async def delete_budget(self, budget_id: int) -> None:
        await self._json("DELETE", f"/budgets/{budget_id}")

    async def alerts(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json("GET", "/alerts", params=dict(params))
        return result

    async def webhooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json("GET", "/webhooks")
        return result

    async def create_webhook(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "/webhooks", json=dict(body))
        return result

    async def delete_webhook(self, webhook_id: int) -> None:
        await self._json("DELETE", f"/webhooks/{webhook_id}")

    async def deliveries(self, webhook_id: int, params: Mapping[str, str]) -> list[dict[str, Any]]:
        path = f"/webhooks/{webhook_id}/deliveries"
        result: list[dict[str, Any]] = await self._json("GET", path, params=dict(params))
        return result

    async def test_webhook(self, webhook_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", f"/webhooks/{webhook_id}/test", timeout=20)
        return result

    async def audit(self, params: Mapping[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/audit", params=dict(params))
        return result

    async def metrics(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/metrics", headers={"Accept": "application/json"})
        return result

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            headers = {**self._headers, **kwargs.pop("headers", {})}
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise ApiError(504, "The api did not answer in time. Try again in a moment.") from None
        except httpx.TransportError:
            raise ApiError(502, "The api cannot be reached right now. Check that cg-api is running.") from None
        if response.status_code == 401 and self._headers:
            raise SessionEndedError
        if response.status_code >= 400:
            raise error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def error_from(response: httpx.Response) -> ApiError:
    """The api's own words where it gave any (`{"detail": ...}`), per field for a 422."""
    status = response.status_code
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    fields: dict[str, str] = {}
    if isinstance(detail, list):
        for item in detail:
            loc = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")]
            fields[loc[0] if loc else "form"] = str(item.get("msg", "invalid value"))
        message = "Some values were not accepted: " + "; ".join(f"{k}: {v}" for k, v in fields.items())
    elif isinstance(detail, str) and detail:
        message = detail[0].upper() + detail[1:]
    else:
        message = DEFAULT_MESSAGES.get(status, f"The api answered {status}.")
    if status == 429:
        message = "The api is rate limiting this dashboard; try again in a few seconds."
    elif status == 403 and not isinstance(detail, list):
        message = "Your sign-in can only look: making changes needs the admin key or an admin token."
    elif status >= 500 and not isinstance(detail, str):
        message = f"The api failed ({status}); see its logs."
    return ApiError(status, message, fields)


DEFAULT_MESSAGES = {
    401: "The api does not accept the dashboard's DASHBOARD_API_KEY, or the session has ended.",
    404: "Not found: it may have been deleted meanwhile.",
    405: "The api does not offer this yet.",
    409: "This conflicts with what is stored.",
}
