"""What machine a benchmark ran on, for the figures to mean anything."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path


def describe() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    mem_kb = next(
        (int(line.split()[1]) for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), 0
    )
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {cpu}, {os.cpu_count()} cores, {mem_kb / 1024**2:.0f} GiB · "
        f"{platform.system()} {platform.release()} · Python {platform.python_version()}"
    )


def _read(path: str) -> str:
    file = Path(path)
    return file.read_text() if file.exists() else ""
