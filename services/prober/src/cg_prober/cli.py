"""`cg-prober run`: probe stored OpenAI keys on request, publish the results and usage."""

from __future__ import annotations

import argparse
import asyncio

from cg_common.logging import configure_logging
from cg_common.settings import load_settings
from cg_prober import service
from cg_prober.settings import ProberSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-prober", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume probe requests and probe the keys")
    parser.parse_args(argv)

    settings = load_settings(ProberSettings)
    configure_logging(
        level="debug" if settings.debug else settings.log_level, service="prober", secrets=settings.master_keys
    )
    asyncio.run(service.run(settings))
