"""Whatever is thrown at cg.usage.>, each invalid message lands in the DLQ with a reason, and every valid event in
the same stream is still recorded: nothing is held up, nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cg_common.consumer import DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER
from tests.support.processes import ServiceProcess, running_ledger
from tests.support.usage import count_rows, dead_letters, encode, publish_mixed, usage_event, wait_until
from tests.support.usage_strategies import invalid_message


def valid(n: int, batch: str) -> dict[str, Any]:
    return usage_event(source=f"//fuzz/{batch}", event_id=f"valid-{n}")


@pytest.fixture
def ledger(ledger_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[dict[str, str], ServiceProcess]]:
    with running_ledger(ledger_env, tmp_path / "ledger.log") as process:
        yield ledger_env, process


def test_invalid_events_are_dead_lettered_and_valid_ones_recorded(
    ledger: tuple[dict[str, str], ServiceProcess],
) -> None:
    env, _process = ledger
    seen = {"valid": 0, "invalid": 0, "rounds": 0}

    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(invalid_message(), min_size=20, max_size=60))
    def round_of(invalid: list[bytes]) -> None:
        seen["rounds"] += 1
        batch = f"round{seen['rounds']}"
        valid_events = [encode(valid(n, batch)) for n in range(len(invalid))]
        mixed = [m for pair in zip(valid_events, invalid, strict=True) for m in pair]
        asyncio.run(publish_mixed(env["NATS_URL"], mixed, batch))
        seen["valid"] += len(valid_events)
        seen["invalid"] += len(invalid)
        wait_until(
            lambda: (
                count_rows(env["DATABASE_URL"]) == seen["valid"]
                and len(asyncio.run(dead_letters(env["NATS_URL"]))) == seen["invalid"]
            ),
            timeout=60,
            message=f"after {batch}: expected {seen['valid']} recorded and {seen['invalid']} dead-lettered",
        )

    round_of()
    letters = asyncio.run(dead_letters(env["NATS_URL"]))
    assert len(letters) == seen["invalid"]
    for letter in letters:
        assert letter["headers"][DLQ_REASON_HEADER].strip()
        assert letter["headers"][DLQ_SEQUENCE_HEADER].isdigit()
    assert count_rows(env["DATABASE_URL"], "source LIKE %s", ("//fuzz/bad%",)) == 0
