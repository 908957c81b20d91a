"""Whatever is thrown at cg.usage.>, each invalid message lands in the DLQ with a reason, and every valid event in
the same stream is still recorded: nothing is held up, nothing is lost."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
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


def test_a_batch_with_nothing_to_publish_is_settled_at_once(ledger: tuple[dict[str, str], ServiceProcess]) -> None:
    """A batch of only invalid events, or of events recorded before, has no `cg.cost.recorded` to publish: it must
    not wait out the publish acknowledgement timeout (5 s) for acknowledgements that cannot come."""
    env, process = ledger
    started = time.monotonic()
    asyncio.run(publish_mixed(env["NATS_URL"], [b"{not json"], "nothing-valid"))
    wait_until(lambda: len(asyncio.run(dead_letters(env["NATS_URL"]))) == 1, timeout=30, message="not dead-lettered")
    assert time.monotonic() - started < 4

    event = encode(valid(0, "sent-twice"))
    asyncio.run(publish_mixed(env["NATS_URL"], [event], "first-send"))
    wait_until(lambda: count_rows(env["DATABASE_URL"]) == 1, timeout=30, message="not recorded")
    started = time.monotonic()
    asyncio.run(publish_mixed(env["NATS_URL"], [event], "second-send"))  # another message, the same event
    wait_until(lambda: duplicates(process) == 1, timeout=30, message="the re-send was not settled")
    assert time.monotonic() - started < 4


def duplicates(process: ServiceProcess) -> float:
    text = httpx.get(process.url + "/metrics", headers={"Accept": "text/plain"}, timeout=5).text
    match = re.search(r"^cg_ledger_duplicates_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
