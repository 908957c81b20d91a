"""`cg-dev up`, what `make up` runs: a dev `.env`, the three servers, migrations and streams, then every Procfile
service under honcho in the foreground. Ctrl-C stops the services, then the servers; the data stays for next time."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import Manager
from pydantic import ValidationError

from cg_common.migrate import apply_migrations
from cg_common.migration_step import provision_jetstream
from cg_common.settings import TopologySettings, describe_error, fail
from cg_common.topology import Topology
from cg_devstack.envfile import ensure_env_file, read_env_file
from cg_devstack.servers import Stack, start_stack


@dataclass(frozen=True)
class Paths:
    """Where a run keeps its data and reads its settings; `CG_DATA_DIR` and `CG_ENV_FILE` move them (tests do)."""

    data_dir: Path
    env_file: Path

    @classmethod
    def under(cls, repo_root: Path, *, data_dir: Path | None = None, env_file: Path | None = None) -> Paths:
        return cls(
            data_dir=data_dir or Path(os.environ.get("CG_DATA_DIR") or repo_root / ".data"),
            env_file=env_file or Path(os.environ.get("CG_ENV_FILE") or repo_root / ".env"),
        )


def run_up(
    repo_root: Path, *, procfile: Path | None = None, data_dir: Path | None = None, env_file: Path | None = None
) -> int:
    """Run everything until Ctrl-C or a service exits; returns the exit code honcho reports."""
    paths = Paths.under(repo_root, data_dir=data_dir, env_file=env_file)
    processes = parse_procfile((procfile or repo_root / "Procfile").read_text()).processes
    environ = {**ensure_env_file(paths.env_file), **os.environ}
    with started(paths, environ) as stack:
        env = service_environment(environ, stack)
        announce(
            API_URL=local_url(environ, "API_PORT", 5001),
            WEB_URL=local_url(environ, "WEB_PORT", 5002) + "/dashboard",
            # Other systems publish usage as the usage publisher, follow costs as the subscriber (docs/access.md).
            NATS_URL=stack.nats_url_for("usage-publisher"),
            NATS_SUBSCRIBER_URL=stack.nats_url_for("subscriber"),
            DATABASE_URL=stack.database_url,
            REDIS_URL=stack.redis_url,
            API_KEY=env.get("API_KEY", ""),
        )
        manager = Manager()
        for name, command in processes.items():
            # Each service as its own NATS user (the Procfile names them as the permission file does); services
            # run where their .env is, so what they read from `.env` themselves is this same file.
            own = {**env, "NATS_URL": stack.nats_url_for(name)}
            manager.add_process(name, command, env=own, cwd=str(paths.env_file.parent))
        manager.loop()
    return int(manager.returncode or 0)


def run_servers(repo_root: Path, *, data_dir: Path | None = None, env_file: Path | None = None) -> int:
    """Only the servers, migrated, for running services by hand; until Ctrl-C or a server exits."""
    paths = Paths.under(repo_root, data_dir=data_dir, env_file=env_file)
    environ = {**read_env_file(paths.env_file), **os.environ}
    with started(paths, environ) as stack:
        announce(**stack.env)
        while stack.servers and all(server.running() for server in stack.servers.values()):
            time.sleep(0.5)
        exited = [name for name, server in stack.servers.items() if not server.running()]
    if exited:
        print(f"cg-dev: {', '.join(exited)} exited; its log is under {paths.data_dir / 'logs'}", file=sys.stderr)
        return 1
    return 0


def run_migrate(repo_root: Path, *, data_dir: Path | None = None, env_file: Path | None = None) -> int:
    """The migration step against DATABASE_URL and NATS_URL, or against the embedded servers (started just for this)
    where they are not set."""
    paths = Paths.under(repo_root, data_dir=data_dir, env_file=env_file)
    environ = {**read_env_file(paths.env_file), **os.environ}
    topology = topology_of(environ)
    with start_stack(paths.data_dir, environ, servers=("NATS_URL", "DATABASE_URL")) as stack:
        applied = apply_migrations(stack.database_url)
        changes = asyncio.run(provision_jetstream(stack.nats_url_for("migrate"), topology))
    print(f"applied {len(applied)} migration(s): {', '.join(f'{m.version}_{m.name}' for m in applied) or 'none'}")
    print(f"JetStream: {'; '.join(changes) or 'as configured already'}")
    return 0


@contextmanager
def started(paths: Paths, environ: Mapping[str, str]) -> Iterator[Stack]:
    """start_stack, then the migration step (SQL migrations; JetStream streams, consumers and buckets); progress goes
    to stderr, stdout stays for the NAME=value lines."""
    began = time.monotonic()
    print(f"starting servers (data in {paths.data_dir}) ...", file=sys.stderr, flush=True)
    with start_stack(paths.data_dir, environ) as stack:
        apply_migrations(stack.database_url)
        asyncio.run(provision_jetstream(stack.nats_url_for("migrate"), topology_of(environ)))
        print(f"servers ready and migrated in {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
        yield stack


def topology_of(environ: Mapping[str, str]) -> Topology:
    """The JetStream topology these settings make, as the services will check it; a bad setting stops here."""
    try:
        settings = TopologySettings.model_validate({name.lower(): value for name, value in environ.items()})
    except ValidationError as error:
        fail(describe_error(error))
    return Topology.from_settings(settings)


def service_environment(environ: Mapping[str, str], stack: Stack) -> dict[str, str]:
    """What every service gets: the settings, the URLs in use, and this venv's scripts first on PATH."""
    scripts = str(Path(sys.executable).parent)
    return {
        **environ,
        **stack.env,
        "API_URL": environ.get("API_URL") or local_url(environ, "API_PORT", 5001),
        "PATH": os.pathsep.join(filter(None, [scripts, environ.get("PATH")])),
        "PYTHONUNBUFFERED": "1",  # log lines reach honcho as they are written, not when a buffer fills
    }


def local_url(environ: Mapping[str, str], port_name: str, default_port: int) -> str:
    return f"http://127.0.0.1:{environ.get(port_name) or default_port}"


def announce(**values: str) -> None:
    """One `NAME=value` line each on stdout, which people and tests read."""
    for name, value in values.items():
        print(f"{name}={value}")
    sys.stdout.flush()
