"""The api's settings: the shared ones plus admin auth, rate limiting, CORS and ports."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from cg_common.settings import CommaList, KeyVaultSettings, require_strong_api_key, split_commas


class ApiSettings(KeyVaultSettings):
    api_key: str = Field(min_length=1)
    api_port: int = Field(default=5001, ge=1, le=65535)
    web_port: int = Field(default=5002, ge=1, le=65535)
    # Public URL of the dashboard, for the /dashboard redirect; derived from WEB_PORT when not given.
    web_url: str = ""
    rate_limit_rpm: int = Field(default=60, ge=1)
    rate_limit_burst: int = Field(default=60, ge=1)
    rate_limit_exempt: CommaList = ("/ping", "/dashboard")
    # What to do when Redis does not answer in time: admit the request (open) or answer 503 (closed).
    rate_limit_fail_mode: Literal["open", "closed"] = "open"
    rate_limit_enabled: bool = True
    redis_timeout_ms: int = Field(default=100, ge=5, le=5000)
    allowed_origins: CommaList = ("*",)
    dashboard_public: bool = False
    # How long POST /keys/{id}/probe waits for the pipeline's answer.
    probe_wait_secs: float = Field(default=15.0, gt=0, le=120)
    # How long a request waits for a PostgreSQL connection before answering 503 (well inside the 2 s the api promises).
    database_wait_secs: float = Field(default=1.5, gt=0, le=30)
    # How long POST /usage/events waits in all for JetStream's acks (re-sends included) before answering 503; acks
    # take milliseconds, and a 503 costs the caller only a re-send.
    publish_timeout_secs: float = Field(default=1.5, gt=0, le=60)

    _split = field_validator("rate_limit_exempt", "allowed_origins", mode="before")(split_commas)

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> ApiSettings:
        if not self.is_production:
            return self
        require_strong_api_key(self.api_key)
        if "*" in self.allowed_origins:
            raise ValueError("ALLOWED_ORIGINS=* is refused when ENV=production; list the dashboard's origin")
        return self

    @property
    def dashboard_url(self) -> str:
        base = (self.web_url or f"http://127.0.0.1:{self.web_port}").rstrip("/")
        return base if base.endswith("/dashboard") else base + "/dashboard"
