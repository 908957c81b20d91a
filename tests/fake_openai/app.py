"""The fake's HTTP side: OpenAI's paths, bodies, error envelope and headers; what happens depends on the key.

A key names its behaviour right after its prefix (`fake_key("quota")` → `sk-proj-quota-…`); unknown names behave as
`valid`. Admin keys (`sk-admin-…`) also read the organization's usage, costs and projects; a `usageonly` admin key
reads usage and costs but is refused the projects (403, as a key without that permission is). Every request is
counted per key, so tests can check that a failing key is not hammered, and a `flaky` key fails deterministically
(odd-numbered requests).
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fake_openai import organization

BEHAVIOURS = ("valid", "invalid", "quota", "ratelimited", "slow", "flaky", "down", "echo", "usageonly")
PREFIXES = ("sk-admin-", "sk-proj-", "sk-svcacct-", "sk-")
ALPHABET = string.ascii_letters + string.digits
MODEL_IDS = ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o", "gpt-4o-2024-08-06")
MODEL_CREATED = 1_721_172_741
PROMPT_TOKENS = 8
CACHED_TOKENS = 0
COMPLETION_TOKENS = 1


def fake_key(behaviour: str = "valid", *, admin: bool = False) -> str:
    """A random key whose behaviour the fake reads from it."""
    prefix = "sk-admin-" if admin else "sk-proj-"
    return f"{prefix}{behaviour}-" + "".join(secrets.choice(ALPHABET) for _ in range(40))


def behaviour_of(key: str) -> str:
    prefix = next((p for p in PREFIXES if key.startswith(p)), None)
    if prefix is None:
        return "invalid"
    name = key[len(prefix) :].partition("-")[0]
    return name if name in BEHAVIOURS else "valid"


def error_body(message: str, *, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope, the same for every status."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def masked(key: str) -> str:
    """How OpenAI quotes a wrong key in a 401: prefix, stars, last four."""
    prefix = next((p for p in PREFIXES if key.startswith(p)), "")
    return f"{prefix}{'*' * 4}{key[-4:]}"


class FakeOpenAI:
    """The app plus what it has seen: requests per key and the organization usage it served."""

    def __init__(self, *, latency_ms: float = 0.0, slow_ms: float = 5000.0) -> None:
        self.latency_ms = latency_ms
        self.slow_ms = slow_ms
        self.requests: Counter[str] = Counter()
        # (bucket start, group) → the result served: what an exactly-once ledger must end up with.
        self.served_usage: dict[tuple[int, tuple[Any, ...]], dict[str, Any]] = {}
        self.late_usage: dict[int, int] = {}  # hour start → requests per group reported after the hour ended
        self.served_costs: dict[tuple[int, Any], dict[str, Any]] = {}
        # At most this many projects a page (OpenAI's limit is 100): tests lower it to make a caller follow pages.
        self.projects_page_max = organization.MAX_PROJECTS_LIMIT
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/organization/usage/completions", self.usage_completions),
                Route("/v1/organization/costs", self.costs),
                Route("/v1/organization/projects", self.projects),
            ]
        )

    def requests_of(self, key: str) -> int:
        return self.requests[key]

    async def _gate(self, request: Request, *, admin_only: bool = False) -> tuple[str, JSONResponse | None]:
        """Authenticate as OpenAI does and apply the key's behaviour; a response means the request ends there."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip()
        self.requests[key] += 1
        if not key:
            return key, _error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                type_="invalid_request_error",
                code=None,
            )
        behaviour = behaviour_of(key)
        if behaviour == "slow":
            await asyncio.sleep(self.slow_ms / 1000)
        if behaviour == "invalid":
            return key, _error(
                401,
                f"Incorrect API key provided: {masked(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                type_="invalid_request_error",
                code="invalid_api_key",
            )
        if behaviour == "echo":  # a broken upstream (a proxy, a gateway) quoting the whole key back
            return key, _error(
                401,
                f"Upstream rejected the request made with {key}: Incorrect API key provided: {key}",
                type_="invalid_request_error",
                code="invalid_api_key",
            )
        if behaviour == "quota":
            return key, _error(
                429,
                "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                type_="insufficient_quota",
                code="insufficient_quota",
            )
        if behaviour == "ratelimited":
            return key, _error(
                429,
                "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): "
                "Limit 3, Used 3, Requested 1. Please try again in 1s. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                type_="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": "1", "x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0"},
            )
        if behaviour == "down" or (behaviour == "flaky" and self.requests[key] % 2 == 1):
            return key, _error(
                500 if behaviour == "flaky" else 503,
                "The server had an error while processing your request. Sorry about that!",
                type_="server_error",
                code=None,
            )
        if admin_only and not key.startswith("sk-admin-"):
            return key, _error(
                401,
                "You have insufficient permissions for this operation. Missing scopes: api.usage.read.",
                type_="invalid_request_error",
                code=None,
            )
        return key, None

    async def models(self, request: Request) -> JSONResponse:
        _key, refusal = await self._gate(request)
        if refusal:
            return refusal
        data = [{"id": m, "object": "model", "created": MODEL_CREATED, "owned_by": "system"} for m in MODEL_IDS]
        return _json({"object": "list", "data": data})

    async def chat_completions(self, request: Request) -> JSONResponse:
        _key, refusal = await self._gate(request)
        if refusal:
            return refusal
        body = await request.json()
        model = str(body.get("model") or "")
        if not model or not isinstance(body.get("messages"), list):
            return _error(
                400,
                "you must provide a model parameter",
                type_="invalid_request_error",
                code=None,
                param="model",
            )
        if model not in MODEL_IDS:
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                type_="invalid_request_error",
                code="model_not_found",
            )
        created = int(time.time())
        return _json(
            {
                "id": "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "a").replace("_", "b"),
                "object": "chat.completion",
                "created": created,
                "model": "gpt-4o-mini-2024-07-18" if model == "gpt-4o-mini" else model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []},
                        "logprobs": None,
                        "finish_reason": "length",
                    }
                ],
                "usage": {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                    "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                },
                "service_tier": "default",
                "system_fingerprint": "fp_0ba0d124f1",
            }
        )

    async def usage_completions(self, request: Request) -> JSONResponse:
        _key, refusal = await self._gate(request, admin_only=True)
        if refusal:
            return refusal
        query = request.query_params
        bucket_width = query.get("bucket_width", "1d")
        group_by = [g for g in query.getlist("group_by") + query.getlist("group_by[]") if g]
        problem = _check_range(query.get("start_time"), bucket_width, ("1m", "1h", "1d")) or _check_grouping(group_by)
        if problem:
            return problem
        page = organization.usage_page(
            start_time=int(query["start_time"]),
            end_time=int(query.get("end_time") or time.time()),
            bucket_width=bucket_width,
            group_by=group_by,
            limit=int(query["limit"]) if query.get("limit") else None,
            page=query.get("page"),
            late=self.late_usage,
        )
        for bucket in page["data"]:
            for result in bucket["results"]:
                group = tuple(result[g] for g in group_by)
                self.served_usage[(bucket["start_time"], group)] = result
        return _json(page)

    async def costs(self, request: Request) -> JSONResponse:
        _key, refusal = await self._gate(request, admin_only=True)
        if refusal:
            return refusal
        query = request.query_params
        group_by = [g for g in query.getlist("group_by") + query.getlist("group_by[]") if g]
        problem = _check_range(query.get("start_time"), query.get("bucket_width", "1d"), ("1d",))
        if problem:
            return problem
        page = organization.costs_page(
            start_time=int(query["start_time"]),
            end_time=int(query.get("end_time") or time.time()),
            group_by=group_by,
            limit=int(query["limit"]) if query.get("limit") else None,
            page=query.get("page"),
        )
        for bucket in page["data"]:
            for result in bucket["results"]:
                self.served_costs[(bucket["start_time"], result["project_id"])] = result
        return _json(page)

    async def projects(self, request: Request) -> JSONResponse:
        key, refusal = await self._gate(request, admin_only=True)
        if refusal:
            return refusal
        if behaviour_of(key) == "usageonly":
            return _error(
                403,
                "You have insufficient permissions for this operation. Missing scopes: api.management.read.",
                type_="invalid_request_error",
                code=None,
            )
        query = request.query_params
        limit = query.get("limit", str(organization.DEFAULT_PROJECTS_LIMIT))
        if not limit.isdigit() or not 1 <= int(limit) <= organization.MAX_PROJECTS_LIMIT:
            return _error(
                400,
                f"Invalid limit '{limit}': it must be between 1 and 100.",
                type_="invalid_request_error",
                code=None,
                param="limit",
            )
        return _json(
            organization.projects_page(
                after=query.get("after"),
                limit=min(int(limit), self.projects_page_max),
                include_archived=query.get("include_archived", "false").lower() == "true",
            )
        )


def _check_grouping(group_by: list[str]) -> JSONResponse | None:
    unknown = [field for field in group_by if field not in organization.USAGE_GROUPINGS]
    if not unknown:
        return None
    return _error(
        400,
        f"Invalid group_by '{unknown[0]}': it must be one of {', '.join(organization.USAGE_GROUPINGS)}.",
        type_="invalid_request_error",
        code=None,
        param="group_by",
    )


def _check_range(start_time: str | None, bucket_width: str, allowed: tuple[str, ...]) -> JSONResponse | None:
    if not start_time or not start_time.isdigit():
        return _error(
            400,
            "Missing query parameter 'start_time'",
            type_="invalid_request_error",
            code=None,
            param="start_time",
        )
    if bucket_width not in allowed:
        return _error(
            400,
            f"Invalid bucket_width '{bucket_width}'",
            type_="invalid_request_error",
            code=None,
            param="bucket_width",
        )
    return None


def _error(
    status: int,
    message: str,
    *,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error as OpenAI answers it: its envelope, its status, its headers."""
    return _json(error_body(message, type_=type_, code=code, param=param), status, headers)


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body, status_code=status, headers={"x-request-id": "req_" + secrets.token_hex(16), **(headers or {})}
    )
