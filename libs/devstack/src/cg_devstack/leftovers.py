"""A server outlives a runner that was killed (kill -9, a closed terminal). Before starting another on the same data,
stop the leftover; but never touch a server that a live runner still owns."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


class DataDirInUseError(RuntimeError):
    """Another live process runs a server on this data directory."""


_held: set[Path] = set()
_held_lock = threading.Lock()


class DataDirLock:
    """A POSIX record lock on `<dir>.lock`, held while our server runs on `<dir>`.

    The kernel drops it when the holder dies however it dies, and forked children (honcho's) do not inherit it, so
    "the lock is free" means "whatever still runs on this directory is a leftover".
    """

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir.resolve()
        self.path = self.data_dir.with_name(self.data_dir.name + ".lock")
        with _held_lock:  # record locks are per process: threads of this one need their own check
            if self.data_dir in _held:
                raise DataDirInUseError(f"{self.data_dir} is already in use by this process")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise DataDirInUseError(
                    f"{self.data_dir} is in use by another process (pid {holder}); stop it first"
                ) from None
            _held.add(self.data_dir)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Idempotent: a failed start and the server's stop may both release it."""
        with _held_lock:
            if self._fd is not None:
                os.close(self._fd)  # closing drops the record lock
                self._fd = None
                _held.discard(self.data_dir)


def claim_data_dir(
    data_dir: Path, process_name: str, stop_signal: signal.Signals, *, pid_file: Path | None = None
) -> DataDirLock:
    """Lock `data_dir` for a new server, after stopping whatever a dead runner left running on it.

    `pid_file` is removed once nothing runs there: postgres refuses to start while the pid it names exists, even
    as a zombie that whoever adopted it never reaps.
    """
    lock = DataDirLock(data_dir)
    try:
        stop_leftovers(lock.data_dir, process_name, stop_signal)
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    return lock


def stop_leftovers(data_dir: Path, process_name: str, stop_signal: signal.Signals, timeout: float = 10.0) -> None:
    """Stop every `process_name` process working on `data_dir`: a clean shutdown first, SIGKILL after `timeout`.

    A server works on its directory as its cwd (postgres and each of its backends, which leave the postmaster's
    process group; redis) or names it in its arguments (nats).
    """
    leftovers = [p for p in psutil.process_iter(["name"]) if p.info["name"] == process_name and _uses(p, data_dir)]
    if not leftovers:
        return
    log.warning("stopping a leftover %s on %s (pids %s)", process_name, data_dir, [p.pid for p in leftovers])
    for process in leftovers:
        _send(process, stop_signal)
        _send(process, signal.SIGCONT)  # a frozen one must wake up to handle it
    survivors = _wait_gone(leftovers, timeout)
    for process in survivors:
        _send(process, signal.SIGKILL)
    if _wait_gone(survivors, 5.0):
        raise DataDirInUseError(f"could not stop the leftover {process_name} on {data_dir}")


def _uses(process: psutil.Process, data_dir: Path) -> bool:
    try:
        return Path(process.cwd()) == data_dir or str(data_dir) in process.cmdline()
    except psutil.Error:  # gone meanwhile, or not ours to inspect: not ours to stop either
        return False


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those still alive after `timeout`. A zombie counts as gone: whoever adopted it may never reap it."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _send(process: psutil.Process, signum: signal.Signals) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signum)
