"""`python -m tests.fake_openai --port N --latency-ms 100`: the fake as a process of its own, for benchmarks."""

from __future__ import annotations

import argparse

import uvicorn

from tests.fake_openai.app import FakeOpenAI


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_openai", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--slow-ms", type=float, default=5000.0, help="added again for `slow` keys")
    args = parser.parse_args()
    fake = FakeOpenAI(latency_ms=args.latency_ms, slow_ms=args.slow_ms)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
