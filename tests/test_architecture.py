"""docs/architecture.md tells the truth: every table the migrations make has one owner there, with the readers and
columns `cg_common.ownership` grants; every stream, core subject and bucket of the topology is listed with its owner."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

from cg_common.ownership import FUNCTIONS, TABLES, Table
from cg_common.subjects import ALL_STREAMS, COST_BATCH_RECORDED
from tests.support.jetstream import topology_for

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def rows(heading: str) -> dict[str, list[str]]:
    """The rows of the markdown tables under `heading`, keyed by their first cell's name."""
    section = DOC.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            found[cells[0].split("`")[1]] = cells
    return found


def read_by(table: Table) -> str:
    parts = []
    for service, columns in table.readers.items():
        parts.append(f"{service} ({', '.join(f'`{c}`' for c in columns)})" if columns else service)
    return "; ".join(parts)


def test_every_table_has_its_owner_and_readers_as_the_grants_say(database_url: str) -> None:
    documented = rows("PostgreSQL tables")
    with psycopg.connect(database_url) as conn:
        existing = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert existing == {table.name for table in TABLES}  # a new table needs its owner here first
    for table in TABLES:
        _name, owner, holds, readers = documented[table.name]
        assert (owner, holds, readers) == (table.owner, table.purpose, read_by(table)), table.name
    for function in FUNCTIONS:
        _name, owner, does, callers = documented[f"{function.name}({function.arguments})"]
        assert (owner, does, callers) == (function.owner, function.purpose, ", ".join(function.callers))


def test_every_stream_subject_and_bucket_is_listed_with_its_owner() -> None:
    streams = rows("JetStream streams and their subjects")
    assert set(streams) == {spec.name for spec in ALL_STREAMS}
    for spec in ALL_STREAMS:
        subjects = streams[spec.name][1]
        for subject in spec.subjects:
            assert re.sub(r"\.>$", "", subject) in subjects, spec.name
    assert rows("Core NATS subjects")[COST_BATCH_RECORDED][1] == "ledger"
    bucket = topology_for({}).prober_state
    assert rows("Key-value buckets")[bucket.name][1] == "prober"
