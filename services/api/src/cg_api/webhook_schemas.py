"""Request and response bodies of /webhooks (contract section 8)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator

from cg_api.schemas import StrictBody
from cg_api.usage_schemas import UtcDatetime
from cg_common.webhook_targets import MAX_URL_LENGTH

EventType = Literal["budget.threshold", "budget.forecast"]
WebhookFormat = Literal["json", "slack"]
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_LENGTH)]


class WebhookCreate(StrictBody):
    url: Url = Field(description="http(s) URL that receives the deliveries (a POST each).")
    events: list[EventType] = Field(min_length=1, max_length=2, description="The alert types it receives.")
    format: WebhookFormat = Field(default="json", description="json: the alert itself; slack: a Slack message.")

    @field_validator("events")
    @classmethod
    def _each_once(cls, events: list[EventType]) -> list[EventType]:
        if len(set(events)) != len(events):
            raise ValueError("list each event type once")
        return events


class LastDelivery(BaseModel):
    status: DeliveryStatus
    at: UtcDatetime


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    format: str
    created_at: UtcDatetime
    created_by: str
    pending: int = Field(description="Deliveries still being tried.")
    last_delivery: LastDelivery | None = None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…: verifies every delivery's signature. Shown this once, never again.")


class AttemptOut(BaseModel):
    attempt: int
    started_at: UtcDatetime
    duration_ms: int
    response_status: int | None = Field(description="The receiver's HTTP status; null when it did not answer.")
    error: str | None = Field(description="Why the attempt did not count as delivered; null for a 2xx.")


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="The webhook-id header: the alert's id, the same on every attempt.")
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: UtcDatetime
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    finished_at: UtcDatetime | None
    log: list[AttemptOut]


class TestDeliveryOut(BaseModel):
    delivery_id: int
    message_id: str
    status: DeliveryStatus
    response_status: int | None
    error: str | None
    duration_ms: int
