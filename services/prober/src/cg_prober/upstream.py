"""Calls to OpenAI with one shared httpx client, and what each answer means (`ProbeOutcome`).

Nothing here logs or keeps the key: it is passed in for one call and only ever sent in the Authorization header.
Error messages are returned raw; the caller scrubs them before they go anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from cg_common.probes import TRANSIENT_OUTCOMES, ProbeMode, ProbeOutcome

MAX_RETRY_AFTER_SECS = 300.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One call's result. `retryable` is whether trying again later may give another answer."""

    outcome: ProbeOutcome
    latency_ms: float
    http_status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_after_secs: float | None = None
    body: Any = None  # the parsed JSON of a successful answer

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def retryable(self) -> bool:
        # Other 4xx (a bad model name, a malformed request) will not heal by themselves: not retried.
        client_error = self.http_status is not None and 400 <= self.http_status < 500
        return self.outcome in TRANSIENT_OUTCOMES and not (client_error and self.http_status not in (408, 429))


def new_client(*, base_url: str, timeout_secs: float, concurrency: int) -> httpx.AsyncClient:
    """The one client a prober shares across all its probes: pooled keep-alive connections, bounded timeouts.

    httpx's API over aiohttp's connection pool: httpcore's own pool checks every pooled connection on every request,
    which at 100+ connections cost more CPU than everything else a probe does (see docs/prober.md)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_secs, connect=min(timeout_secs, 5.0)),
        transport=AiohttpTransport(limits=limits),
        headers={"User-Agent": "cost-guardian-prober"},
        follow_redirects=False,
    )


async def call(
    client: httpx.AsyncClient,
    api_key: str,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    json_body: Mapping[str, Any] | None = None,
) -> Attempt:
    """One request with `api_key`, classified; never raises for what OpenAI or the network does."""
    started = time.perf_counter()
    try:
        response = await client.request(
            method,
            path,
            params=params,
            content=orjson.dumps(json_body) if json_body is not None else None,
            headers={
                "Authorization": f"Bearer {api_key}",
                **({"Content-Type": "application/json"} if json_body is not None else {}),
            },
        )
    except httpx.TimeoutException as error:
        if _refused(error):
            return Attempt("network_error", _ms_since(started), error_message=f"cannot connect: {error}")
        return Attempt("timeout", _ms_since(started), error_message="no answer within the probe timeout")
    except httpx.TransportError as error:
        return Attempt("network_error", _ms_since(started), error_message=f"{type(error).__name__}: {error}")
    latency = _ms_since(started)
    body = _json_or_none(response.content)
    if response.status_code < 300 and body is not None:
        return Attempt("ok", latency, http_status=response.status_code, body=body)
    return classify(response.status_code, body, response.headers, latency, response.text)


def classify(status: int, body: Any, headers: Mapping[str, str], latency_ms: float, text: str = "") -> Attempt:
    """An error answer's outcome. A 429 is told apart by the error's `type` and `code`: quota exhausted is
    `insufficient_quota` (it will not pass by waiting), anything else is a rate limit (it will)."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = _text(error.get("code"))
    type_ = _text(error.get("type"))
    # Whole: the caller scrubs the key (which OpenAI may echo back) out of it first, and only then shortens it, so
    # that a cut can never leave part of a key too short to be recognised.
    message = _text(error.get("message")) or text or None
    outcome: ProbeOutcome
    if status in (401, 403):
        outcome = "invalid_api_key"
    elif status == 429:
        quota = "insufficient_quota" in (code, type_)
        outcome = "insufficient_quota" if quota else "rate_limited"
    elif status == 408:
        outcome = "timeout"
    else:
        outcome = "upstream_error"
    return Attempt(
        outcome,
        latency_ms,
        http_status=status,
        error_code=code or type_ or (None if status < 500 else "server_error"),
        error_message=message,
        retry_after_secs=retry_after(headers) if outcome in TRANSIENT_OUTCOMES else None,
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds or an HTTP date), as OpenAI's own SDK reads them; capped."""
    value: float | None = None
    try:
        if "retry-after-ms" in headers:
            value = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            raw = headers["retry-after"]
            try:
                value = float(raw)
            except ValueError:
                value = parsedate_to_datetime(raw).timestamp() - time.time()
    except (TypeError, ValueError):
        return None
    if value is None or value < 0:
        return None
    return min(value, MAX_RETRY_AFTER_SECS)


def probe_request(mode: ProbeMode, model: str) -> tuple[str, str, dict[str, Any] | None]:
    """Method, path and body of a probe: `GET /models` (free), or a one-token chat completion (priced)."""
    if mode == "models":
        return "GET", "/models", None
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_completion_tokens": 1}
    return "POST", "/chat/completions", body


def _refused(error: httpx.TimeoutException) -> bool:
    """httpx-aiohttp reports a refused or unresolvable connection as a ConnectTimeout; the cause tells them apart."""
    cause = error.__cause__
    return isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _json_or_none(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
