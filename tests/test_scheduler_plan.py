"""The scheduler's plan: stable per-key offsets that spread many keys evenly over the slot."""

from __future__ import annotations

from collections import Counter

from cg_scheduler.plan import due_keys, offset_secs


def test_offsets_spread_ten_thousand_keys_evenly_over_the_interval() -> None:
    interval = 300
    per_second = Counter(int(offset_secs(key_id, interval)) for key_id in range(1, 10_001))
    assert set(per_second) == set(range(interval))  # no idle second
    assert max(per_second.values()) <= 2 * 10_000 / interval  # no burst: at most twice the mean


def test_offsets_are_stable_and_within_the_slot() -> None:
    assert offset_secs(42, 300) == offset_secs(42, 300)
    assert all(0 <= offset_secs(k, 5) < 5 for k in range(1, 1000))


def test_due_keys_are_those_whose_moment_has_come() -> None:
    keys = list(range(1, 101))
    slot = 1_000
    start = slot * 60.0
    assert due_keys(keys, now=start - 0.001, slot=slot, interval_secs=60) == []
    halfway = due_keys(keys, now=start + 30, slot=slot, interval_secs=60)
    assert halfway == [k for k in keys if offset_secs(k, 60) <= 30]
    assert 0 < len(halfway) < 100
    assert due_keys(keys, now=start + 60, slot=slot, interval_secs=60) == keys
