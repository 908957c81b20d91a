"""Server processes we start and must stop: in their own session, so a terminal's Ctrl-C reaches the runner first
and the runner stops them in order; and stopped at interpreter exit at the latest, so none is left orphaned."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cg_devstack.leftovers import DataDirLock

STOP_TIMEOUT_SECS = 15.0
LOG_TAIL_CHARS = 2_000


class ServerStartError(RuntimeError):
    """A server exited or did not answer while starting; the message carries the end of its log."""


@dataclass(eq=False)
class RunningServer:
    """A server process this Python process started and owns."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    lock: DataDirLock | None = field(default=None, repr=False)
    # For a server with users (NATS): each user's URL, credentials included.
    user_urls: dict[str, str] = field(default_factory=dict, repr=False)
    _stop_requested: bool = field(default=False, init=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def request_stop(self) -> None:
        """Ask for a clean shutdown (postgres: SIGINT, a fast shutdown) without waiting for it; once only."""
        if self.running() and not self._stop_requested:
            self._stop_requested = True
            self.process.send_signal(self.stop_signal)
            self.thaw()  # a frozen server must wake up to handle it

    def stop(self, timeout: float = STOP_TIMEOUT_SECS) -> None:
        """Clean shutdown, SIGKILL after `timeout`; safe to call again."""
        try:
            self.request_stop()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()  # postgres backends notice their postmaster's death and exit
                self.process.wait()
        finally:
            _forget(self)
            if self.lock is not None:
                self.lock.release()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing answers, like a hung host (postgres: new connections only)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except FileNotFoundError:
            return ""

    def _signal(self, signum: signal.Signals) -> None:
        if self.running():
            self.process.send_signal(signum)


_running: dict[int, RunningServer] = {}
_running_lock = threading.Lock()


def _forget(server: RunningServer) -> None:
    with _running_lock:
        _running.pop(server.pid, None)


def stop_servers(servers: Iterable[RunningServer]) -> None:
    """Stop them all at once: each clean shutdown takes a moment, and none waits for another."""
    pending = list(servers)
    for server in pending:
        server.request_stop()
    for server in pending:
        server.stop()


@atexit.register
def stop_all_servers() -> None:
    """Stop every server this process still owns: the last line of defence against orphans."""
    with _running_lock:
        servers = list(_running.values())
    stop_servers(servers)


def launch(
    name: str,
    argv: Sequence[str | Path],
    *,
    url: str,
    log_path: Path,
    lock: DataDirLock,
    stop_signal: signal.Signals = signal.SIGTERM,
    run_as: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> RunningServer:
    """Start a server in a session of its own, output to `log_path`; `run_as` is a (uid, gid) to drop to.

    The returned server owns `lock` and releases it when stopped (or here, if it cannot be started).
    """
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(arg) for arg in argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=run_as[0] if run_as else None,
                group=run_as[1] if run_as else None,
                extra_groups=[] if run_as else None,
                env={**os.environ, **env} if env else None,
            )
    except BaseException:
        lock.release()
        raise
    server = RunningServer(name, url, process, log_path, stop_signal, lock)
    with _running_lock:
        _running[server.pid] = server
    return server


def wait_ready(server: RunningServer, answers: Callable[[], bool], *, timeout: float) -> None:
    """Poll `answers` until it is true; stop the server and raise if it exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not _quietly(answers):
        if not server.running():
            problem = f"exited with code {server.process.returncode} while starting"
        elif time.monotonic() > deadline:
            problem = f"did not answer within {timeout:.0f} s"
        else:
            time.sleep(0.05)
            continue
        server.stop()
        raise ServerStartError(f"{server.name} {problem}; end of {server.log_path}:\n{server.log_tail()}")


def _quietly(answers: Callable[[], bool]) -> bool:
    try:
        return answers()
    except Exception:  # every failure of a readiness probe means "not yet"
        return False


_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never the same twice in this process (servers start in parallel)."""
    with _ports_lock:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
