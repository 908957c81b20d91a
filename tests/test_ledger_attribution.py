"""Which stored key a usage event is attributed to, decided by the ledger's SQL as it records a batch: an explicit
`key_id` wins when such a key is stored; otherwise the fingerprint names the newest stored key with it, deleted keys
included; otherwise nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from cg_ledger.store import RECORD_STAGED
from tests.support.usage_rows import UsageRow, insert_usage

FP_LIVE = "1111111111111111"
FP_DELETED = "2222222222222222"
FP_READDED = "3333333333333333"
FP_UNKNOWN = "4444444444444444"
AT = datetime(2026, 11, 1, 9, tzinfo=UTC)


@pytest.fixture
def db(database_url: str, clean_state: None) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def store_key(db: psycopg.Connection[Any], fingerprint: str, *, deleted: bool = False) -> int:
    row = db.execute(
        """INSERT INTO api_keys (label, ciphertext, fingerprint, prefix, last4, deleted_at)
           VALUES ('k', %s, %s, 'sk-', 'abcd', %s) RETURNING id""",
        (None if deleted else b"\x00", fingerprint, AT if deleted else None),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_each_rule_of_attribution(db: psycopg.Connection[Any]) -> None:
    live = store_key(db, FP_LIVE)
    deleted = store_key(db, FP_DELETED, deleted=True)
    store_key(db, FP_READDED, deleted=True)
    readded = store_key(db, FP_READDED)  # the same key added again later: the newest row is the one in use
    cases = {
        "explicit id": (UsageRow(AT, key_id=live), (live, FP_LIVE)),
        "explicit id over a fingerprint": (UsageRow(AT, key_id=live, key_fingerprint=FP_READDED), (live, FP_READDED)),
        "unknown id, then fingerprint": (UsageRow(AT, key_id=424242, key_fingerprint=FP_LIVE), (live, FP_LIVE)),
        "unknown id alone": (UsageRow(AT, key_id=424242), (None, None)),
        "fingerprint of a deleted key": (UsageRow(AT, key_fingerprint=FP_DELETED), (deleted, FP_DELETED)),
        "fingerprint of a key added again": (UsageRow(AT, key_fingerprint=FP_READDED), (readded, FP_READDED)),
        "fingerprint of no stored key": (UsageRow(AT, key_fingerprint=FP_UNKNOWN), (None, FP_UNKNOWN)),
        "neither": (UsageRow(AT), (None, None)),
    }  # fmt: skip
    ids = insert_usage(db, [row for row, _ in cases.values()])
    stored = dict(
        (row_id, (key_id, fingerprint))
        for row_id, key_id, fingerprint in db.execute("SELECT id, key_id, key_fingerprint FROM usage_events")
    )
    got = {name: stored[row_id] for name, row_id in zip(cases, ids, strict=True)}
    assert got == {name: expected for name, (_, expected) in cases.items()}


def test_many_stored_keys_cost_a_lookup_per_key_named_not_a_scan(db: psycopg.Connection[Any]) -> None:
    """The batch's keys are found through the indexes (the plan says so), however many keys are stored."""
    db.execute(
        """INSERT INTO api_keys (label, ciphertext, fingerprint, prefix, last4)
           SELECT 'k', '\\x00', lpad(to_hex(g), 16, '0'), 'sk-', 'abcd' FROM generate_series(1, 20000) g"""
    )
    db.execute("ANALYZE api_keys")
    named = [UsageRow(AT, key_fingerprint=f"{n:016x}") for n in range(1, 30)] + [UsageRow(AT, key_id=5)]
    insert_usage(db, named)
    assert db.execute("SELECT count(*) FROM usage_events WHERE key_id IS NOT NULL").fetchone() == (30,)
    plan = "\n".join(row[0] for row in db.execute("EXPLAIN " + RECORD_STAGED))  # insert_usage made the staging table
    assert "Seq Scan on api_keys" not in plan, plan
