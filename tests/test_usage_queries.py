"""GET /data, GET /usage/summary, DELETE /reset and /metrics' usage figures, against rows written straight into
PostgreSQL (usage_events plus consistent roll-ups), checked against sums over the raw rows."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from cg_api.cursor import encode_cursor
from cg_api.summary_repo import split_range
from cg_api.usage_repo import HourIndex, UsageFilter, hours_query, page_query
from tests.support.keys import fake_openai_key
from tests.support.usage_rows import UsageRow, fold, insert_usage

DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
PLAIN_DECIMAL = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")  # no exponent, no trailing zeros
FIGURES = ("events", "requests", "input_tokens", "cached_input_tokens", "output_tokens", "unpriced_events")


@pytest.fixture
def db(database_url: str, api: httpx.AsyncClient) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the api's database, after `api` has emptied it."""
    with psycopg.connect(database_url) as conn:
        yield conn


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A moment on day `day` (1 = DAY1) of the test data, UTC."""
    return DAY1 + timedelta(days=day - 1, hours=hour, minutes=minute, seconds=second, microseconds=micro)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def create_key(api: httpx.AsyncClient, label: str) -> dict[str, Any]:
    response = await api.post("/keys", json={"label": label, "api_key": fake_openai_key()})
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


# --- GET /data -----------------------------------------------------------------------------------------------------


async def test_data_lists_records_newest_first_with_every_field(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    key = await create_key(api, "billing bot")
    older, newer, unpriced = insert_usage(
        db,
        [
            UsageRow(occurred_at=at(1, 10), key_id=key["id"], key_fingerprint=key["fingerprint"]),
            UsageRow(occurred_at=at(1, 12), attributes={"team": "search", "retries": 2}, cost=Decimal("1.5E+2")),
            UsageRow(occurred_at=at(1, 11), model="mystery-model-9", cost=None, price_source=None),
        ],
    )
    body = (await api.get("/data")).json()
    assert [item["id"] for item in body["items"]] == [newer, unpriced, older]
    assert body["next_cursor"] is None
    first = body["items"][2]
    assert set(first) == {
        "id", "source", "event_id", "occurred_at", "recorded_at", "provider", "model", "key_id", "key_fingerprint",
        "input_tokens", "cached_input_tokens", "output_tokens", "requests", "cost", "priced", "price_source",
        "attributes",
    }  # fmt: skip
    assert first["cost"] == "0.000345"  # numeric(30, 12) "0.000345000000", without the trailing zeros
    assert first["priced"] is True
    assert first["key_id"] == key["id"]
    assert first["key_fingerprint"] == key["fingerprint"]
    assert datetime.fromisoformat(first["occurred_at"]) == at(1, 10)
    assert datetime.fromisoformat(first["recorded_at"]).tzinfo is not None
    assert (first["input_tokens"], first["cached_input_tokens"], first["output_tokens"], first["requests"]) == (
        1200, 200, 300, 1,
    )  # fmt: skip
    assert body["items"][0]["cost"] == "150"  # never "1.5E+2"
    assert body["items"][0]["attributes"] == {"team": "search", "retries": 2}
    assert body["items"][1]["cost"] is None
    assert body["items"][1]["priced"] is False
    assert body["items"][1]["price_source"] is None


async def test_data_filters(api: httpx.AsyncClient, db: psycopg.Connection[Any]) -> None:
    first, second = (await create_key(api, "first"))["id"], (await create_key(api, "second"))["id"]
    rows = [
        UsageRow(occurred_at=at(1, 1), key_id=first, model="gpt-4o", source="//a", provider="openai"),
        UsageRow(occurred_at=at(1, 2), key_id=second, model="gpt-4o", source="//b", provider="openai"),
        UsageRow(occurred_at=at(1, 3), key_id=None, model="claude-3-5-haiku", source="//a", provider="anthropic"),
        UsageRow(occurred_at=at(2, 3), key_id=first, model="gpt-4o-mini", source="//b", provider="openai"),
    ]
    ids = insert_usage(db, rows)

    async def listed(**params: Any) -> list[int]:
        response = await api.get("/data", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await listed(key_id=first) == [ids[3], ids[0]]
    assert await listed(model="gpt-4o") == [ids[1], ids[0]]
    assert await listed(source="//a") == [ids[2], ids[0]]
    assert await listed(provider="anthropic") == [ids[2]]
    assert await listed(since=iso(at(1, 2)), until=iso(at(2))) == [ids[2], ids[1]]  # since inclusive, until not
    assert await listed(since="2026-03-01T03:00:00+01:00") == [ids[3], ids[2], ids[1]]  # 02:00 UTC
    assert await listed(key_id=first, model="gpt-4o") == [ids[0]]
    assert await listed(model="no-such-model") == []


async def test_a_key_with_only_old_usage_is_found_through_its_own_index(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    """Through the time index alone, a key with no recent usage meant reading every row since its last one."""
    rare = (await create_key(api, "rarely used"))["id"]
    db.execute(
        """INSERT INTO usage_events (source, event_id, occurred_at, provider, model, key_id, input_tokens,
                                     cached_input_tokens, output_tokens, requests)
           SELECT '//bulk', 'bulk-' || n, %s - n * interval '1 second', 'openai', 'gpt-4o', 100000 + n %% 20, 1, 0, 1, 1
           FROM generate_series(1, 50000) AS n""",
        (at(30),),
    )
    [old] = insert_usage(db, [UsageRow(occurred_at=at(1, 5), key_id=rare)])
    db.execute("ANALYZE usage_events")
    db.commit()
    query, params = page_query(UsageFilter(key_id=rare), after=None, limit=100)
    plan = "\n".join(str(row[0]) for row in db.execute(sql.SQL("EXPLAIN ") + query, params))
    assert "usage_events_key" in plan and "usage_events_occurred" not in plan, plan
    response = await api.get("/data", params={"key_id": rare})
    assert [item["id"] for item in response.json()["items"]] == [old]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-03-01T10:00:00"},  # naive: which zone?
        {"until": "2026-03-01"},
        {"since": "yesterday"},
        {"limit": 0},
        {"limit": 1001},
        {"key_id": 0},
        {"model": "a\x00b"},
        {"cursor": "!!!"},
        {"cursor": "bm90IGEgY3Vyc29y"},  # base64 of "not a cursor"
        {"cursor": "MjAyNi0wMy0wMVQxMDowMDowMHwx"},  # "2026-03-01T10:00:00|1": a naive time
        {"cursor": "MjAyNi0wMy0wMVQxMDowMDowMCswMDowMHww"},  # "…+00:00|0": id 0
        {"cursor": "x" * 201},
        {"cursor": "gA"},  # not UTF-8
    ],
)
async def test_data_bad_parameters_are_422(api: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await api.get("/data", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_cursor_pagination_walks_every_row_once_in_order(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    rng = random.Random(7)
    same_moment = at(2, 9, 30, 15, 123456)
    rows = [UsageRow(occurred_at=same_moment) for _ in range(23)]  # ties: the id decides their order
    rows += [
        UsageRow(occurred_at=at(1, rng.randrange(72), rng.randrange(60), micro=rng.randrange(10**6))) for _ in range(64)
    ]
    ids = insert_usage(db, rows)
    moments = {row_id: row.occurred_at for row_id, row in zip(ids, rows, strict=True)}
    expected = sorted(ids, key=lambda i: (moments[i], i), reverse=True)

    walked: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        body = (await api.get("/data", params=params)).json()
        walked += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # Rows recorded meanwhile, newer than the cursor, never shift the pages still to come.
        if pages == 3:
            insert_usage(db, [UsageRow(occurred_at=at(9))])
    assert walked == expected
    assert pages == 9  # 87 rows at 10 a page: the last page holds 7 and says there is nothing after it


@pytest.mark.parametrize(
    ("column", "where"),
    [
        ("model", UsageFilter(model="rare")),
        ("source", UsageFilter(source="rare")),
        ("provider", UsageFilter(provider="rare")),
    ],
)
def test_the_hours_of_a_filter_are_found_through_an_index(
    column: str, where: UsageFilter, api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    """With a large hourly roll-up, the look-up of a filter's hours reads that column's index, not the whole table."""
    db.execute(
        """INSERT INTO usage_rollup_hourly (bucket, key_id, source, provider, model, events)
           SELECT %s - (n / 40) * interval '1 hour', n %% 7, '//s' || n %% 40, 'p' || n %% 3, 'm' || n %% 40, 1
           FROM generate_series(1, 60000) AS n""",
        (at(60),),
    )
    db.execute("ANALYZE usage_rollup_hourly")
    db.commit()
    index = HourIndex.for_filter(where, frozenset())
    assert index is not None
    query, params = hours_query(index, below=None, oldest=None)
    plan = "\n".join(str(row[0]) for row in db.execute(sql.SQL("EXPLAIN ") + query, params))
    assert f"usage_rollup_hourly_{column}" in plan and "Seq Scan on usage_rollup_hourly" not in plan, plan


async def walk(api: httpx.AsyncClient, params: dict[str, Any]) -> list[int]:
    """Every id GET /data gives for `params`, following the cursors."""
    walked: list[int] = []
    cursor: str | None = None
    while True:
        response = await api.get("/data", params=params | ({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        walked += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return walked


async def test_filtered_pages_read_through_the_roll_up_hours_miss_nothing(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    """model, source and provider pages come from the hours the roll-ups say hold such usage: walked page by page
    they equal the rows themselves, whether their sums are folded or still pending, across more hours than one
    look-up returns, with ties on the same moment and rows exactly on hour starts and range ends."""
    rng = random.Random(11)
    moments = [
        at(1) + timedelta(seconds=rng.randrange(6 * 86_400), microseconds=rng.randrange(10**6)) for _ in range(300)
    ]
    moments += [at(2, 5)] * 4 + [at(3), at(3, 14), at(4, 0, 0, 0, 1), at(2, 4, 59, 59, 999_999)]
    rows = [
        UsageRow(
            occurred_at=moment,
            model=rng.choice(["gpt-4o", "o3-mini", "gpt-4o-mini-2024-07-18"]),
            source=rng.choice(["//checkout/prod", "//batch"]),
            provider=rng.choice(["openai", "openai", "azure"]),
        )
        for moment in moments
    ]
    ids = insert_usage(db, rows[:200])
    fold(db)  # these sums are in the hourly roll-up, the rest stay pending
    ids += insert_usage(db, rows[200:])
    by_id = dict(zip(ids, rows, strict=True))

    def expected(**where: Any) -> list[int]:
        since, until = where.pop("since", None), where.pop("until", None)
        kept = [
            i
            for i, row in by_id.items()
            if all(getattr(row, name) == value for name, value in where.items())
            and (since is None or row.occurred_at >= since)
            and (until is None or row.occurred_at < until)
        ]
        return sorted(kept, key=lambda i: (by_id[i].occurred_at, i), reverse=True)

    cases: list[dict[str, Any]] = [
        {"model": "o3-mini"},
        {"source": "//batch", "provider": "azure"},
        {"provider": "openai", "model": "gpt-4o"},
        {"model": "gpt-4o", "since": at(2, 5), "until": at(4, 0, 0, 0, 1)},
        {"source": "//checkout/prod", "since": at(3, 14), "until": at(5, 7, 30)},
        {"model": "no-such-model"},
    ]
    for case in cases:
        params = {k: iso(v) if isinstance(v, datetime) else v for k, v in case.items()}
        for limit in (1, 7, 1000):
            assert await walk(api, params | {"limit": limit}) == expected(**case), (case, limit)


async def test_a_full_last_page_has_no_cursor(api: httpx.AsyncClient, db: psycopg.Connection[Any]) -> None:
    insert_usage(db, [UsageRow(occurred_at=at(1, h)) for h in range(4)])
    first = (await api.get("/data", params={"limit": 2})).json()
    second = (await api.get("/data", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


# --- GET /usage/summary --------------------------------------------------------------------------------------------


def test_a_range_is_split_into_days_hours_and_raw_edges() -> None:
    spans = split_range(at(1, 10, 17), at(3, 14, 42))
    assert spans.days == (at(2).date(), at(3).date())
    assert spans.hours == [(at(1, 11), at(2)), (at(3), at(3, 14))]
    assert spans.raw == [(at(1, 10, 17), at(1, 11)), (at(3, 14), at(3, 14, 42))]
    assert spans.whole_hours == (at(1, 11), at(3, 14))
    assert split_range(at(1, 10, 17), at(1, 10, 42)).raw == [(at(1, 10, 17), at(1, 10, 42))]
    assert split_range(at(1, 10), at(1, 13)).hours == [(at(1, 10), at(1, 13))]
    aligned = split_range(at(1), at(4))
    assert (aligned.days, aligned.hours, aligned.raw) == ((at(1).date(), at(4).date()), [], [])
    assert split_range(at(2), at(1)).raw == []


def random_rows(rng: random.Random, key_ids: list[int | None]) -> list[UsageRow]:
    """Four days of usage at random moments, plus rows exactly on the boundaries the ranges below cut at."""
    moments = [
        at(1) + timedelta(seconds=rng.randrange(4 * 86_400), microseconds=rng.randrange(10**6)) for _ in range(260)
    ]
    moments += [at(1, 10, 17), at(1, 11), at(2), at(3), at(3, 14), at(3, 14, 42), at(1, 10, 16, 59, 999_999)]
    return [
        UsageRow(
            occurred_at=moment,
            key_id=rng.choice(key_ids),
            model=rng.choice(["gpt-4o-mini-2024-07-18", "gpt-4o", "o3-mini"]),
            source=rng.choice(["//checkout/prod", "//search/prod", "//batch"]),
            provider=rng.choice(["openai", "openai", "azure"]),
            input_tokens=(n := rng.randrange(1, 50_000)),
            cached_input_tokens=rng.randrange(n),
            output_tokens=rng.randrange(5_000),
            requests=rng.randrange(1, 4),
            cost=None if rng.random() < 0.1 else Decimal(rng.randrange(1, 10**9)) / Decimal(10**12),
        )
        for moment in moments
    ]


def group_of(row: UsageRow, group_by: str) -> Any:
    return {
        "key": row.key_id,
        "model": row.model,
        "source": row.source,
        "provider": row.provider,
        "day": row.occurred_at.date().isoformat(),
    }[group_by]


def expected_summary(
    rows: list[UsageRow], since: datetime, until: datetime, group_by: str
) -> dict[Any, dict[str, Any]]:
    groups: dict[Any, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0) | {"cost": Decimal(0)})
    for row in rows:
        if not since <= row.occurred_at < until:
            continue
        figures = groups[group_of(row, group_by)]
        figures["events"] += 1
        figures["requests"] += row.requests
        figures["input_tokens"] += row.input_tokens
        figures["cached_input_tokens"] += row.cached_input_tokens
        figures["output_tokens"] += row.output_tokens
        figures["unpriced_events"] += row.cost is None
        figures["cost"] += row.cost or 0
    return dict(groups)


def figures_of(body: dict[str, Any]) -> dict[str, Any]:
    assert PLAIN_DECIMAL.match(body["cost"]), body["cost"]
    return {name: body[name] for name in FIGURES} | {"cost": Decimal(body["cost"])}


RANGES = [
    (at(1, 10, 17), at(3, 14, 42)),  # cuts through hours and days
    (at(1, 10, 17, 0, 1), at(1, 10, 42)),  # inside one hour
    (at(1, 10, 17), at(1, 13, 5)),  # whole hours, no whole day
    (at(1), at(4)),  # whole days only
    (at(1, 11), at(3, 14)),  # hour-aligned, with whole days
    (at(0, 23, 59, 59), at(5, 0, 0, 1)),  # everything
    (at(2), at(2)),  # empty
]


@pytest.mark.parametrize("group_by", ["key", "model", "source", "provider", "day"])
async def test_summary_is_exact_for_ranges_through_hours_and_days(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], group_by: str
) -> None:
    key_ids: list[int | None] = [(await create_key(api, f"key {n}"))["id"] for n in range(2)] + [None]
    rows = random_rows(random.Random(group_by), key_ids)
    # Half of it folded into the roll-ups, the rest (and some of the same groups) still pending: both must count.
    insert_usage(db, rows[::2])
    assert fold(db) > 0
    insert_usage(db, rows[1::2])
    for since, until in RANGES:
        response = await api.get(
            "/usage/summary", params={"group_by": group_by, "since": iso(since), "until": iso(until)}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["group_by"], datetime.fromisoformat(body["since"]), datetime.fromisoformat(body["until"])) == (
            group_by, since, until,
        )  # fmt: skip
        expected = expected_summary(rows, since, until, group_by)
        assert {g["group"]: figures_of(g) for g in body["groups"]} == expected, (since, until)
        totals = expected_summary(rows, since, until, "provider")
        assert figures_of(body["totals"]) == {
            name: sum(g[name] for g in totals.values()) for name in (*FIGURES, "cost")
        }, (since, until)


FILTERS = [
    {"source": "//checkout/prod"},
    {"model": "gpt-4o"},
    {"provider": "azure"},
    {"key_id": "key 0"},
    {"source": "//search/prod", "model": "o3-mini"},
    {"source": "//batch", "provider": "openai", "key_id": "key 1"},
    {"source": "//nobody"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f))
async def test_a_filtered_summary_is_exact_for_ranges_through_hours_and_days(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], filters: dict[str, str]
) -> None:
    """`?source=` and the other filters narrow the totals to exactly the usage they name (they were once ignored)."""
    key_ids: list[int | None] = [(await create_key(api, f"key {n}"))["id"] for n in range(2)] + [None]
    wanted = {**filters, **({"key_id": key_ids[int(filters["key_id"][-1])]} if "key_id" in filters else {})}
    rows = random_rows(random.Random(str(filters)), key_ids)
    insert_usage(db, rows[::2])
    assert fold(db) > 0
    insert_usage(db, rows[1::2])
    chosen = [row for row in rows if all(getattr(row, name) == value for name, value in wanted.items())]
    for group_by in ("model", "day"):
        for since, until in RANGES:
            params = {"group_by": group_by, "since": iso(since), "until": iso(until), **wanted}
            response = await api.get("/usage/summary", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            expected = expected_summary(chosen, since, until, group_by)
            assert {g["group"]: figures_of(g) for g in body["groups"]} == expected, (since, until)


def sum_of(groups: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    return {name: sum(g[name] for g in groups.values()) for name in (*FIGURES, "cost")}


@pytest.mark.parametrize("pair", [("day", "model"), ("model", "day"), ("key", "source"), ("provider", "key")])
async def test_two_groupings_split_the_totals_by_both(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], pair: tuple[str, str]
) -> None:
    key_ids: list[int | None] = [(await create_key(api, f"key {n}"))["id"] for n in range(2)] + [None]
    rows = random_rows(random.Random(str(pair)), key_ids)
    insert_usage(db, rows[::2])
    assert fold(db) > 0
    insert_usage(db, rows[1::2])
    for since, until in RANGES:
        params = {"group_by": ",".join(pair), "since": iso(since), "until": iso(until), "source": "//checkout/prod"}
        body = (await api.get("/usage/summary", params=params)).json()
        assert body["group_by"] == ",".join(pair)
        by_pair: dict[tuple[Any, Any], list[UsageRow]] = defaultdict(list)
        for row in rows:
            if row.source == "//checkout/prod":
                by_pair[(group_of(row, pair[0]), group_of(row, pair[1]))].append(row)
        # Each pair's figures, as one group of the pair's rows (all of one provider value or not, summed alike).
        want = {
            key: sum_of(sums)
            for key, group in by_pair.items()
            if (sums := expected_summary(group, since, until, "provider"))
        }
        assert {tuple(g["group"]): figures_of(g) for g in body["groups"]} == want, (since, until)
        if "key" in pair:
            named = [g for g in body["groups"] if g["group"][pair.index("key")] is not None]
            assert all(g["label"].startswith("key ") for g in named)
        if pair[0] == "day":
            days = [g["group"][0] for g in body["groups"]]
            assert days == sorted(days)


@pytest.mark.parametrize("group_by", ["day,day", "day,model,key", "model,team", ",", "day,"])
async def test_a_bad_grouping_is_a_clear_422(api: httpx.AsyncClient, group_by: str) -> None:
    response = await api.get("/usage/summary", params={"group_by": group_by})
    assert response.status_code == 422, response.text
    assert "group_by" in response.text


async def test_summary_by_key_names_the_key_and_keeps_unattributed_usage(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    kept = await create_key(api, "billing bot")
    deleted = await create_key(api, "old bot")
    assert (await api.delete(f"/keys/{deleted['id']}")).status_code == 204
    insert_usage(
        db,
        [
            UsageRow(occurred_at=at(1, 9), key_id=kept["id"], cost=Decimal("0.5")),
            UsageRow(occurred_at=at(1, 9), key_id=deleted["id"], cost=Decimal("0.25")),
            UsageRow(occurred_at=at(1, 9), key_id=None, cost=Decimal("0.125")),
            # A key id never stored here: the ledger does not attribute usage to keys it does not hold.
            UsageRow(occurred_at=at(1, 9), key_id=424242, cost=Decimal("0.0625")),
        ],
    )
    body = (
        await api.get("/usage/summary", params={"group_by": "key", "since": iso(at(1)), "until": iso(at(2))})
    ).json()
    groups = {g["group"]: g for g in body["groups"]}
    assert [g["group"] for g in body["groups"]] == [kept["id"], deleted["id"], None]  # by cost, descending
    assert (groups[kept["id"]]["label"], groups[kept["id"]]["masked_key"]) == ("billing bot", kept["masked_key"])
    assert (groups[deleted["id"]]["label"], groups[deleted["id"]]["masked_key"]) == ("old bot", deleted["masked_key"])
    assert (groups[None]["label"], groups[None]["masked_key"]) == (None, None)
    assert groups[None]["cost"] == "0.1875"
    assert body["totals"]["cost"] == "0.9375"
    assert body["totals"]["events"] == 4


async def test_summary_defaults_to_the_last_30_days_by_model(
    api: httpx.AsyncClient, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    insert_usage(
        db,
        [
            UsageRow(occurred_at=now - timedelta(hours=1), model="gpt-4o", cost=Decimal("0.001")),
            UsageRow(occurred_at=now - timedelta(days=29), model="gpt-4o", cost=None),
            UsageRow(occurred_at=now - timedelta(days=31), model="gpt-4o"),
        ],
    )
    body = (await api.get("/usage/summary")).json()
    assert body["group_by"] == "model"
    until = datetime.fromisoformat(body["until"])
    assert abs(until - now) < timedelta(minutes=1)
    assert until - datetime.fromisoformat(body["since"]) == timedelta(days=30)
    assert len(body["groups"]) == 1
    group = body["groups"][0]
    assert (group["group"], group["events"], group["unpriced_events"], group["cost"]) == ("gpt-4o", 2, 1, "0.001")
    assert group["label"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"group_by": "team"},
        {"since": "2026-03-01T10:00:00"},
        {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        {"until": "0001-01-01T00:00:00+14:00"},  # before anything UTC can express
    ],
)
async def test_summary_bad_parameters_are_422(api: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await api.get("/usage/summary", params=params)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("moment", [datetime(9999, 12, 31, 23, 59, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)])
async def test_a_cursor_at_either_end_of_time_is_not_an_error(api: httpx.AsyncClient, moment: datetime) -> None:
    for params in ({}, {"model": "gpt-4o"}, {"key_id": 1}):
        response = await api.get("/data", params=params | {"cursor": encode_cursor(moment, 1)})
        assert response.status_code == 200, (params, response.text)


@pytest.mark.parametrize(
    "params",
    [{"until": "0001-01-01"}, {"until": "0001-01-30"}, {"since": "0001-01-01", "until": "9999-12-31"}, {}],
)
async def test_billed_of_extreme_ranges_is_not_an_error(api: httpx.AsyncClient, params: dict[str, str]) -> None:
    """Found by the fuzz test: a default `since` 30 days before 0001-01-01 does not exist."""
    response = await api.get("/usage/billed", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["days"] == []


async def test_summary_of_extreme_ranges_is_not_an_error(api: httpx.AsyncClient, db: psycopg.Connection[Any]) -> None:
    insert_usage(db, [UsageRow(occurred_at=at(1, 5))])
    for since, until in [("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"), ("9999-12-31T00:00:00Z", None)]:
        params = {"since": since} | ({"until": until} if until else {})
        response = await api.get("/usage/summary", params=params)
        assert response.status_code in (200, 422), response.text
    whole = await api.get("/usage/summary", params={"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"})
    assert whole.json()["totals"]["events"] == 1


# --- DELETE /reset and /metrics ------------------------------------------------------------------------------------


async def test_reset_clears_usage_and_keeps_keys(
    api: httpx.AsyncClient, db: psycopg.Connection[Any], database_url: str
) -> None:
    key = await create_key(api, "stays")
    insert_usage(db, [UsageRow(occurred_at=at(1, h), key_id=key["id"]) for h in range(5)])
    fold(db)
    insert_usage(db, [UsageRow(occurred_at=at(2, h), key_id=key["id"]) for h in range(5)])
    db.commit()
    response = await api.delete("/reset")
    assert response.status_code == 204
    with psycopg.connect(database_url) as conn:
        counts = conn.execute(
            """SELECT (SELECT count(*) FROM usage_events), (SELECT count(*) FROM usage_rollup_hourly),
                      (SELECT count(*) FROM usage_rollup_daily), (SELECT count(*) FROM usage_rollup_pending),
                      (SELECT count(*) FROM api_keys)"""
        ).fetchone()
    assert counts == (0, 0, 0, 0, 1)
    assert (await api.get("/data")).json() == {"items": [], "next_cursor": None}
    assert [k["id"] for k in (await api.get("/keys")).json()] == [key["id"]]


async def test_metrics_report_recorded_usage(api: httpx.AsyncClient, db: psycopg.Connection[Any]) -> None:
    insert_usage(db, [UsageRow(occurred_at=at(1, h)) for h in range(7)])
    fold(db)
    insert_usage(db, [UsageRow(occurred_at=at(3, 4, 5, 6, 7))])
    body = (await api.get("/metrics")).json()
    assert body["db"]["usage_rows"] == 8
    assert datetime.fromisoformat(body["db"]["last_usage_at"]) == at(3, 4, 5, 6, 7)
    text = (await api.get("/metrics", headers={"Accept": "text/plain"})).text
    assert "cg_usage_rows 8.0" in text
