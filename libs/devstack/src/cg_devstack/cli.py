"""`cg-dev`: the development stack's command line (`make up` runs `cg-dev up`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from cg_common.crypto import new_master_key
from cg_common.logging import configure_logging
from cg_devstack.envfile import render
from cg_devstack.leftovers import DataDirInUseError
from cg_devstack.process import ServerStartError
from cg_devstack.up import run_migrate, run_servers, run_up


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-dev", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="servers, migrations, then every Procfile service in the foreground")
    up.add_argument("--procfile", type=Path, help="default: the Procfile at the repository root")
    servers = commands.add_parser("servers", help="only the servers, migrated; prints their URLs")
    migrate = commands.add_parser("migrate", help="migrate DATABASE_URL, or the embedded PostgreSQL")
    for command in (up, servers, migrate):
        command.add_argument("--data-dir", type=Path, help="default: $CG_DATA_DIR, else .data at the repository root")
        command.add_argument("--env-file", type=Path, help="default: $CG_ENV_FILE, else .env at the repository root")
    commands.add_parser("new-master-key", help="print a fresh Fernet key for MASTER_KEY")
    commands.add_parser("env-example", help="print .env.example, every setting with its comment")
    args = parser.parse_args(argv)

    if args.command == "new-master-key":
        print(new_master_key())
        return
    if args.command == "env-example":
        print(render({}), end="")
        return

    configure_logging(level="warning", service="cg-dev")
    # Closing our own set-up connection to NATS is logged as a disconnection: noise here.
    logging.getLogger("cg_common.messaging").setLevel(logging.ERROR)
    signal.signal(signal.SIGINT, _stop_once)
    signal.signal(signal.SIGTERM, _stop_once)
    root = repository_root(Path.cwd())
    try:
        if args.command == "up":
            code = run_up(root, procfile=args.procfile, data_dir=args.data_dir, env_file=args.env_file)
        elif args.command == "servers":
            code = run_servers(root, data_dir=args.data_dir, env_file=args.env_file)
        else:
            code = run_migrate(root, data_dir=args.data_dir, env_file=args.env_file)
    except (DataDirInUseError, ServerStartError, FileNotFoundError) as error:
        print(f"cg-dev: {error}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def repository_root(start: Path) -> Path:
    """The nearest directory up from `start` holding the workspace's uv.lock; `start` itself if none does."""
    return next((d for d in (start, *start.parents) if (d / "uv.lock").exists()), start)


def _stop_once(signum: int, _frame: FrameType | None) -> None:
    """The first Ctrl-C or SIGTERM unwinds, stopping the servers on the way out; later ones must not cut that short
    (a terminal's Ctrl-C reaches `uv run` too, which passes it on: every press arrives twice)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)
