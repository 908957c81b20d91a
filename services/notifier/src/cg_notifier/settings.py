"""The notifier's settings: the shared ones, the master key (webhook secrets are stored encrypted under it), where
webhooks may point, and how deliveries are paced and retried."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from cg_common.settings import KeyVaultSettings, split_commas
from cg_common.webhook_targets import WebhookTargetSettings

# Standard Webhooks' suggested schedule (Svix's): after the first attempt fails, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h
# and 10 h: eight attempts over 27 h 35 min, then the delivery is failed.
RETRY_DELAYS_SECS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MIN_PRODUCTION_RETRY_SECS = 24 * 3600.0


class NotifierSettings(KeyVaultSettings, WebhookTargetSettings):
    notifier_port: int = Field(default=5006, ge=1, le=65535)  # health and Prometheus metrics
    # How long one attempt may take, connecting and answering, before it counts as failed.
    webhook_timeout_secs: float = Field(default=10.0, ge=0.1, le=60)
    webhook_retry_delays_secs: Annotated[tuple[float, ...], NoDecode] = RETRY_DELAYS_SECS
    webhook_concurrency: int = Field(default=64, ge=1, le=1000)  # attempts in flight in one replica
    # Attempts in flight to one webhook in one replica: a slow or dead receiver takes no more, holding up no other.
    webhook_per_receiver: int = Field(default=4, ge=1, le=100)

    _split = field_validator("webhook_retry_delays_secs", mode="before")(split_commas)

    @field_validator("webhook_retry_delays_secs")
    @classmethod
    def _positive_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("give one or more positive numbers of seconds, comma-separated (5,300,1800,…)")
        return value

    @model_validator(mode="after")
    def _a_day_of_retries_in_production(self) -> NotifierSettings:
        if self.is_production and sum(self.webhook_retry_delays_secs) < MIN_PRODUCTION_RETRY_SECS:
            raise ValueError("WEBHOOK_RETRY_DELAYS_SECS must add up to 24 hours or more when ENV=production")
        return self

    @property
    def lease_secs(self) -> float:
        """How long a claimed delivery is kept from other replicas: an attempt's timeout and a margin, so only a
        notifier that died mid-attempt lets it be tried again."""
        return self.webhook_timeout_secs + 20.0
