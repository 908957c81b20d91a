"""The prober's settings: the shared ones, the master keys, where OpenAI is and how hard to probe it."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from cg_common.settings import KeyVaultSettings


class ProberSettings(KeyVaultSettings):
    prober_port: int = Field(default=5005, ge=1, le=65535)  # health and Prometheus metrics
    # Probes in flight at once in one replica: with ~100 ms upstream latency, 64 carry ~600 probes/s.
    prober_concurrency: int = Field(default=64, ge=1, le=4096)
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = Field(default="gpt-4o-mini", min_length=1, max_length=200)
    probe_mode: Literal["models", "completion"] = "models"
    probe_timeout_secs: float = Field(default=10.0, gt=0, le=300)
    # Deliveries of one request (first try included) before a transient failure becomes the final result.
    probe_max_attempts: int = Field(default=4, ge=1, le=20)
    probe_retry_base_secs: float = Field(default=2.0, gt=0, le=600)  # back-off: base, 2×base, 4×base… (≤ 5 min)
    # Organization usage of admin keys: how far back the first pull reaches.
    org_usage_lookback_hours: int = Field(default=48, ge=1, le=24 * 31)

    @field_validator("openai_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("OPENAI_BASE_URL must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _keys_travel_encrypted_in_production(self) -> ProberSettings:
        # Plain http would send every stored key in the clear; only a loopback test server may be plain.
        url = urlsplit(self.openai_base_url)
        if self.is_production and url.scheme == "http" and not _is_loopback(url.hostname or ""):
            raise ValueError("OPENAI_BASE_URL must be https:// when ENV=production (plain http only on loopback)")
        return self

    @model_validator(mode="after")
    def _ack_wait_outlasts_a_probe(self) -> ProberSettings:
        # Otherwise JetStream hands a request still being probed to another replica, and the key is probed twice.
        if self.prober_ack_wait_secs <= self.probe_timeout_secs + 1:
            raise ValueError("PROBER_ACK_WAIT_SECS must exceed PROBE_TIMEOUT_SECS by more than a second")
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
