"""Runs services exactly as production does (`cg-api serve`, `cg-ledger run`, `cg-prober run`, `cg-web serve`) in
child processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.jetstream import provision_for
from tests.support.nats_users import env_as


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def script(name: str) -> list[str]:
    """A console script of this virtual environment."""
    path = Path(sys.executable).with_name(name)
    return [str(path)] if path.exists() else [shutil.which(name) or name]


def cg_api_command() -> list[str]:
    return script("cg-api")


@dataclass
class ServiceProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash or an OOM kill."""
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_service(
    command: list[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    url: str,
    ready_path: str,
    ready_timeout: float = 30,
    provision: bool = True,
) -> ServiceProcess:
    """Start `command` with exactly `env` (plus PATH) and wait until `url + ready_path` answers 200. First, unless
    told not to, JetStream is provisioned for these settings, as a deployment's migration step does."""
    if provision and "NATS_URL" in env:
        provision_for(env)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env={"PATH": os.environ.get("PATH", ""), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,  # no stray .env from the repository is read
        )
    service = ServiceProcess(url=url, process=process, log_path=log_path)
    try:
        _wait_ready(service, ready_path, ready_timeout)
    except BaseException:
        service.stop()
        raise
    return service


@contextmanager
def running_api(env: Mapping[str, str], log_path: Path, *, ready_timeout: float = 30.0) -> Iterator[ServiceProcess]:
    """`cg-api serve` on a free port, stopped on exit."""
    port = free_port()
    api = start_service(
        [*cg_api_command(), "serve", "--host", "127.0.0.1"],
        {**env_as(env, "api"), "API_PORT": str(port)},
        log_path,
        url=f"http://127.0.0.1:{port}",
        ready_path="/ping",
        ready_timeout=ready_timeout,
    )
    try:
        yield api
    finally:
        api.stop()


def _wait_ready(service: ServiceProcess, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            command = " ".join(str(arg) for arg in service.process.args)  # type: ignore[union-attr]
            raise RuntimeError(f"{command} exited with {service.process.returncode}:\n{service.log_text()}")
        try:
            if httpx.get(service.url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{service.process.args!r} did not answer {path} within {timeout} s:\n{service.log_text()}")


@contextmanager
def running_web(env: Mapping[str, str], log_path: Path) -> Iterator[ServiceProcess]:
    """`cg-web serve` on a free port, stopped on exit; `env` names the api (API_URL) and the admin key."""
    port = free_port()
    web = start_service(
        [*script("cg-web"), "serve", "--host", "127.0.0.1"],
        {**env_as(env, "web"), "WEB_PORT": str(port)},
        log_path,
        url=f"http://127.0.0.1:{port}",
        ready_path="/healthz",
    )
    try:
        yield web
    finally:
        web.stop()


def start_background(service: str, env: Mapping[str, str], log_path: Path, *, provision: bool = True) -> ServiceProcess:
    """`cg-<service> run` (ledger, prober, scheduler) with its health port, `<SERVICE>_PORT`, on a free port."""
    port = free_port()
    return start_service(
        [*script(f"cg-{service}"), "run"],
        {**env_as(env, service), f"{service.upper()}_PORT": str(port)},
        log_path,
        url=f"http://127.0.0.1:{port}",
        ready_path="/healthz",
        provision=provision,
    )


@contextmanager
def running_background(service: str, env: Mapping[str, str], log_path: Path) -> Iterator[ServiceProcess]:
    process = start_background(service, env, log_path)
    try:
        yield process
    finally:
        process.stop()


def start_ledger(env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    return start_background("ledger", env, log_path)


def start_prober(env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    return start_background("prober", env, log_path)


def start_scheduler(env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    return start_background("scheduler", env, log_path)


def running_ledger(env: Mapping[str, str], log_path: Path) -> AbstractContextManager[ServiceProcess]:
    return running_background("ledger", env, log_path)


def running_prober(env: Mapping[str, str], log_path: Path) -> AbstractContextManager[ServiceProcess]:
    return running_background("prober", env, log_path)


def running_scheduler(env: Mapping[str, str], log_path: Path) -> AbstractContextManager[ServiceProcess]:
    return running_background("scheduler", env, log_path)
