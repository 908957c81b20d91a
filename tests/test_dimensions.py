"""Dimensions (`attributes.<name>`): GET /usage/summary and GET /data grouped and filtered by them, against rows
recorded with the ledger's own SQL and checked against aggregations computed straight from the events."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from pydantic import ValidationError

from cg_api.coarse_spans import cut
from cg_api.summary_repo import Filters, Plan, RolledUp, rolled_up, summarize
from cg_common.db import open_pool
from cg_common.dimensions import DimensionSettings, Grouping
from cg_common.settings import describe_error
from cg_ledger.dimension_rollups import bring_list_to, rebuild
from tests.support.keys import fake_openai_key
from tests.support.usage_rows import DEFAULT_GROUPINGS, UsageRow, fold, insert_usage, record, roll_up
from tests.test_usage_queries import walk

START = datetime(2026, 5, 30, 22, tzinfo=UTC)  # three days across a month's end
FIGURES = ("events", "requests", "input_tokens", "cached_input_tokens", "output_tokens", "unpriced_events")
DIMENSIONS = ("team", "project", "customer", "feature")
VALUES: dict[str, list[Any]] = {
    "team": ["search", "ads", 7, True],  # numbers and booleans compare by their JSON text
    "project": ["p1", "p2", "p3"],
    "customer": ["c1", "c2", "c3", "c4", "c5"],
    "feature": ["chat", "embed"],
}
BASE = {"model": ["gpt-4o-mini-2024-07-18", "o3-mini"], "source": ["//a", "//b", "//c"], "provider": ["openai", "az"]}


@pytest.fixture
def db(database_url: str, api: httpx.AsyncClient) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url) as conn:
        yield conn


@pytest.fixture
async def keys(api: httpx.AsyncClient, database_url: str) -> list[int | None]:
    """Two stored keys (and None: usage of no stored key), with the default dimensions rolled up."""
    await roll_up(database_url)
    ids: list[int | None] = []
    for n in range(2):
        response = await api.post("/keys", json={"label": f"key {n}", "api_key": fake_openai_key()})
        ids.append(response.json()["id"])
    return [*ids, None]


def text_of(value: Any) -> str | None:
    """A dimension's value as the api groups it: a string as it is, anything else by its JSON text."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def member_of(row: UsageRow, member: str) -> Any:
    if member == "day":
        return row.occurred_at.date().isoformat()
    if member.startswith("attributes."):
        return text_of(row.attributes.get(member.removeprefix("attributes.")))
    return {"key": row.key_id, "model": row.model, "source": row.source, "provider": row.provider}[member]


def expected(rows: list[UsageRow], group_by: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    sums: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: dict.fromkeys((*FIGURES, "cost"), 0))
    for row in rows:
        group = sums[tuple(member_of(row, m) for m in group_by)]
        group["events"] += 1
        group["requests"] += row.requests
        group["input_tokens"] += row.input_tokens
        group["cached_input_tokens"] += row.cached_input_tokens
        group["output_tokens"] += row.output_tokens
        group["unpriced_events"] += row.cost is None
        group["cost"] += row.cost or 0
    return {group: {**figures, "cost": Decimal(figures["cost"])} for group, figures in sums.items()}


def got(body: dict[str, Any], width: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {
        tuple(g["group"]) if width == 2 else (g["group"],): {
            **{name: g[name] for name in FIGURES},
            "cost": Decimal(g["cost"]),
        }
        for g in body["groups"]
    }


def matches(row: UsageRow, filters: dict[str, Any]) -> bool:
    return all(member_of(row, "key" if name == "key_id" else name) == value for name, value in filters.items())


# --- the property: any events, any selection, exactly what the events say ------------------------------------------

MOMENTS = st.builds(
    lambda hours, seconds, micro: START + timedelta(hours=hours, seconds=seconds, microseconds=micro),
    st.integers(0, 60),
    st.sampled_from([0, 0, 1, 59, 1799, 3599]),
    st.sampled_from([0, 0, 1, 999_999]),
)


# Over six weeks: whole months and days around the clock, for the coarse grouping's months.
WEEKS = st.builds(
    lambda hours, seconds: START + timedelta(hours=hours, seconds=seconds),
    st.integers(0, 24 * 42),
    st.sampled_from([0, 0, 1, 1799, 3599]),
)


@st.composite
def usage_rows(
    draw: st.DrawFn, keys: list[int | None], moments: st.SearchStrategy[datetime] = MOMENTS
) -> list[UsageRow]:
    rows = []
    for n in range(draw(st.integers(1, 40))):
        attributes = {
            name: draw(st.sampled_from(VALUES[name])) for name in DIMENSIONS if draw(st.integers(0, 3))
        }  # a quarter of them lack each dimension
        if draw(st.booleans()):
            attributes["note"] = "not a dimension"
        rows.append(
            UsageRow(
                occurred_at=draw(moments),
                event_id=f"e{n}",
                key_id=draw(st.sampled_from(keys)),
                **{member: draw(st.sampled_from(values)) for member, values in BASE.items()},
                input_tokens=(tokens := draw(st.integers(1, 10**6))),
                cached_input_tokens=draw(st.integers(0, tokens)),
                output_tokens=draw(st.integers(0, 10**5)),
                requests=draw(st.integers(1, 5)),
                cost=draw(st.none() | st.decimals(min_value=0, max_value=5, places=12)),
                attributes=attributes,
            )
        )
    return rows


@st.composite
def selections(draw: st.DrawFn, keys: list[int | None]) -> tuple[list[str], dict[str, Any], datetime, datetime]:
    members = ["key", "model", "source", "provider", "day", *(f"attributes.{d}" for d in DIMENSIONS)]
    group_by = draw(st.lists(st.sampled_from(members), min_size=1, max_size=2, unique=True))
    filters: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["key_id", *BASE, *DIMENSIONS]), max_size=3, unique=True)):
        if name == "key_id":
            stored = [k for k in keys if k is not None]
            filters["key_id"] = draw(st.sampled_from(stored))
        elif name in BASE:
            filters[name] = draw(st.sampled_from(BASE[name]))
        else:
            filters[f"attributes.{name}"] = text_of(draw(st.sampled_from(VALUES[name])))
    since, until = sorted([draw(MOMENTS), draw(MOMENTS)])
    return group_by, filters, since, until


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_summary_and_data_equal_the_events_for_any_selection(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], keys: list[int | None], data: st.DataObject
) -> None:
    """Random events with random dimensions, times, keys and sources, some sent again (the first one counts), part
    folded into the roll-ups and part pending; any grouping and filters over any range, on or off the hour."""
    db.execute("SELECT clear_usage()")
    db.commit()
    rows = data.draw(usage_rows(keys))
    resent = data.draw(st.lists(st.sampled_from(rows), max_size=5))
    split = data.draw(st.integers(0, len(rows)))
    insert_usage(db, rows[:split])
    fold(db)
    record(db, [*rows[split:], *resent])
    for _ in range(3):
        group_by, filters, since, until = data.draw(selections(keys))
        chosen = [r for r in rows if since <= r.occurred_at < until and matches(r, filters)]
        window = {"since": since.isoformat(), "until": until.isoformat()}
        response = await api.get("/usage/summary", params={"group_by": ",".join(group_by), **window, **filters})
        assert response.status_code == 200, response.text
        assert got(response.json(), len(group_by)) == expected(chosen, group_by), (group_by, filters, since, until)
        ids = await walk(api, {**window, **filters, "limit": data.draw(st.integers(1, 9))})
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted(ids_of(db, chosen)), (filters, since, until)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_a_coarse_grouping_equals_the_events_whatever_the_clock(
    database_url: str, db: psycopg.Connection[Any], keys: list[int | None], data: st.DataObject
) -> None:
    """`attributes.customer` is coarse (daily and monthly roll-ups only): with the clock anywhere around the events,
    the summary picks months minus days, days, and edge days from the records or as the day minus the records
    outside, and still equals the events."""
    assert any(g.coarse and g.name == "attributes.customer" for g in DEFAULT_GROUPINGS)
    db.execute("SELECT clear_usage()")
    db.commit()
    rows = data.draw(usage_rows(keys, WEEKS))
    split = data.draw(st.integers(0, len(rows)))
    insert_usage(db, rows[:split])
    fold(db)
    record(db, rows[split:])
    async with await psycopg.AsyncConnection.connect(database_url, row_factory=dict_row) as conn:
        rolled = await rolled_up(conn, one_snapshot=False)
        for _ in range(3):
            group_by = data.draw(st.sampled_from([["attributes.customer"], ["day", "attributes.customer"]]))
            customer = data.draw(st.sampled_from([None, *VALUES["customer"]]))
            filters = {} if customer is None else {"attributes.customer": customer}
            since, until, now = [*sorted([data.draw(WEEKS), data.draw(WEEKS)]), data.draw(WEEKS)]
            chosen = [r for r in rows if since <= r.occurred_at < until and matches(r, filters)]
            found = await summarize(
                conn,
                since=since,
                until=until,
                group_by=tuple(group_by),
                filters=Filters(attributes=tuple((k.removeprefix("attributes."), v) for k, v in filters.items())),
                rolled=rolled,
                now=now,
            )
            summed = {
                tuple(_plain(row[f"grp{n}"]) for n in range(len(group_by))): {
                    **{name: int(row[name]) for name in FIGURES},
                    "cost": Decimal(row["cost"]),
                }
                for row in found
            }
            assert summed == expected(chosen, group_by), (group_by, filters, since, until, now)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def ids_of(db: psycopg.Connection[Any], rows: list[UsageRow]) -> list[int]:
    """The stored ids of these events."""
    wanted = {(r.source, r.event_id) for r in rows}
    stored = db.execute("SELECT id, source, event_id FROM usage_events").fetchall()
    db.commit()
    return [row_id for row_id, source, event_id in stored if (source, event_id) in wanted]


# --- what reads what ------------------------------------------------------------------------------------------------

ROLLED = RolledUp(
    tuple(DimensionSettings.model_construct().groupings()),
    frozenset(g.name for g in DimensionSettings.model_construct().groupings()),
)


@pytest.mark.parametrize(
    ("group_by", "filters", "plan"),
    [
        (("model",), Filters(source="//a"), Plan("base")),
        (("attributes.customer",), Filters(), Plan("dimension", Grouping("attributes.customer"))),
        (("day", "attributes.team"), Filters(), Plan("dimension", Grouping("attributes.team"))),
        (
            ("attributes.team",),
            Filters(attributes=(("project", "p1"),)),
            Plan("dimension", Grouping("attributes.team", "attributes.project")),
        ),
        (("attributes.team", "model"), Filters(), Plan("dimension", Grouping("attributes.team", "model"))),
        (("attributes.customer", "model"), Filters(), Plan("records")),
        (("attributes.team",), Filters(source="//a"), Plan("records")),
    ],
)
def test_the_smallest_complete_grouping_answers(group_by: tuple[str, ...], filters: Filters, plan: Plan) -> None:
    assert Plan.choose(group_by, filters, ROLLED) == plan


def test_an_incomplete_grouping_is_not_read() -> None:
    rebuilding = RolledUp(ROLLED.groupings, ROLLED.complete - {"attributes.customer"})
    assert Plan.choose(("attributes.customer",), Filters(), rebuilding) == Plan("records")


# --- the api's answers to bad or unknown names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"group_by": "attributes.region"}, "'region' is not a dimension"),
        ({"group_by": "attributes.", "since": "2026-01-01T00:00:00Z"}, "unknown grouping"),
        ({"attributes.region": "eu"}, "'region' is not a dimension"),
        ({"attributes.te am": "x"}, "not an attribute name"),
        ({"attributes.team": ""}, "a value of 1 to 512"),
        ({"attributes.team": "x" * 513}, "a value of 1 to 512"),
    ],
)
async def test_unknown_dimensions_and_bad_filters_are_a_clear_422(
    api: httpx.AsyncClient, keys: list[int | None], params: dict[str, str], named: str
) -> None:
    for path in ("/usage/summary", "/data"):
        if path == "/data" and "group_by" in params:
            continue
        response = await api.get(path, params=params)
        assert response.status_code == 422, response.text
        assert named in response.text


async def test_a_filter_given_twice_is_refused(api: httpx.AsyncClient, keys: list[int | None]) -> None:
    response = await api.get("/data?attributes.team=a&attributes.team=b")
    assert response.status_code == 422
    assert "give one value" in response.text


async def test_dimensions_lists_what_is_rolled_up(api: httpx.AsyncClient, keys: list[int | None]) -> None:
    body = (await api.get("/usage/dimensions")).json()
    assert body["dimensions"] == ["customer", "feature", "project", "team"]
    assert {g["name"]: g["complete"] for g in body["groupings"]} == {
        "attributes.customer": True,
        "attributes.feature": True,
        "attributes.project": True,
        "attributes.team": True,
        "attributes.team+attributes.project": True,
        "attributes.team+model": True,
    }


# --- settings --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"DIMENSION_PAIRS": "attributes.team+attributes.region"},
            "DIMENSION_PAIRS: 'attributes.team+attributes.region' names attributes.region, which is not in DIMENSIONS",
        ),
        ({"DIMENSION_PAIRS": "model+source"}, "DIMENSION_PAIRS: 'model+source' names no dimension (attributes.<name>)"),
        ({"DIMENSION_PAIRS": "attributes.team"}, "DIMENSION_PAIRS: 'attributes.team' is not a pair"),
        ({"DIMENSIONS": "team,bad name"}, "DIMENSIONS: 'bad name' is not an attribute name"),
    ],
)
def test_bad_dimension_settings_are_one_clear_line(env: dict[str, str], line: str) -> None:
    with pytest.raises(ValidationError) as raised:
        DimensionSettings.model_validate({k.lower(): v for k, v in env.items()})
    assert line in describe_error(raised.value)


def test_the_default_groupings() -> None:
    assert [g.name for g in DimensionSettings.model_validate({}).groupings()] == [
        "attributes.team",
        "attributes.project",
        "attributes.customer",
        "attributes.feature",
        "attributes.team+attributes.project",
        "attributes.team+model",
    ]
    assert Grouping.parse("model+attributes.team") == Grouping("attributes.team", "model")


def test_a_coarse_range_ending_now_reads_months_and_few_records() -> None:
    """The benchmark's request: 30 days ending 17 minutes ago, both ends off the hour."""
    until = datetime(2026, 12, 5, 15, 23, 37, tzinfo=UTC)
    parts = cut(until - timedelta(days=30), until, now=until + timedelta(minutes=17, seconds=23))
    assert parts.months == {date(2026, 11, 1): 1, date(2026, 12, 1): 1}
    assert parts.days == {
        **{date(2026, 11, n): -1 for n in range(1, 6)},  # November minus its first five days
        **{date(2026, 12, n): -1 for n in range(6, 32)},  # December minus the days to come (no rows yet)
    }
    assert parts.records == [
        (until - timedelta(days=30), datetime(2026, 11, 6, tzinfo=UTC), 1),  # 8.6 hours inside, 15.4 outside
        (until, datetime(2026, 12, 6, tzinfo=UTC), -1),  # December 5 minus what came after `until`
    ]


async def test_turning_a_dimension_coarse_and_back_sums_it_again(
    database_url: str, db: psycopg.Connection[Any], keys: list[int | None]
) -> None:
    """DIMENSION_COARSE changed on a database holding usage: the grouping is incomplete (the api reads the records)
    until its rebuild, which leaves it in its new tiers only: hours and days, or days and months."""
    db.execute("SELECT clear_usage()")
    db.commit()
    insert_usage(db, [UsageRow(START + timedelta(days=n), attributes={"customer": f"c{n % 3}"}) for n in range(40)])
    fold(db)
    customer = "attributes.customer"
    pool = await open_pool(database_url, max_size=1)
    try:
        for coarse, tiers in ((False, {"hourly", "daily"}), (True, {"daily", "monthly"})):
            groupings = [
                Grouping(g.first, g.second, coarse if g.name == customer else g.coarse) for g in DEFAULT_GROUPINGS
            ]
            async with pool.connection() as conn:
                changes = await bring_list_to(conn, groupings)
                assert (changes.retiered, changes.incomplete) == ([customer], [customer])
                assert customer not in (await rolled_up(conn, one_snapshot=False)).complete
            assert await rebuild(pool) == [customer]
            for tier in ("hourly", "daily", "monthly"):
                events = db.execute(
                    f"SELECT sum(events) FROM usage_rollup_dimension_{tier} WHERE grouping = %s",  # noqa: S608
                    (customer,),
                ).fetchone()
                assert events == ((40,) if tier in tiers else (None,)), tier
            db.commit()
    finally:
        await pool.close()
