"""schemathesis fuzzes every operation of the api's own OpenAPI document: no input may cause a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from cg_api.app import create_app
from cg_devstack.servers import Stack
from tests.conftest import ADMIN_KEY, settings_from
from tests.support.processes import running_api


@pytest.fixture(scope="module")
def running(
    stack: Stack, database_url: str, master_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    env = {
        "NATS_URL": stack.nats_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": stack.redis_url,
        "MASTER_KEY": master_key,
        "API_KEY": ADMIN_KEY,
        "RATE_LIMIT_ENABLED": "false",
        "PROBE_WAIT_SECS": "0.2",
        "LOG_LEVEL": "warning",
    }
    with running_api(env, tmp_path_factory.mktemp("fuzz") / "api.log") as api:
        yield api.url, {"X-API-Key": ADMIN_KEY}


def openapi_document() -> dict[str, Any]:
    """The document the api serves at /openapi.json, built without connecting anything."""
    settings = settings_from(
        {"NATS_URL": "nats://x", "DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x", "API_KEY": ADMIN_KEY}
    )
    return create_app(settings).openapi()


schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: Any, running: tuple[str, dict[str, str]]) -> None:
    url, headers = running
    if case.path.endswith("/probe"):
        # No prober runs here: a probe of an existing key rightly ends in its documented 504; nothing else may be 5xx.
        response = case.call(base_url=url, headers=headers)
        assert response.status_code < 500 or response.status_code == 504, response.text
        return
    case.call_and_validate(base_url=url, headers=headers, checks=[not_a_server_error])


def test_the_fuzzed_document_is_the_served_one(running: tuple[str, dict[str, str]]) -> None:
    url, headers = running
    assert httpx.get(url + "/openapi.json").status_code == 401  # the document needs a credential too
    assert httpx.get(url + "/openapi.json", headers=headers).json() == openapi_document()
