"""Request and response bodies of the api; what clients see is defined here and nowhere else."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cg_common.crypto import mask_parts

# Printable text only: Postgres text cannot hold NUL, and control characters in a label only cause trouble.
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
]
OpenAIKey = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=20, max_length=512, pattern=r"^sk-[A-Za-z0-9_\-]+$"),
]
KeyKind = Literal["standard", "admin"]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeyCreate(StrictBody):
    label: Label
    api_key: OpenAIKey = Field(description="The OpenAI key; stored encrypted, never returned.")
    kind: KeyKind = "standard"


class KeyActive(StrictBody):
    active: bool


class KeyOut(BaseModel):
    """A stored key as clients see it: masked, with its health; never the key itself."""

    id: int
    label: str
    kind: KeyKind
    masked_key: str
    fingerprint: str
    active: bool
    created_at: datetime
    last_probe_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_status: int | None = Field(description="HTTP status of the last probe's answer, if one came.")
    last_outcome: str | None = Field(
        description="What the last probe found: ok, invalid_api_key, insufficient_quota, rate_limited, timeout, …"
    )
    last_latency_ms: float | None
    consecutive_failures: int

    @classmethod
    def from_row(cls, row: dict[str, object]) -> KeyOut:
        return cls.model_validate({**row, "masked_key": mask_parts(str(row["prefix"]), str(row["last4"]))})


class ErrorOut(BaseModel):
    detail: str
