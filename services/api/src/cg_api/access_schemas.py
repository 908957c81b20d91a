"""Request and response bodies of tokens, dashboard sessions and the audit log (docs/access.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator, model_validator

from cg_api.principal import Scope
from cg_api.schemas import Label, StrictBody
from cg_api.tokens_repo import NewToken, prefix_of
from cg_api.usage_schemas import UtcDatetime

# A source pattern: `*` matches any run of characters, everything else itself (`//checkout/*`).
SourcePattern = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f]+$")
]
MAX_SOURCES = 100
MAX_RPM = 1_000_000


def _in_the_future(value: datetime) -> datetime:
    if value <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return value


class TokenCreate(StrictBody):
    name: Label
    scopes: list[Scope] = Field(min_length=1, max_length=4, description="admin, read, ingest, admit")
    sources: list[SourcePattern] | None = Field(
        default=None, max_length=MAX_SOURCES, description="With `ingest`: the event sources it may report for."
    )
    rate_limit_rpm: int | None = Field(default=None, ge=1, le=MAX_RPM, description="Default RATE_LIMIT_RPM.")
    rate_limit_burst: int | None = Field(default=None, ge=1, le=MAX_RPM, description="Default RATE_LIMIT_BURST.")
    expires_at: Annotated[UtcDatetime, AfterValidator(_in_the_future)] | None = None

    @field_validator("scopes")
    @classmethod
    def _distinct(cls, scopes: list[Scope]) -> list[Scope]:
        return sorted(set(scopes), key=scopes.index)

    def new_token(self, created_by: str) -> NewToken:
        """What to store for this request, made by `created_by` (the acting credential's name)."""
        return NewToken(
            name=self.name,
            scopes=list(self.scopes),
            sources=self.sources,
            rate_limit_rpm=self.rate_limit_rpm,
            rate_limit_burst=self.rate_limit_burst,
            expires_at=self.expires_at,
            created_by=created_by,
        )

    @model_validator(mode="after")
    def _sources_need_ingest(self) -> TokenCreate:
        if self.sources is not None and "ingest" not in self.scopes:
            raise ValueError("sources only narrow the 'ingest' scope: add it, or leave sources out")
        return self


class TokenOut(BaseModel):
    """A token as lists show it: never its secret."""

    id: int
    name: str
    prefix: str = Field(description="The token's first characters (cg_ and its public id), to recognise it by.")
    scopes: list[str]
    sources: list[str] | None
    rate_limit_rpm: int | None
    rate_limit_burst: int | None
    created_at: UtcDatetime
    created_by: str
    expires_at: UtcDatetime | None
    revoked_at: UtcDatetime | None
    last_used_at: UtcDatetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TokenOut:
        return cls.model_validate({**row, "prefix": prefix_of(row)})


class TokenCreated(TokenOut):
    token: str = Field(description="The secret token: shown in this response only, stored as a hash.")


class SessionCreate(StrictBody):
    credential: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class SessionOut(BaseModel):
    session: str = Field(description="The session's secret, for X-Dashboard-Session; held by the dashboard only.")
    name: str
    scopes: list[str]
    expires_at: UtcDatetime


class AuditEntryOut(BaseModel):
    id: int
    at: UtcDatetime
    credential: str
    method: str
    path: str
    target: str | None
    status: int


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for older entries; null at the end.")
