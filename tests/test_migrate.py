"""SQL migrations: one transaction per file, files that build indexes concurrently outside any, any number of runners
at once, each file applied once; on real PostgreSQL, a fresh database per test."""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from cg_common.migrate import Migration, MigrationError, apply_migrations
from cg_devstack.servers import Stack

TABLE = Migration(1, "table", "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY, x int);\nCREATE TABLE gate ();")
CONCURRENT_INDEX = Migration(
    2,
    "index_concurrently",
    "-- cg:no-transaction\n-- re-runnable: an invalid index from a failed build goes first\n"
    "DROP INDEX CONCURRENTLY IF EXISTS t_x;\nCREATE INDEX CONCURRENTLY t_x\n    ON t (x);\n",
)


@pytest.fixture
def fresh_db(stack: Stack) -> Iterator[str]:
    name = "cg_migrate_" + secrets.token_hex(4)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield urlunsplit(urlsplit(stack.database_url)._replace(path="/" + name))
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def recorded(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def exists(url: str, table: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,)


def test_each_file_is_its_own_transaction(fresh_db: str) -> None:
    failing = Migration(2, "half_done", "CREATE TABLE half (id int);\nSELECT 1 / 0;")
    with pytest.raises(MigrationError, match=r"^migration 0002_half_done\.sql failed: division by zero"):
        apply_migrations(fresh_db, [TABLE, failing])
    assert recorded(fresh_db) == [1]
    assert exists(fresh_db, "t") and not exists(fresh_db, "half")
    fixed = Migration(2, "half_done", "CREATE TABLE half (id int);")
    assert apply_migrations(fresh_db, [TABLE, fixed]) == [fixed]  # the next run starts at the file that failed


def test_a_no_transaction_file_builds_its_index_concurrently(fresh_db: str) -> None:
    assert apply_migrations(fresh_db, [TABLE, CONCURRENT_INDEX]) == [TABLE, CONCURRENT_INDEX]
    assert recorded(fresh_db) == [1, 2]
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass").fetchone() == (True,)


def test_a_statement_not_ending_a_line_with_a_semicolon_is_refused_before_anything_runs(fresh_db: str) -> None:
    unended = Migration(2, "unended", "-- cg:no-transaction\nCREATE INDEX CONCURRENTLY t_x ON t (x)\n")
    with pytest.raises(MigrationError, match=r"0002_unended\.sql: its last statement does not end with ';'"):
        apply_migrations(fresh_db, [TABLE, unended])
    assert recorded(fresh_db) == [1]


@pytest.mark.parametrize(("index", "writers_wait"), [(CONCURRENT_INDEX, False), (None, True)])
def test_writers_go_on_while_an_index_is_built_concurrently(
    fresh_db: str, index: Migration | None, writers_wait: bool
) -> None:
    """A reader's open transaction keeps either build from finishing: its snapshot holds a concurrent build, its lock
    on `gate` the build in a transaction, which takes that lock after its index. Meanwhile an insert goes through
    beside the concurrent build, and waits behind the other (the contrast the marker exists for)."""
    apply_migrations(fresh_db, [TABLE])
    build = index or Migration(2, "index_in_transaction", "CREATE INDEX t_x ON t (x);\nLOCK TABLE gate;")
    with psycopg.connect(fresh_db) as reader:
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot for the whole transaction
        reader.execute("SELECT count(*) FROM gate").fetchone()  # a snapshot and a lock on gate, left open
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(apply_migrations, fresh_db, [TABLE, build])
            wait_for_build_to_wait(fresh_db)
            with psycopg.connect(fresh_db, autocommit=True) as writer:
                writer.execute("SET lock_timeout = '1s'")
                if writers_wait:
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        writer.execute("INSERT INTO t (x) VALUES (1)")
                else:
                    writer.execute("INSERT INTO t (x) VALUES (1)")
            reader.rollback()  # the build may finish now
            assert running.result(timeout=30) == [build]


def wait_for_build_to_wait(url: str) -> None:
    """Until the index build sits waiting for a lock (the reader's snapshot, or its table lock)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND query LIKE 'CREATE INDEX%%' AND wait_event_type = 'Lock'"""
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    raise TimeoutError("the index build never waited")


def test_runners_at_once_apply_each_file_once(fresh_db: str) -> None:
    slow = [TABLE, Migration(2, "slow", "SELECT pg_sleep(0.3);"), dataclasses.replace(CONCURRENT_INDEX, version=3)]
    start = threading.Barrier(3)

    def run() -> list[Migration]:
        start.wait()
        return apply_migrations(fresh_db, slow)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: run(), range(3)))
    assert sorted(m.version for applied in results for m in applied) == [1, 2, 3]
    assert recorded(fresh_db) == [1, 2, 3]


def test_an_applied_file_that_was_edited_is_refused(fresh_db: str) -> None:
    apply_migrations(fresh_db, [TABLE])
    edited = Migration(1, "table", TABLE.sql + "\n-- an afterthought")
    with pytest.raises(MigrationError, match=r"migration 0001_table\.sql was changed after it was applied"):
        apply_migrations(fresh_db, [edited])
