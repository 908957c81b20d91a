"""Drives an HTTP endpoint with wrk (a C load generator, so the client costs little CPU) and parses its report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class LoadResult:
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, *, headers: dict[str, str], seconds: int, connections: int) -> LoadResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    report = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    return LoadResult(
        requests_per_sec=float(_find(r"Requests/sec:\s+([\d.]+)", report)),
        p50_ms=_latency(_find(r"\s50%\s+([\d.]+\w+)", report)),
        p99_ms=_latency(_find(r"\s99%\s+([\d.]+\w+)", report)),
        non_2xx=int(_find(r"Non-2xx or 3xx responses:\s+(\d+)", report, default="0")),
    )


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match:
        return match.group(1)
    if default is not None:
        return default
    raise ValueError(f"wrk report has no {pattern!r}:\n{text}")


def _latency(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]
