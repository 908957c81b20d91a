"""Bodies of the usage endpoints (/usage/events, /data, /usage/summary) and the types their parameters use.

Money is a Decimal in Python and a plain decimal string in JSON ("0.000345"), never a float and never an exponent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, BaseModel

from cg_common.dimensions import ATTRIBUTE_PREFIX, attribute_of, check_member, is_dimension_member
from cg_common.money import Money


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; an instant that UTC cannot express (year 1 at +14:00) is refused as a bad value."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None


# Query timestamps must carry a zone (a naive one is ambiguous and refused with 422); kept in UTC from then on.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(as_utc)]
# A filter's text: printable, without NUL, which PostgreSQL text cannot hold (it would be a 500, not a "no match").
TEXT_FILTER = r"^[^\x00]+$"
MAX_ATTRIBUTE_VALUE = 512
TextFilter = Annotated[str | None, Query(max_length=MAX_ATTRIBUTE_VALUE, pattern=TEXT_FILTER)]
GROUPINGS: tuple[str, ...] = ("key", "model", "source", "provider", "day")
MAX_GROUPINGS = 2
MAX_ATTRIBUTE_FILTERS = 8


def parse_group_by(text: str) -> tuple[str, ...]:
    """`model`, `day,model` or `attributes.team,model`: one or two distinct groupings, in the order given (whether
    `attributes.<name>` is a dimension is the route's to check, against what the ledger rolls up)."""
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in GROUPINGS and not _is_attribute(name)]
    if unknown:
        raise ValueError(f"unknown grouping {unknown[0]!r}: use {', '.join(GROUPINGS)} or attributes.<dimension>")
    if len(names) > MAX_GROUPINGS or len(set(names)) != len(names):
        raise ValueError(f"one or {MAX_GROUPINGS} distinct groupings, comma-separated")
    return names


def _is_attribute(name: str) -> bool:
    try:
        check_member(name)
    except ValueError:
        return False
    return is_dimension_member(name)


def attribute_filters(query: Mapping[str, str], multi: Callable[[str], list[str]]) -> tuple[tuple[str, str], ...]:
    """`attributes.<name>=<value>` query parameters as (name, value) pairs; ValueError names the first bad one."""
    found = []
    for key in dict.fromkeys(k for k in query if k.startswith(ATTRIBUTE_PREFIX)):
        name = attribute_of(key)
        values = multi(key)
        if not _is_attribute(key):
            raise ValueError(f"{key}: not an attribute name ([A-Za-z0-9_.-], at most 64 characters)")
        if len(values) != 1:
            raise ValueError(f"{key}: give one value (repeat filters are not combined)")
        value = values[0]
        if not value or len(value) > MAX_ATTRIBUTE_VALUE or "\x00" in value:
            raise ValueError(f"{key}: a value of 1 to {MAX_ATTRIBUTE_VALUE} characters, without NUL")
        found.append((name, value))
    if len(found) > MAX_ATTRIBUTE_FILTERS:
        raise ValueError(f"at most {MAX_ATTRIBUTE_FILTERS} attribute filters")
    return tuple(found)


# What the summary groups by: one grouping, or two comma-separated (`day,model`); kept as the caller wrote it.
GroupBy = Annotated[str, AfterValidator(lambda text: ",".join(parse_group_by(text)))]


class IngestAccepted(BaseModel):
    """Every event of the request was acknowledged by JetStream."""

    accepted: int


class UsageRecordOut(BaseModel):
    """One recorded usage event."""

    id: int
    source: str
    event_id: str
    occurred_at: UtcDatetime
    recorded_at: UtcDatetime
    provider: str
    model: str
    key_id: int | None
    key_fingerprint: str | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    requests: int
    cost: Money | None
    priced: bool
    price_source: str | None
    attributes: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> UsageRecordOut:
        return cls.model_validate({**row, "priced": row["cost"] is not None})


class UsagePage(BaseModel):
    items: list[UsageRecordOut]
    next_cursor: str | None


class UsageFigures(BaseModel):
    events: int
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost: Money
    unpriced_events: int


class UsageGroup(UsageFigures):
    """`group` is the key id (null: not attributed to a stored key), model, source, provider, UTC day (YYYY-MM-DD) or
    a dimension's value (null: the attribute is missing); with two groupings, a two-element array in group_by's
    order. `label` and `masked_key` are the stored key's when one of the groupings is `key`; null otherwise."""

    group: int | str | list[int | str | None] | None
    label: str | None = None
    masked_key: str | None = None


class UsageSummary(BaseModel):
    since: UtcDatetime
    until: UtcDatetime
    group_by: GroupBy
    groups: list[UsageGroup]
    totals: UsageFigures


class RolledUpGrouping(BaseModel):
    name: str
    members: list[str]
    complete: bool


class DimensionsOut(BaseModel):
    dimensions: list[str]
    groupings: list[RolledUpGrouping]
