"""The fake OpenAI server speaks OpenAI's real shapes: the official `openai` SDK parses every answer and raises the
error class OpenAI's own answers raise."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from openai.types.admin.organization.usage_completions_response import (
    DataResultOrganizationUsageCompletionsResult as UsageResult,
)
from openai.types.admin.organization.usage_costs_response import DataResultOrganizationCostsResult as CostsResult

from tests.fake_openai import FakeServer, fake_key, running_fake_openai


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    with running_fake_openai(slow_ms=3000) as server:
        yield server


def client(server: FakeServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, admin_api_key=key, base_url=server.base_url, max_retries=0, timeout=10)


def test_models_and_chat_completion_parse_with_the_sdk(fake: FakeServer) -> None:
    sdk = client(fake, fake_key())
    models = sdk.models.list()
    assert {m.id for m in models.data} >= {"gpt-4o-mini"}
    assert all(m.object == "model" for m in models.data)
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=1
    )
    assert completion.object == "chat.completion"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 1
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


@pytest.mark.parametrize(
    ("behaviour", "error_class", "status", "code", "type_"),
    [
        ("invalid", openai.AuthenticationError, 401, "invalid_api_key", "invalid_request_error"),
        ("echo", openai.AuthenticationError, 401, "invalid_api_key", "invalid_request_error"),
        ("quota", openai.RateLimitError, 429, "insufficient_quota", "insufficient_quota"),
        ("ratelimited", openai.RateLimitError, 429, "rate_limit_exceeded", "requests"),
        ("down", openai.InternalServerError, 503, None, "server_error"),
    ],
)
def test_errors_raise_what_openai_errors_raise(
    fake: FakeServer, behaviour: str, error_class: type[openai.APIStatusError], status: int, code: str, type_: str
) -> None:
    with pytest.raises(error_class) as raised:
        client(fake, fake_key(behaviour)).models.list()
    assert raised.value.status_code == status
    assert raised.value.code == code
    assert raised.value.type == type_
    if behaviour == "ratelimited":
        assert raised.value.response.headers["retry-after"] == "1"


def test_flaky_fails_every_other_request_and_slow_is_slow(fake: FakeServer) -> None:
    flaky = client(fake, fake_key("flaky"))
    with pytest.raises(openai.InternalServerError):
        flaky.models.list()
    flaky.models.list()
    with pytest.raises(openai.APITimeoutError):
        client(fake, fake_key("slow")).with_options(timeout=0.5).models.list()


def test_organization_usage_and_costs_parse_and_paginate(fake: FakeServer) -> None:
    admin = client(fake, fake_key(admin=True))
    now = int(time.time())
    start = now - now % 3600 - 30 * 3600
    usage = admin.admin.organization.usage.completions(
        start_time=start, end_time=start + 30 * 3600, bucket_width="1h", group_by=["model", "project_id", "api_key_id"]
    )
    assert usage.object == "page"
    assert len(usage.data) == 24
    assert usage.has_more
    assert usage.next_page
    results = [r for bucket in usage.data for r in bucket.results]
    assert results
    assert all(isinstance(r, UsageResult) and r.model and r.project_id for r in results)
    rest = admin.admin.organization.usage.completions(
        start_time=start, end_time=start + 30 * 3600, bucket_width="1h", page=usage.next_page
    )
    assert len(rest.data) == 6
    assert not rest.has_more
    costs = admin.admin.organization.usage.costs(start_time=now - 10 * 86_400, group_by=["project_id"])
    assert costs.object == "page"
    assert costs.has_more
    costs_results = [r for bucket in costs.data for r in bucket.results]
    assert all(isinstance(r, CostsResult) for r in costs_results)
    amounts = [r.amount for r in costs_results if isinstance(r, CostsResult)]
    assert amounts
    assert all(a is not None and a.currency == "usd" and a.value for a in amounts)
    with pytest.raises(openai.AuthenticationError):
        client(fake, fake_key()).admin.organization.usage.costs(start_time=now - 86_400)
