"""A process that only receives (`python -m bench.subscriber NATS_URL SUBJECT`): one core NATS subscription whose
callback counts, connected as the services connect. What any Python subscriber to `SUBJECT` pays at least.

Prints `ready` once the server has the subscription and, on SIGTERM, the number of messages it received.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from nats.aio.msg import Msg

from cg_common.messaging import close_nats, connect_nats

READY = "ready"


async def main(nats_url: str, subject: str) -> None:
    received = 0

    async def count(_msg: Msg) -> None:
        nonlocal received
        received += 1

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    nc = await connect_nats(nats_url, name="bench-subscriber")
    try:
        await nc.subscribe(subject, cb=count)
        await nc.flush()
        print(READY, flush=True)
        await stop.wait()
    finally:
        await close_nats(nc)
    print(received, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
