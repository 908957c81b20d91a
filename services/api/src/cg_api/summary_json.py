"""GET /usage/summary's body, written straight from the summary's rows with orjson.

A summary may hold thousands of groups (one per customer): building a pydantic model per group and validating the
response cost more than the SQL (~50 ms for 5,000 groups). The body is the `UsageSummary` schema, field for field;
money goes out as `money_text`, as everywhere.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from cg_api.summary_repo import FIGURES
from cg_common.crypto import mask_parts
from cg_common.money import money_text

COUNTS = tuple(name for name in FIGURES if name != "cost")


def encode(
    since: datetime, until: datetime, group_by: str, rows: list[dict[str, Any]], groupings: tuple[str, ...]
) -> bytes:
    """The UsageSummary JSON of these rows (summary_repo.summarize's) over [since, until)."""
    groups = [_group(row, groupings) for row in rows]
    totals: dict[str, Any] = {name: sum(g[name] for g in groups) for name in COUNTS}
    totals["cost"] = money_text(sum((row["cost"] for row in rows), Decimal(0)))
    body = {"since": since, "until": until, "group_by": group_by, "groups": groups, "totals": totals}
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def _group(row: dict[str, Any], groupings: tuple[str, ...]) -> dict[str, Any]:
    values = [_value(row[f"grp{n}"]) for n in range(len(groupings))]
    group: dict[str, Any] = {name: row[name] for name in COUNTS}  # ints already (summary_repo casts them)
    group["cost"] = money_text(row["cost"])
    group["group"] = values[0] if len(values) == 1 else values
    labelled = "key" in groupings and row.get("label") is not None
    group["label"] = row["label"] if labelled else None
    group["masked_key"] = mask_parts(row["prefix"], row["last4"]) if labelled else None
    return group


def _value(value: object) -> int | str | None:
    if isinstance(value, date):
        return value.isoformat()
    assert value is None or isinstance(value, int | str)  # noqa: S101 - the groupings are ids, text and days
    return value
