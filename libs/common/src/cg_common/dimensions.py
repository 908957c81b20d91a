"""Dimensions and the groupings rolled up for them: names, parsing, and the settings that choose them.

A dimension is an attribute name listed in DIMENSIONS; in queries it is `attributes.<name>`. A grouping is what one
dimension roll-up row is summed over: one dimension, or a pair from DIMENSION_PAIRS (`attributes.team+model`),
which lets a query that groups by one and filters by the other (or groups by both) read roll-ups too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import field_validator, model_validator

from cg_common.settings import CommaList, ServiceSettings, split_commas

ATTRIBUTE_PREFIX = "attributes."
BASE_MEMBERS = ("key", "source", "provider", "model")  # the record's own columns a pair may join a dimension with
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # as in usage events' `data.attributes`
PAIR_JOINER = "+"
DEFAULT_DIMENSIONS = ("team", "project", "customer", "feature")
DEFAULT_PAIRS = ("attributes.team+attributes.project", "attributes.team+model")
# Dimensions with thousands of values, rolled up per day and month only (an hourly row would hold ~2 events).
DEFAULT_COARSE = ("customer",)


def is_dimension_member(member: str) -> bool:
    return member.startswith(ATTRIBUTE_PREFIX)


def attribute_of(member: str) -> str:
    """`attributes.team` → `team`."""
    return member.removeprefix(ATTRIBUTE_PREFIX)


def check_member(member: str) -> str:
    """A grouping member as written in a query or a setting: key, source, provider, model or `attributes.<name>`."""
    if member in BASE_MEMBERS:
        return member
    if is_dimension_member(member) and ATTRIBUTE_NAME.match(attribute_of(member)):
        return member
    raise ValueError(f"{member!r} is neither {', '.join(BASE_MEMBERS)} nor attributes.<name>")


@dataclass(frozen=True, order=True)
class Grouping:
    """One dimension (`second` None), or a pair whose first member is a dimension. `coarse`: rolled up per day and
    month, not per hour (a dimension of high cardinality)."""

    first: str
    second: str | None = None
    coarse: bool = field(default=False, compare=False)

    @property
    def name(self) -> str:
        return self.first if self.second is None else f"{self.first}{PAIR_JOINER}{self.second}"

    @property
    def members(self) -> tuple[str, ...]:
        return (self.first,) if self.second is None else (self.first, self.second)

    @classmethod
    def parse(cls, text: str) -> Grouping:
        """`attributes.team` or `attributes.team+attributes.project` / `attributes.team+model`."""
        parts = [check_member(part.strip()) for part in text.split(PAIR_JOINER)]
        if len(parts) > 2 or len(set(parts)) != len(parts):
            raise ValueError(f"{text!r}: one dimension, or two different members joined by {PAIR_JOINER!r}")
        dimensions = [part for part in parts if is_dimension_member(part)]
        if not dimensions:
            raise ValueError(f"{text!r} names no dimension (attributes.<name>)")
        first = dimensions[0]
        rest = [part for part in parts if part != first]
        return cls(first, rest[0] if rest else None)


class DimensionSettings(ServiceSettings):
    """DIMENSIONS, DIMENSION_PAIRS and DIMENSION_COARSE (the ledger's), checked together: every pair is made of
    dimensions and the record's own columns. A DIMENSION_COARSE name not in DIMENSIONS has no effect (so that
    DIMENSIONS alone can be emptied)."""

    dimensions: CommaList = DEFAULT_DIMENSIONS
    dimension_pairs: CommaList = DEFAULT_PAIRS
    dimension_coarse: CommaList = DEFAULT_COARSE

    _split_dimensions = field_validator("dimensions", "dimension_pairs", "dimension_coarse", mode="before")(
        split_commas
    )

    @field_validator("dimensions")
    @classmethod
    def _names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in names if not ATTRIBUTE_NAME.match(name)]
        if bad:
            raise ValueError(f"DIMENSIONS: {bad[0]!r} is not an attribute name ([A-Za-z0-9_.-], at most 64)")
        return tuple(dict.fromkeys(names))

    @model_validator(mode="after")
    def _pairs_of_dimensions(self) -> DimensionSettings:
        for pair in self.pairs():
            if pair.second is None:
                raise ValueError(f"DIMENSION_PAIRS: {pair.name!r} is not a pair (two members joined by '+')")
            unknown = [m for m in pair.members if is_dimension_member(m) and attribute_of(m) not in self.dimensions]
            if unknown:
                raise ValueError(f"DIMENSION_PAIRS: {pair.name!r} names {unknown[0]}, which is not in DIMENSIONS")
        return self

    def pairs(self) -> list[Grouping]:
        try:
            return [Grouping.parse(text) for text in self.dimension_pairs]
        except ValueError as error:
            raise ValueError(f"DIMENSION_PAIRS: {error}") from None

    def groupings(self) -> list[Grouping]:
        """Each dimension alone, then the pairs; a pair whose members are not all dimensions any more is dropped
        by the validation above, never silently."""
        coarse = set(self.dimension_coarse)
        singles = [Grouping(ATTRIBUTE_PREFIX + name, coarse=name in coarse) for name in self.dimensions]
        return singles + self.pairs()
