"""A server outlives a runner that was killed (kill -9, a closed terminal). Before starting another on the same data,
stop the leftover, found through its pid file; but never touch a server that a live runner still owns."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
from pathlib import Path

import psutil  # type: ignore[import-untyped]

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
        self.data_dir = data_dir.resolve()
        self.path = self.data_dir.with_name(self.data_dir.name + ".lock")
        with _held_lock:  # record locks are per process: threads of this one need their own check
            if self.data_dir in _held:
                raise DataDirInUseError(f"{self.data_dir} is already in use by this process")
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(self._fd)
                raise DataDirInUseError(
                    f"{self.data_dir} is in use by another process (pid {holder}); stop it first"
                ) from None
            _held.add(self.data_dir)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        with _held_lock:
            if self.data_dir in _held:
                _held.discard(self.data_dir)
                os.close(self._fd)  # closing drops the record lock


def claim_data_dir(data_dir: Path, pid_file: Path, process_name: str, stop_signal: signal.Signals) -> DataDirLock:
    """Lock `data_dir` for a new server, after stopping whatever a dead runner left running on it."""
    lock = DataDirLock(data_dir)
    try:
        stop_leftovers(pid_file, process_name, stop_signal)
    except BaseException:
        lock.release()
        raise
    return lock


def stop_leftovers(pid_file: Path, process_name: str, stop_signal: signal.Signals, timeout: float = 10.0) -> None:
    """Stop the process group of the pid in `pid_file` if it still runs `process_name` (postgres backends included).

    A live leader gets `stop_signal` for a clean shutdown first; orphans of a killed leader are killed at once.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    group = [p for p in psutil.process_iter(["name"]) if p.info["name"] == process_name and _pgid(p.pid) == pid]
    if not group:
        return
    log.warning("stopping a leftover %s (process group %d) on %s", process_name, pid, pid_file.parent)
    leaders = [p for p in group if p.pid == pid]
    for leader in leaders:
        _send(leader, stop_signal)
        _send(leader, signal.SIGCONT)
    _, alive = psutil.wait_procs(group, timeout=timeout if leaders else 0)
    for process in alive:
        _send(process, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _send(process: psutil.Process, signum: signal.Signals) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signum)
