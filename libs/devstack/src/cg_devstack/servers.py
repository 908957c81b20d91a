"""The three servers every service needs: the ones named by NATS_URL, DATABASE_URL and REDIS_URL when set, else
embedded ones started here from PyPI packages, with their data kept under one directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cg_devstack.leftovers import DataDirInUseError
from cg_devstack.nats_server import start_nats
from cg_devstack.postgres_server import start_postgres
from cg_devstack.process import RunningServer, ServerStartError, stop_servers
from cg_devstack.redis_server import start_redis

STARTERS: dict[str, Callable[[Path], RunningServer]] = {
    "NATS_URL": start_nats,
    "DATABASE_URL": start_postgres,
    "REDIS_URL": start_redis,
}


@dataclass(frozen=True)
class Stack:
    """URLs in use, and the servers this process started (keyed "nats", "postgres", "redis") to stop later."""

    nats_url: str
    database_url: str
    redis_url: str
    servers: dict[str, RunningServer]

    @property
    def env(self) -> dict[str, str]:
        return {"NATS_URL": self.nats_url, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}

    def nats_url_for(self, user: str) -> str:
        """The NATS URL of one user of deploy/k8s/base/nats-permissions.conf on the embedded server; a NATS_URL
        given from outside is everyone's (its permissions are its operator's business)."""
        nats = self.servers.get("nats")
        return nats.user_urls[user] if nats is not None and nats.user_urls else self.nats_url


@contextmanager
def start_stack(
    data_dir: Path, environ: Mapping[str, str] = os.environ, *, servers: Collection[str] = tuple(STARTERS)
) -> Iterator[Stack]:
    """Use each URL set (non-empty) in `environ`, start the others in parallel; stop what was started on exit.
    `servers` names the URLs wanted (all three by default); the others stay empty."""
    urls = {name: environ.get(name, "") for name in STARTERS if name in servers}
    started = _start_in_parallel(data_dir, [name for name, url in urls.items() if not url])
    urls |= {name: server.url for name, server in started.items()}
    try:
        yield Stack(
            nats_url=urls.get("NATS_URL", ""),
            database_url=urls.get("DATABASE_URL", ""),
            redis_url=urls.get("REDIS_URL", ""),
            servers={server.name: server for server in started.values()},
        )
    finally:
        stop_servers(started.values())


def _start_in_parallel(data_dir: Path, names: list[str]) -> dict[str, RunningServer]:
    """Start the servers for these URL names; if one fails, stop the others before raising its error."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(STARTERS), thread_name_prefix="cg-devstack") as pool:
        futures = {name: pool.submit(STARTERS[name], data_dir) for name in names}
    started = {name: future.result() for name, future in futures.items() if future.exception() is None}
    errors = [error for future in futures.values() if (error := future.exception()) is not None]
    if errors:
        stop_servers(started.values())
        raise errors[0]
    return started


__all__ = [
    "DataDirInUseError",
    "RunningServer",
    "ServerStartError",
    "Stack",
    "start_nats",
    "start_postgres",
    "start_redis",
    "start_stack",
    "stop_servers",
]
