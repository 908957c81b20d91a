"""A bad or missing setting stops start-up with one line naming it; production refuses dev defaults."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from cg_common.crypto import new_master_key
from cg_common.settings import describe_error
from cg_prober.settings import ProberSettings
from tests.conftest import settings_from
from tests.support.processes import cg_api_command

GOOD = {
    "NATS_URL": "nats://127.0.0.1:4222",
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/costguardian",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "API_KEY": "5f0c2e9a7b1d4c6e8f3a0b2d4e6f8a1c3e5b7d9f",
    "MASTER_KEY": new_master_key(),
}


def error_line(env: dict[str, str]) -> str:
    with pytest.raises(ValidationError) as caught:
        settings_from(env)
    return describe_error(caught.value)


def test_good_settings_load_with_contract_defaults() -> None:
    settings = settings_from(GOOD)
    assert settings.probe_interval_secs == 300
    assert (settings.rate_limit_rpm, settings.rate_limit_burst) == (60, 60)
    assert settings.rate_limit_exempt == ("/ping", "/dashboard")
    assert settings.api_port == 5001
    assert settings.env == "development"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"NATS_URL": None}, "NATS_URL: Field required"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL: DATABASE_URL must start with postgresql:// or postgres://"),
        ({"REDIS_URL": "not a url"}, "REDIS_URL:"),
        ({"MASTER_KEY": "short"}, "MASTER_KEY: entry 1 is not a Fernet key"),
        ({"MASTER_KEY": new_master_key() + ",nope"}, "MASTER_KEY: entry 2 is not a Fernet key"),
        ({"RATE_LIMIT_RPM": "lots"}, "RATE_LIMIT_RPM:"),
        ({"PROBE_INTERVAL_SECS": "0"}, "PROBE_INTERVAL_SECS:"),
        ({"ENV": "staging"}, "ENV:"),
        ({"RATE_LIMIT_FAIL_MODE": "maybe"}, "RATE_LIMIT_FAIL_MODE:"),
    ],
)
def test_bad_setting_is_named_in_one_line(change: dict[str, str | None], expected: str) -> None:
    env = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    line = error_line(env)
    assert expected in line
    assert "\n" not in line


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"MASTER_KEY": ""}, "MASTER_KEY is required when ENV=production"),
        ({"API_KEY": "changeme"}, "API_KEY is too weak"),
        ({"API_KEY": "short-but-random-1234"}, "API_KEY is too weak"),
        ({"API_KEY": "ab" * 20}, "API_KEY is too weak"),  # long, but 2 distinct characters
        ({"DEBUG": "true"}, "DEBUG=true is refused when ENV=production"),
        ({"DASHBOARD_API_KEY": "changeme"}, "DASHBOARD_API_KEY is too weak"),
        ({"ALLOWED_ORIGINS": "*"}, "ALLOWED_ORIGINS=* is refused"),
    ],
)
def test_production_refuses_dev_defaults(change: dict[str, str], expected: str) -> None:
    env = {**GOOD, "ENV": "production", "ALLOWED_ORIGINS": "https://costs.example.com", **change}
    assert expected in error_line(env)


@pytest.mark.parametrize(
    ("base_url", "refused"),
    [
        ("http://openai-proxy.internal/v1", True),
        ("http://10.0.0.5:8080/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://127.0.0.1:8080/v1", False),
        ("http://localhost:8080/v1", False),
        ("http://[::1]:8080/v1", False),
    ],
)
def test_production_sends_keys_to_openai_only_over_https_or_loopback(base_url: str, refused: bool) -> None:
    env = {**{k.lower(): v for k, v in GOOD.items()}, "env": "production", "openai_base_url": base_url}
    if refused:
        with pytest.raises(ValidationError, match="OPENAI_BASE_URL must be https://"):
            ProberSettings.model_validate(env)
    else:
        assert ProberSettings.model_validate(env).openai_base_url == base_url


def test_production_accepts_real_values() -> None:
    env = {**GOOD, "ENV": "production", "ALLOWED_ORIGINS": "https://costs.example.com"}
    assert settings_from(env).is_production


def test_service_stops_at_start_with_one_clear_line(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], **GOOD, "MASTER_KEY": "not-a-fernet-key"}
    result = subprocess.run(
        [*cg_api_command(), "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("invalid configuration: MASTER_KEY: entry 1 is not a Fernet key")
