"""Runs the api exactly as production does (`cg-api serve`) in a child process, for tests across processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def cg_api_command() -> list[str]:
    script = Path(sys.executable).with_name("cg-api")
    return [str(script)] if script.exists() else [shutil.which("cg-api") or "cg-api"]


@contextmanager
def running_api(env: Mapping[str, str], log_path: Path, *, ready_timeout: float = 30.0) -> Iterator[ApiProcess]:
    """Start `cg-api serve` on a free port with exactly `env` (plus PATH), wait for /ping, stop it on exit."""
    port = free_port()
    full_env = {"PATH": os.environ.get("PATH", ""), **env, "API_PORT": str(port)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*cg_api_command(), "serve", "--host", "127.0.0.1"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,  # no stray .env from the repository is read
        )
    api = ApiProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_for_ping(api, ready_timeout)
        yield api
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_ping(api: ApiProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            raise RuntimeError(f"cg-api exited with {api.process.returncode}:\n{api.log_text()}")
        try:
            if httpx.get(api.url + "/ping", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"cg-api did not answer /ping within {timeout} s:\n{api.log_text()}")
