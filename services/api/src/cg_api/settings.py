"""The api's settings: the shared ones plus admin auth, rate limiting, CORS and ports."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cg_common.client_address import Network, parse_networks
from cg_common.settings import CommaList, KeyVaultSettings, require_strong_api_key, split_commas
from cg_common.webhook_targets import WebhookTargetSettings

EXEMPTABLE = frozenset({"/ping", "/dashboard"})


class ApiSettings(KeyVaultSettings, WebhookTargetSettings):
    api_key: str = Field(min_length=1)
    api_port: int = Field(default=5001, ge=1, le=65535)
    web_port: int = Field(default=5002, ge=1, le=65535)
    # Public URL of the dashboard, for the /dashboard redirect; derived from WEB_PORT when not given.
    web_url: str = ""
    rate_limit_rpm: int = Field(default=60, ge=1)
    rate_limit_burst: int = Field(default=60, ge=1)
    # Paths answered without any credential and without counting; only ones that disclose nothing may be listed.
    rate_limit_exempt: CommaList = ("/ping", "/dashboard")
    # What to do when Redis does not answer in time: admit the request (open) or answer 503 (closed).
    rate_limit_fail_mode: Literal["open", "closed"] = "open"
    rate_limit_enabled: bool = True
    redis_timeout_ms: int = Field(default=100, ge=5, le=5000)
    allowed_origins: CommaList = ("*",)
    # The dashboard's own credential to the api (docs/access.md): it can only open sessions for people who sign in
    # with the admin key or an admin/read token, and draws from a bucket of its own. Empty: no dashboard sign-in.
    dashboard_api_key: str = ""
    dashboard_rate_limit_rpm: int = Field(default=6000, ge=1)
    dashboard_rate_limit_burst: int = Field(default=600, ge=1)
    dashboard_session_hours: float = Field(default=12, gt=0, le=24 * 30)
    # Proxies whose X-Forwarded-For is believed (CIDRs); by default none, and the socket's peer is the client.
    trusted_proxies: CommaList = ()
    dashboard_public: bool = False
    # The largest request body of any route but POST /usage/events (whose batches may reach 5 MB).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # How long POST /keys/{id}/probe waits for the pipeline's answer.
    probe_wait_secs: float = Field(default=15.0, gt=0, le=120)
    # How long a request waits for a PostgreSQL connection before answering 503 (well inside the 2 s the api promises).
    database_wait_secs: float = Field(default=1.5, gt=0, le=30)
    # How long POST /usage/events waits in all for JetStream's acks (re-sends included) before answering 503; acks
    # take milliseconds, and a 503 costs the caller only a re-send.
    publish_timeout_secs: float = Field(default=1.5, gt=0, le=60)

    _split = field_validator("rate_limit_exempt", "allowed_origins", "trusted_proxies", mode="before")(split_commas)

    @field_validator("rate_limit_exempt")
    @classmethod
    def _only_harmless_exemptions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = sorted(set(value) - EXEMPTABLE)
        if refused:
            raise ValueError(
                f"RATE_LIMIT_EXEMPT may list only {', '.join(sorted(EXEMPTABLE))}: an exempt path answers without "
                f"any credential, so {', '.join(refused)} cannot be exempt"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)
        return value

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> ApiSettings:
        if not self.is_production:
            return self
        require_strong_api_key(self.api_key)
        if self.dashboard_api_key:
            require_strong_api_key(self.dashboard_api_key, name="DASHBOARD_API_KEY")
        if "*" in self.allowed_origins:
            raise ValueError("ALLOWED_ORIGINS=* is refused when ENV=production; list the dashboard's origin")
        return self

    @cached_property
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def dashboard_url(self) -> str:
        base = (self.web_url or f"http://127.0.0.1:{self.web_port}").rstrip("/")
        return base if base.endswith("/dashboard") else base + "/dashboard"
