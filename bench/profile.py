"""Reads py-spy's raw (collapsed-stack) output: where a profiled process spent its samples, by function."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

TOP = 20
_LINE = re.compile(r"\s*\(([^()]*?)(?::\d+)?\)$")  # "func (path/file.py:123)" → "func (file.py)"


def summarise(collapsed: str, focus: Sequence[str] = ()) -> dict[str, Any]:
    """Top functions by own samples (the leaf of a stack) and by inclusive samples (anywhere on it); `focus` names
    functions (as py-spy names them, e.g. `Pricer.price`) whose inclusive share is reported whatever their rank."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    functions: Counter[str] = Counter()
    for frame, count in inclusive.items():
        functions[frame.split(" (", 1)[0]] += count
    return {
        "samples": total,
        "focus": {name: functions[name] / total if total else 0.0 for name in focus},
        "top_self": [{"frame": f, "share": n / total} for f, n in own.most_common(TOP)] if total else [],
        "top_inclusive": [{"frame": f, "share": n / total} for f, n in inclusive.most_common(TOP)] if total else [],
    }


def _frame(frame: str) -> str:
    """Function and file name, without the directory and line, so that one function's samples add up."""
    match = _LINE.search(frame)
    if not match:
        return frame.strip()
    location = match.group(1).rsplit("/", 1)[-1]
    return f"{frame[: match.start()].strip()} ({location})"
