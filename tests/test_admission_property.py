"""Property test of the admission guarantee on real PostgreSQL, through the same SQL the api and the ledger run:
random interleavings of admits (in batches, as the api sends them), settlements by usage events costing below, at
or above their reservation (recorded with the ledger's own SQL, budget spend included, and settled in the same
transaction), releases and expiries, across hard budgets whose scopes overlap. After every step, for every budget:
spent + live reservations ≤ amount, but for what settlements ran over and what events spent on reservations that had
already ended; what a budget holds is exactly its live reservations; and a reservation ends once, never again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from tests.support.usage_rows import UsageRow, record

SCOPES: tuple[dict[str, str], ...] = ({}, {"source": "//a"}, {"model": "m1"}, {"source": "//a", "model": "m1"})
AMOUNTS = (Decimal("1.00"), Decimal("1.50"), Decimal("2.00"), Decimal("3.00"))
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class Admit:
    requests: tuple[tuple[str, str, Decimal], ...]  # (source, model, amount), one batch


@dataclass(frozen=True)
class Settle:
    which: int  # index into the reservations made so far
    factor: Decimal  # the event's cost, as a share of what was reserved


@dataclass(frozen=True)
class Release:
    which: int


@dataclass(frozen=True)
class Expire:
    which: int


request = st.tuples(st.sampled_from(["//a", "//b"]), st.sampled_from(["m1", "m2"]), st.integers(5, 120)).map(
    lambda r: (r[0], r[1], Decimal(r[2]) * CENTS)
)
operation = st.one_of(
    st.builds(Admit, st.lists(request, min_size=1, max_size=6).map(tuple)),
    st.builds(Settle, st.integers(0, 40), st.sampled_from([Decimal("0.5"), Decimal(1), Decimal("1.7")])),
    st.builds(Release, st.integers(0, 40)),
    st.builds(Expire, st.integers(0, 40)),
)


@pytest.fixture
def conn(database_url: str, clean_state: None) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


class Model:
    """What the test knows independently of the database: what was reserved, ended, and spent outside a reservation."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.budgets: dict[int, tuple[dict[str, str], Decimal]] = {}
        self.reservations: list[str] = []
        self.ended: dict[str, tuple[str, datetime]] = {}
        self.unreserved: dict[int, Decimal] = {}
        self.events = 0

    def covering(self, source: str, model: str) -> list[int]:
        wanted = {"source": source, "model": model}
        return [b for b, (scope, _) in self.budgets.items() if all(wanted[k] == v for k, v in scope.items())]

    def apply(self, op: Admit | Settle | Release | Expire) -> None:
        if isinstance(op, Admit):
            self.admit(op)
        elif not self.reservations:
            return
        elif isinstance(op, Settle):
            self.settle(self.reservations[op.which % len(self.reservations)], op.factor)
        else:
            chosen = self.reservations[op.which % len(self.reservations)]
            if isinstance(op, Expire):
                self.conn.execute("UPDATE budget_reservations SET expires_at = now() WHERE id = %s", (chosen,))
                self.conn.execute("SELECT count(*) FROM end_reservations(NULL, 'expired', 1000)")
            else:
                self.conn.execute("SELECT count(*) FROM end_reservations(%s::uuid[], 'released')", ([chosen],))

    def admit(self, op: Admit) -> None:
        batch = [
            {
                "id": str(uuid.uuid4()),
                "source": source,
                "provider": "openai",
                "model": model,
                "attributes": {},
                "amount": str(amount),
                "ttl_secs": 3600,
                "request": {"source": source, "model": model},
            }
            for source, model, amount in op.requests
        ]
        with self.conn.transaction():
            rows = self.conn.execute("SELECT n, admitted FROM admit_reservations(%s) ORDER BY n", (Jsonb(batch),))
            decided = rows.fetchall()
        self.reservations += [str(item["id"]) for item, (_, admitted) in zip(batch, decided, strict=True) if admitted]

    def settle(self, reservation: str, factor: Decimal) -> None:
        row = self.conn.execute(
            "SELECT amount, request, ended, budget_ids FROM budget_reservations WHERE id = %s", (reservation,)
        ).fetchone()
        assert row is not None
        amount, _request, ended, _budgets = row
        source, model = self.request_of(reservation)
        cost = (amount * factor).quantize(Decimal("1e-12"))
        self.events += 1
        event = UsageRow(
            occurred_at=datetime.now(UTC), source=source, event_id=f"e{self.events}", model=model, cost=cost
        )
        with self.conn.transaction():
            record(self.conn, [event])
            self.conn.execute(
                "SELECT * FROM settle_reservations(%s::uuid[], %s::numeric[], %s::text[])",
                ([reservation], [cost], [f"{source} e{self.events}"]),
            )
        if ended is not None:  # it had ended: its event is spend no reservation made room for
            for budget in self.covering(source, model):
                self.unreserved[budget] = self.unreserved.get(budget, Decimal(0)) + cost

    def request_of(self, reservation: str) -> tuple[str, str]:
        row = self.conn.execute(
            "SELECT request ->> 'source', request ->> 'model' FROM budget_reservations WHERE id = %s", (reservation,)
        ).fetchone()
        assert row is not None
        return row[0], row[1]

    def check(self) -> None:
        for budget, (_scope, amount) in self.budgets.items():
            spent, reserved, live, overrun = self.conn.execute(
                """SELECT coalesce((SELECT sum(spent) FROM budget_spend WHERE budget_id = %(b)s), 0),
                          coalesce((SELECT reserved FROM budget_holds WHERE budget_id = %(b)s), 0),
                          (SELECT coalesce(sum(amount), 0) FROM budget_reservations
                           WHERE ended IS NULL AND %(b)s = ANY(budget_ids)),
                          (SELECT coalesce(sum(greatest(settled_cost - amount, 0)), 0) FROM budget_reservations
                           WHERE ended = 'settled' AND %(b)s = ANY(budget_ids))""",
                {"b": budget},
            ).fetchone() or (0, 0, 0, 0)
            assert reserved == live, budget
            assert spent + reserved <= amount + overrun + self.unreserved.get(budget, Decimal(0)), budget
        for reservation, ended, ended_at in self.conn.execute(
            "SELECT id::text, ended, ended_at FROM budget_reservations WHERE ended IS NOT NULL"
        ):
            first = self.ended.setdefault(reservation, (ended, ended_at))
            assert first == (ended, ended_at), reservation  # ended once, never again


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(st.sampled_from(AMOUNTS), min_size=4, max_size=4), ops=st.lists(operation, max_size=30))
def test_admitted_spend_never_exceeds_a_hard_budget_and_each_reservation_ends_once(
    conn: psycopg.Connection[Any], amounts: list[Decimal], ops: list[Admit | Settle | Release | Expire]
) -> None:
    conn.execute(
        "TRUNCATE budget_reservations, budget_holds, budget_alerts, budget_spend, budgets, usage_events "
        "RESTART IDENTITY CASCADE"
    )
    model = Model(conn)
    for n, (scope, amount) in enumerate(zip(SCOPES, amounts, strict=True)):
        row = conn.execute(
            """INSERT INTO budgets (name, amount, period, timezone, scope, thresholds, hard,
                                    opening_period_start)
               VALUES (%s, %s, 'day', 'UTC', %s, '{100}', true, date_trunc('day', now(), 'UTC')) RETURNING id""",
            (f"b{n}", amount, Jsonb(scope)),
        ).fetchone()
        assert row is not None
        model.budgets[row[0]] = (scope, amount)
    for op in ops:
        model.apply(op)
        model.check()
    conn.execute("UPDATE budget_reservations SET expires_at = now() WHERE ended IS NULL")
    conn.execute("SELECT count(*) FROM end_reservations(NULL, 'expired', 100000)")
    model.check()
    assert conn.execute("SELECT count(*) FROM budget_reservations WHERE ended IS NULL").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM budget_holds WHERE reserved <> 0").fetchone() == (0,)
