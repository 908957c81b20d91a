"""`cg-web serve` runs the dashboard on WEB_PORT."""

from __future__ import annotations

import argparse

import uvicorn

from cg_common.logging import configure_logging
from cg_common.settings import load_settings
from cg_web.app import create_app
from cg_web.settings import WebSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-web", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the dashboard on WEB_PORT")
    serve_cmd.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a service listens on its pod's interfaces
    args = parser.parse_args(argv)

    settings = load_settings(WebSettings)
    configure_logging(
        level="debug" if settings.debug else settings.log_level,
        service="web",
        secrets=[settings.dashboard_api_key, settings.cookie_secret],
    )
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=settings.web_port,
        log_config=None,  # keep our JSON logging, with its secret scrubbing
        proxy_headers=False,  # X-Forwarded-For is believed only from TRUSTED_PROXIES (cg_common.client_address)
        # Open event streams never end by themselves: give them a moment, then close them.
        timeout_graceful_shutdown=3,
    )
