"""The dashboard's settings. It never opens PostgreSQL, so unlike the other services it needs no DATABASE_URL."""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cg_common.settings import MIN_PRODUCTION_API_KEY_LENGTH, WEAK_API_KEYS, require_scheme

MIN_SESSION_SECRET_LENGTH = 32


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    debug: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    nats_url: str
    redis_url: str
    api_key: str = Field(min_length=1)
    api_url: str = "http://127.0.0.1:5001"
    web_port: int = Field(default=5002, ge=1, le=65535)
    dashboard_public: bool = False
    # Signs the session cookie; when unset, derived from API_KEY (so replicas agree without another secret to share).
    session_secret: str = ""
    session_max_age_secs: int = Field(default=12 * 3600, ge=60)
    login_attempts_per_minute: int = Field(default=5, ge=1)
    api_timeout_secs: float = Field(default=10.0, gt=0, le=120)
    # POST /keys/{id}/probe may wait PROBE_WAIT_SECS at the api; the dashboard waits a little longer than that.
    probe_wait_secs: float = Field(default=15.0, gt=0, le=120)
    redis_timeout_ms: int = Field(default=100, ge=5, le=5000)

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        return require_scheme(value, ("nats", "tls", "ws", "wss"), "NATS_URL")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return require_scheme(value, ("redis", "rediss", "unix"), "REDIS_URL")

    @field_validator("api_url")
    @classmethod
    def _api_scheme(cls, value: str) -> str:
        return require_scheme(value, ("http", "https"), "API_URL").rstrip("/")

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> WebSettings:
        if not self.is_production:
            return self
        if self.api_key.lower() in WEAK_API_KEYS or len(self.api_key) < MIN_PRODUCTION_API_KEY_LENGTH:
            raise ValueError(
                f"API_KEY is too weak for ENV=production (use {MIN_PRODUCTION_API_KEY_LENGTH}+ random characters)"
            )
        if self.session_secret and len(self.session_secret) < MIN_SESSION_SECRET_LENGTH:
            raise ValueError(f"SESSION_SECRET must have {MIN_SESSION_SECRET_LENGTH}+ characters when ENV=production")
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def cookie_secret(self) -> str:
        """SESSION_SECRET, or a key derived from API_KEY: never the admin key itself, which must not sign cookies."""
        if self.session_secret:
            return self.session_secret
        return hmac.new(self.api_key.encode(), b"cost-guardian web session v1", hashlib.sha256).hexdigest()
