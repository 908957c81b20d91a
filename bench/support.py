"""What the benchmarks share: progress lines, throw-away databases, stored keys, CPU accounting and percentiles."""

from __future__ import annotations

import hashlib
import secrets
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

from cg_common.crypto import KeyCipher, fingerprint, prefix_of
from cg_common.migrate import apply_migrations
from tests.support.keys import fake_openai_key

_STARTED = time.monotonic()


def say(bench: str, message: str) -> None:
    """A progress line, stamped with the seconds since `make bench` started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {bench}: {message}", flush=True)


def fresh_database(server_url: str, prefix: str = "cg_bench_") -> str:
    """A new, migrated database on the server of `server_url`; returns its URL."""
    name = prefix + secrets.token_hex(4)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    apply_migrations(url)
    return url


def drop_database(server_url: str, database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class StoredKey:
    id: int
    fingerprint: str


def store_keys(database_url: str, master_key: str, plain_keys: Sequence[str]) -> list[StoredKey]:
    """Keys stored as the api stores them (encrypted under `master_key`, so that the api starts on this database)."""
    cipher = KeyCipher([master_key])
    stored = []
    with psycopg.connect(database_url) as conn:
        for n, key in enumerate(plain_keys):
            row = conn.execute(
                """INSERT INTO api_keys (label, ciphertext, fingerprint, prefix, last4)
                   VALUES (%s, %s, %s, %s, %s) RETURNING id, fingerprint""",
                (f"bench key {n}", cipher.encrypt(key), fingerprint(key), prefix_of(key), key[-4:]),
            ).fetchone()
            assert row is not None
            stored.append(StoredKey(id=int(row[0]), fingerprint=str(row[1])))
    return stored


def fake_keys(count: int) -> list[str]:
    return [fake_openai_key() for _ in range(count)]


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, its live descendants and the children it has reaped (PostgreSQL's
    backends come and go; the postmaster's children_* times keep what the ones that exited used)."""
    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return total


class CpuMeter:
    """CPU seconds used by named process trees between `start()` and `stop()`; a tree without a pid (a server this
    run did not start, so it cannot be watched) reads as None."""

    def __init__(self, pids: Mapping[str, Sequence[int] | None]) -> None:
        self._pids = dict(pids)
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: self._read(pids) for name, pids in self._pids.items() if pids is not None}

    def stop(self) -> dict[str, float | None]:
        return {
            name: (self._read(pids) - self._before[name]) if pids is not None else None
            for name, pids in self._pids.items()
        }

    @staticmethod
    def _read(pids: Sequence[int]) -> float:
        return sum(process_tree_cpu(pid) for pid in pids)


class OtherLoad:
    """How many cores other user-space processes kept busy (all but this process and its descendants, servers
    included; kernel threads and interrupts, much of which is this run's own disk and loopback traffic, are left
    out): figures measured beside someone's test suite on a 2-core machine are not figures of this code."""

    def start(self) -> None:
        self._started = time.perf_counter()
        self._before = _others_cpu()

    def stop(self) -> float:
        after = _others_cpu()
        used = sum(seconds - self._before.get(key, 0.0) for key, seconds in after.items())
        return max(used, 0.0) / (time.perf_counter() - self._started)


def _others_cpu() -> dict[tuple[int, float], float]:
    """CPU seconds so far of every process outside this run's tree (with the children each has reaped, so that
    short-lived ones still count), keyed by (pid, start time)."""
    me = psutil.Process()
    ours = {me.pid, *(child.pid for child in me.children(recursive=True))}
    used = {}
    for process in psutil.process_iter():
        try:
            if process.pid in ours or process.pid == KTHREADD or process.ppid() == KTHREADD:
                continue
            times = process.cpu_times()
            used[process.pid, process.create_time()] = (
                times.user + times.system + times.children_user + times.children_system
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return used


KTHREADD = 2  # the parent of every kernel thread on Linux


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 (inclusive method: a sample's own values, no extrapolation beyond them)."""
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": max(samples_ms)}


def per_thousand(cpu_seconds: float | None, events: int) -> float | None:
    return None if cpu_seconds is None or events == 0 else cpu_seconds / events * 1000


def fmt_cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


# What the benchmarks run: the services and libraries, their locked dependencies, the harness itself.
CODE_PATHS = ("libs", "services", "bench", "tests/support", "pyproject.toml", "uv.lock")


def code_version() -> str:
    """The commit measured, and a digest of how the tracked code differs from it: figures belong to the code that
    ran, and two digests that differ mean the code changed in between. (New, untracked files are not seen.)"""
    here = Path(__file__).resolve().parent
    try:
        commit = _git(here, "rev-parse", "--short", "HEAD").strip()
        diff = _git(here, "diff", "HEAD", "--", *(f":(top){path}" for path in CODE_PATHS))
    except (OSError, subprocess.CalledProcessError):
        return "an unknown commit"
    if not diff:
        return f"commit {commit}"
    return f"commit {commit} with uncommitted changes (diff {hashlib.sha256(diff.encode()).hexdigest()[:8]})"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=cwd).stdout
