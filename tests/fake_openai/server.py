"""Runs the fake on a free loopback port in a background thread, with its own event loop (uvicorn)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from tests.fake_openai.app import FakeOpenAI
from tests.support.processes import free_port


@dataclass
class FakeServer:
    fake: FakeOpenAI
    base_url: str  # what OPENAI_BASE_URL is set to: http://127.0.0.1:<port>/v1


@contextmanager
def running_fake_openai(*, latency_ms: float = 0.0, slow_ms: float = 5000.0) -> Iterator[FakeServer]:
    fake = FakeOpenAI(latency_ms=latency_ms, slow_ms=slow_ms)
    port = free_port()
    # log_config=None: uvicorn must not reconfigure this process's logging (other tests assert on it).
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-openai", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.01)
    try:
        yield FakeServer(fake=fake, base_url=f"http://127.0.0.1:{port}/v1")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
