"""The dashboard's settings. It never opens PostgreSQL, so unlike the other services it needs no DATABASE_URL."""

from __future__ import annotations

import hashlib
import hmac
from functools import cached_property

from pydantic import Field, field_validator, model_validator

from cg_common.client_address import Network, parse_networks
from cg_common.settings import CommaList, MessagingSettings, require_scheme, require_strong_api_key, split_commas

MIN_SESSION_SECRET_LENGTH = 32


class WebSettings(MessagingSettings):
    # The dashboard's own credential to the api (the api's DASHBOARD_API_KEY): alone it can only open sessions for
    # people who sign in, and it draws from a rate-limit bucket no script shares.
    dashboard_api_key: str = Field(min_length=1)
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
    # The largest request body (every form of the dashboard is far smaller).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # Proxies whose X-Forwarded-For is believed for sign-in limits (CIDRs); by default none.
    trusted_proxies: CommaList = ()

    _split = field_validator("trusted_proxies", mode="before")(split_commas)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)
        return value

    @field_validator("api_url")
    @classmethod
    def _api_scheme(cls, value: str) -> str:
        return require_scheme(value, ("http", "https"), "API_URL").rstrip("/")

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> WebSettings:
        if not self.is_production:
            return self
        require_strong_api_key(self.dashboard_api_key, name="DASHBOARD_API_KEY")
        if self.session_secret and len(self.session_secret) < MIN_SESSION_SECRET_LENGTH:
            raise ValueError(f"SESSION_SECRET must have {MIN_SESSION_SECRET_LENGTH}+ characters when ENV=production")
        return self

    @cached_property
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def cookie_secret(self) -> str:
        """SESSION_SECRET, or a key derived from DASHBOARD_API_KEY (so replicas agree without another secret to
        share): never the credential itself."""
        if self.session_secret:
            return self.session_secret
        return hmac.new(self.dashboard_api_key.encode(), b"cost-guardian web session v2", hashlib.sha256).hexdigest()
