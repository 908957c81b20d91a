"""`cg-scheduler run` publishes one probe request per active key per PROBE_INTERVAL_SECS."""

from __future__ import annotations

import argparse
import asyncio

from cg_common.logging import configure_logging
from cg_common.settings import load_settings
from cg_scheduler import service
from cg_scheduler.settings import SchedulerSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-scheduler", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="publish probe requests for every active key, once per interval")
    parser.parse_args(argv)

    settings = load_settings(SchedulerSettings)
    configure_logging(level="debug" if settings.debug else settings.log_level, service="scheduler")
    asyncio.run(service.run(settings))
