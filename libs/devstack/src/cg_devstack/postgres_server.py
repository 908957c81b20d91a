"""PostgreSQL 16, from the binaries inside the `pgserver` wheel, run as our own foreground child.

initdb and postgres refuse to run as root; as root (containers, CI) they run as the system user `pgserver`, set up
the way pgserver itself does it.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from cg_devstack.leftovers import claim_data_dir
from cg_devstack.process import RunningServer, free_port, launch, wait_ready

with warnings.catch_warnings():
    # Importing pgserver looks up a runtime dir for its own server class (and warns where there is none);
    # we use only its binaries and helpers.
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
        find_suitable_socket_dir,
    )

DATABASE = "costguardian"
SUPERUSER = "postgres"
SYSTEM_USER_WHEN_ROOT = "pgserver"
READY_TIMEOUT_SECS = 60.0
INITDB_TIMEOUT_SECS = 120.0


def start_postgres(data_dir: Path, port: int | None = None) -> RunningServer:
    """Start postgres on `<data_dir>/postgres` (created by initdb the first time) with a `costguardian` database."""
    port = port or free_port()
    lock = claim_data_dir(
        data_dir / "postgres", "postgres", signal.SIGINT, pid_file=data_dir / "postgres" / "postmaster.pid"
    )
    pgdata = lock.data_dir
    try:
        run_as = _unprivileged_identity(pgdata)
        _initdb_once(pgdata, run_as)
        socket_dir = _socket_dir(pgdata, run_as)
        server = launch(
            "postgres",
            [POSTGRES_BIN_PATH / "postgres", "-D", pgdata, "-h", "127.0.0.1", "-p", str(port), "-k", socket_dir],
            url=f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}",
            log_path=data_dir / "logs" / "postgres.log",
            lock=lock,
            stop_signal=signal.SIGINT,  # "fast" shutdown: ends sessions instead of waiting for them
            run_as=run_as,
        )
    except BaseException:
        lock.release()
        raise
    admin_url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
    wait_ready(server, lambda: _accepts(admin_url), timeout=READY_TIMEOUT_SECS)
    try:
        _create_database(admin_url, DATABASE)
    except BaseException:
        server.stop()
        raise
    return server


def _unprivileged_identity(pgdata: Path) -> tuple[int, int] | None:
    """As root: the (uid, gid) postgres runs as, with what it must reach made reachable; else None."""
    if os.geteuid() != 0:
        return None
    ensure_user_exists(SYSTEM_USER_WHEN_ROOT)
    user = pwd.getpwnam(SYSTEM_USER_WHEN_ROOT)
    ensure_prefix_permissions(pgdata)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
    os.chown(pgdata, user.pw_uid, user.pw_gid)
    return user.pw_uid, user.pw_gid


def _initdb_once(pgdata: Path, run_as: tuple[int, int] | None) -> None:
    if (pgdata / "PG_VERSION").exists():
        return
    # The C locale exists everywhere; a fresh machine's LANG may name one that is not installed.
    argv: list[str | Path] = [POSTGRES_BIN_PATH / "initdb", "-D", pgdata, "--auth=trust", "-U", SUPERUSER]
    result = subprocess.run(
        [*argv, "--encoding=utf8", "--no-locale"],
        capture_output=True,
        text=True,
        timeout=INITDB_TIMEOUT_SECS,
        check=False,
        user=run_as[0] if run_as else None,
        group=run_as[1] if run_as else None,
        extra_groups=[] if run_as else None,
    )
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed on {pgdata}:\n{result.stdout}{result.stderr}")


def _socket_dir(pgdata: Path, run_as: tuple[int, int] | None) -> Path:
    """pgdata itself unless its path is too long for a unix socket (107 bytes), else a short one under /tmp."""
    socket_dir: Path = find_suitable_socket_dir(pgdata, Path(tempfile.gettempdir()) / "cg-devstack")
    if run_as is not None and socket_dir != pgdata:
        ensure_prefix_permissions(socket_dir)
        os.chown(socket_dir, *run_as)
    return socket_dir


def _accepts(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=2) as conn:
        conn.execute("SELECT 1")
    return True


def _create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
