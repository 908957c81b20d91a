"""The fake OpenAI server speaks OpenAI's real shapes: the official `openai` SDK parses every answer and raises the
error class OpenAI's own answers raise."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.admin.organization.project import Project
from openai.types.admin.organization.usage_completions_response import (
    DataResultOrganizationUsageCompletionsResult as UsageResult,
)
from openai.types.admin.organization.usage_costs_response import DataResultOrganizationCostsResult as CostsResult

from tests.fake_openai import FakeServer, fake_key, organization, running_fake_openai

ATTRIBUTION = ("model", "project_id", "user_id", "api_key_id")


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


@pytest.mark.parametrize(
    "group_by",
    [[], ["project_id"], ["user_id"], ["api_key_id", "user_id"], ["model", "project_id", "user_id", "api_key_id"]],
)
def test_usage_is_split_per_combination_of_the_grouped_fields_with_null_for_the_others(
    fake: FakeServer, group_by: list[str]
) -> None:
    admin = fake_key(admin=True)
    now = int(time.time())
    start = now - now % 3600 - 3 * 3600
    window: dict[str, Any] = {"start_time": start, "end_time": start + 3 * 3600, "bucket_width": "1h"}
    answer = httpx.get(
        fake.base_url + "/organization/usage/completions",
        params={**window, "group_by": group_by},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()
    parsed = client(fake, admin).admin.organization.usage.completions(**window, group_by=group_by)  # type: ignore[arg-type]
    assert len(parsed.data) == len(answer["data"]) == 3
    for bucket in answer["data"]:
        records = organization.usage_records(bucket["start_time"])
        results = [UsageResult.model_validate(result, strict=True) for result in bucket["results"]]
        combinations = [tuple(getattr(result, field) for field in group_by) for result in results]
        assert sorted(combinations, key=repr) == sorted(
            {tuple(getattr(record, field) for field in group_by) for record in records}, key=repr
        )  # one result per combination OpenAI saw, none twice
        for result in results:
            assert all(getattr(result, field) is None for field in ATTRIBUTION if field not in group_by)
        assert sum(result.num_model_requests for result in results) == sum(record.requests for record in records)
        assert sum(result.input_tokens for result in results) == sum(record.input_tokens for record in records)


def test_usage_by_user_holds_service_accounts_without_a_user_and_several_users_of_one_key_group(
    fake: FakeServer,
) -> None:
    """What the prober has to handle: `user_id` null where a key belongs to no user, and a (model, project, key)
    group split between users where usage had no API key."""
    now = int(time.time())
    start = now - now % 3600 - 24 * 3600
    usage = client(fake, fake_key(admin=True)).admin.organization.usage.completions(
        start_time=start,
        end_time=start + 24 * 3600,
        bucket_width="1h",
        group_by=["model", "project_id", "user_id", "api_key_id"],
    )
    results = [(b.start_time, r) for b in usage.data for r in b.results if isinstance(r, UsageResult)]
    assert len(results) == sum(len(b.results) for b in usage.data)
    assert any(r.user_id is None and r.api_key_id for _, r in results)
    users_per_group = Counter((hour, r.model, r.project_id, r.api_key_id) for hour, r in results)
    assert max(users_per_group.values()) > 1


def test_an_unknown_grouping_is_refused_as_openai_refuses_it(fake: FakeServer) -> None:
    answer = httpx.get(
        fake.base_url + "/organization/usage/completions",
        params={"start_time": int(time.time()) - 3600, "group_by": ["team"]},
        headers={"Authorization": f"Bearer {fake_key(admin=True)}"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "group_by"


def test_projects_parse_with_the_sdk_page_by_page_archived_ones_only_when_asked(fake: FakeServer) -> None:
    admin = fake_key(admin=True)
    everything = list(client(fake, admin).admin.organization.projects.list(limit=1, include_archived=True))
    assert [p.id for p in everything] == [p.id for p in organization.PROJECTS]  # three pages of one, followed
    assert all(isinstance(p, Project) and p.object == "organization.project" and p.name for p in everything)
    assert {p.id: p.status for p in everything}["proj_gamma"] == "archived"
    active = list(client(fake, admin).admin.organization.projects.list())
    assert [p.id for p in active] == ["proj_alpha", "proj_beta"]
    raw = httpx.get(
        fake.base_url + "/organization/projects",
        params={"limit": 2, "include_archived": "true"},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()
    assert (raw["object"], raw["first_id"], raw["last_id"], raw["has_more"]) == (
        "list",
        "proj_alpha",
        "proj_beta",
        True,
    )
    assert all(Project.model_validate(project, strict=True).archived_at is None for project in raw["data"])
    with pytest.raises(openai.PermissionDeniedError):
        client(fake, fake_key("usageonly", admin=True)).admin.organization.projects.list()
    with pytest.raises(openai.AuthenticationError):
        client(fake, fake_key()).admin.organization.projects.list()
