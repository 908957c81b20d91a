"""Request and response bodies of /budgets (contract section 8): what makes a budget valid, and how it is shown."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StringConstraints, field_validator

from cg_api.budget_periods import Period
from cg_api.schemas import Label, StrictBody
from cg_api.usage_schemas import MAX_ATTRIBUTE_VALUE, UtcDatetime
from cg_common.dimensions import ATTRIBUTE_NAME
from cg_common.money import Money

DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLDS = 10
MAX_SCOPE_ATTRIBUTES = 8
MAX_AMOUNT = Decimal("1e15")
ScopeText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ATTRIBUTE_VALUE, pattern=r"^[^\x00]+$")]
ScopeValue = ScopeText | bool | int | float


def _no_float(value: object) -> object:
    """Money arrives as a decimal string (or an integer): a JSON float may already have lost its cents."""
    if isinstance(value, float):
        raise ValueError('give the amount as a decimal string, e.g. "100.00"')
    return value


def _positive_amount(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0 or value >= MAX_AMOUNT:
        raise ValueError(f'must be a positive decimal below {MAX_AMOUNT:,.0f}, e.g. "100.00"')
    if value.as_tuple().exponent < -12:  # type: ignore[operator]  # finite: an int
        raise ValueError("at most 12 decimal places")
    return value


def _real_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin, America/New_York)") from None
    return name


Amount = Annotated[
    Decimal,
    Field(description='Decimal string, e.g. "100.00".'),
    BeforeValidator(_no_float),
    AfterValidator(_positive_amount),
]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_real_zone)]
Thresholds = Annotated[list[int], Field(min_length=1, max_length=MAX_THRESHOLDS)]


class BudgetScope(StrictBody):
    """Which usage counts: every field given must match (an empty scope covers all usage). `attributes` are
    dimensions, compared by their JSON text as in `attributes.<name>` filters."""

    key_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    source: ScopeText | None = None
    model: ScopeText | None = None
    provider: ScopeText | None = None
    attributes: dict[str, ScopeValue] = Field(default_factory=dict, max_length=MAX_SCOPE_ATTRIBUTES)

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, attributes: dict[str, ScopeValue]) -> dict[str, ScopeValue]:
        bad = [name for name in attributes if not ATTRIBUTE_NAME.match(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an attribute name ([A-Za-z0-9_.-], at most 64 characters)")
        return attributes

    def stored(self) -> dict[str, Any]:
        """The scope as stored and shown: only what was given."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)


def _valid_thresholds(values: list[int]) -> list[int]:
    out_of_range = [v for v in values if not 1 <= v <= 1000]
    if out_of_range:
        raise ValueError(f"thresholds are percentages from 1 to 1000, not {out_of_range[0]}")
    if len(set(values)) != len(values):
        raise ValueError("thresholds must differ from each other")
    return sorted(values)


class BudgetCreate(StrictBody):
    name: Label
    amount: Amount
    period: Period
    timezone: TimeZone = "UTC"
    scope: BudgetScope = Field(default_factory=BudgetScope)
    thresholds: Annotated[Thresholds, AfterValidator(_valid_thresholds)] = Field(
        default_factory=lambda: list(DEFAULT_THRESHOLDS)
    )
    hard: bool = False


class BudgetPatch(StrictBody):
    """What to change; the rest stays. A change applies from the current period on."""

    name: Label | None = None
    amount: Amount | None = None
    period: Period | None = None
    timezone: TimeZone | None = None
    scope: BudgetScope | None = None
    thresholds: Annotated[Thresholds, AfterValidator(_valid_thresholds)] | None = None
    hard: bool | None = None


class CurrentPeriod(BaseModel):
    period_start: UtcDatetime
    period_end: UtcDatetime
    spent: Money
    reserved: Money = Field(description="what live admission reservations hold (docs/admission.md)")
    remaining: Money
    percent: float = Field(description="spent as a percentage of the amount, two decimals")
    forecast: Money = Field(description="projected spend at the period's end (docs/budgets.md, Forecast)")
    overrun: Money = Field(description="what settled reservations cost this period beyond what they held")
    refusals: int = Field(description="admission requests this budget refused, since it was made (hard budgets)")


class BudgetOut(BaseModel):
    id: int
    name: str
    amount: Money
    period: Period
    timezone: str
    scope: dict[str, Any]
    thresholds: list[int]
    hard: bool
    created_at: datetime
    updated_at: datetime
    current: CurrentPeriod
