"""`cg-notifier run` delivers budget alerts to the webhooks that want them (Standard Webhooks), retried for a day."""

from __future__ import annotations

import argparse
import asyncio

from cg_common.logging import configure_logging
from cg_common.settings import load_settings
from cg_notifier import service
from cg_notifier.settings import NotifierSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-notifier", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="turn alerts into webhook deliveries and send them until they are answered")
    parser.parse_args(argv)

    settings = load_settings(NotifierSettings)
    configure_logging(level="debug" if settings.debug else settings.log_level, service="notifier")
    asyncio.run(service.run(settings))
