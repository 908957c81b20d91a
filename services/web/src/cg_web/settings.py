"""The dashboard's settings. It never opens PostgreSQL, so unlike the other services it needs no DATABASE_URL."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field, field_validator, model_validator

from cg_common.settings import MessagingSettings, require_scheme, require_strong_api_key

MIN_SESSION_SECRET_LENGTH = 32


class WebSettings(MessagingSettings):
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

    @field_validator("api_url")
    @classmethod
    def _api_scheme(cls, value: str) -> str:
        return require_scheme(value, ("http", "https"), "API_URL").rstrip("/")

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> WebSettings:
        if not self.is_production:
            return self
        require_strong_api_key(self.api_key)
        if self.session_secret and len(self.session_secret) < MIN_SESSION_SECRET_LENGTH:
            raise ValueError(f"SESSION_SECRET must have {MIN_SESSION_SECRET_LENGTH}+ characters when ENV=production")
        return self

    @property
    def cookie_secret(self) -> str:
        """SESSION_SECRET, or a key derived from API_KEY: never the admin key itself, which must not sign cookies."""
        if self.session_secret:
            return self.session_secret
        return hmac.new(self.api_key.encode(), b"cost-guardian web session v1", hashlib.sha256).hexdigest()
