"""Stopping a service cleanly: SIGTERM (Kubernetes, Compose, systemd) and SIGINT (Ctrl-C) mean the same."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable


def on_termination(*callbacks: Callable[[], object]) -> None:
    """Call each callback, in order, when the process is asked to stop; from within the running event loop."""

    def stop() -> None:
        for callback in callbacks:
            callback()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
