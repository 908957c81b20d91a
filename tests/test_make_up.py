"""`make up` end to end: embedded servers, the api from the Procfile, Ctrl-C, and data kept for the next run.

The runner is started as `make up` starts it (`cg-dev up` in the repository), with a data directory and a `.env`
of the test's own, so the developer's `.data` and `.env` are never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import secrets
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import psutil
import pytest

from cg_common.crypto import fingerprint
from tests.support.processes import free_port
from tests.support.usage import usage_event, wait_until
from tests.test_devstack import REPO_ROOT, environment_without_urls, read_announced, servers_on

ANNOUNCED_NAMES = ("API_URL", "WEB_URL", "NATS_URL", "NATS_SUBSCRIBER_URL", "DATABASE_URL", "REDIS_URL", "API_KEY")
READY_TIMEOUT_SECS = 60.0
STOP_TIMEOUT_SECS = 20.0

pytestmark = pytest.mark.slow


class Output:
    """The lines a process prints, read on a thread so that a full pipe never blocks it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self._lines.put(raw.decode(errors="replace"))
        self._lines.put(None)

    def follow(self, timeout: float) -> Iterator[str]:
        """The lines as they come; AssertionError when the output ends or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while (line := self._next(deadline)) is not None:
            self.seen.append(line)
            yield line
        raise AssertionError("cg-dev up ended or hung before announcing its URLs:\n" + "".join(self.seen))

    def _next(self, deadline: float) -> str | None:
        try:
            return self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    output: Output
    announced: dict[str, str]


@contextmanager
def make_up(tmp_path: Path, api_port: int) -> Iterator[Up]:
    """`cg-dev up` as `make up` runs it, in a session of its own like a terminal's foreground job."""
    env = environment_without_urls(
        CG_DATA_DIR=str(tmp_path / "data"),
        CG_ENV_FILE=str(tmp_path / ".env"),
        API_PORT=str(api_port),
        LEDGER_PORT=str(free_port()),
        SCHEDULER_PORT=str(free_port()),
    )
    process = subprocess.Popen(
        [Path(sys.executable).with_name("cg-dev"), "up"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = Output(process)
    try:
        yield Up(process, output, read_announced(output.follow(READY_TIMEOUT_SECS), ANNOUNCED_NAMES))
    finally:
        if process.poll() is None:  # the test failed midway: still stop the servers, then make sure
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_ping(api_url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    while True:
        try:
            if httpx.get(f"{api_url}/ping", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the api did not answer /ping"
        time.sleep(0.2)


def ctrl_c_stops_everything(up: Up, data_dir: Path) -> None:
    """SIGINT to the whole foreground job, as a terminal sends it: every service and server exits, none is left."""
    descendants = psutil.Process(up.process.pid).children(recursive=True)
    expected = {"cg-api", "cg-ledger", "cg-scheduler", "postgres", "nats-server", "redis-server"}
    assert expected <= {_name(p) for p in descendants}
    os.killpg(up.process.pid, signal.SIGINT)
    assert up.process.wait(timeout=STOP_TIMEOUT_SECS) == 130
    _, alive = psutil.wait_procs(descendants, timeout=STOP_TIMEOUT_SECS)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left running after Ctrl-C: {alive}"
    assert servers_on(data_dir) == set()


def _name(process: psutil.Process) -> str:
    try:
        cmdline = process.cmdline()
    except psutil.NoSuchProcess:
        return ""
    scripts = [Path(arg).name for arg in cmdline[:2]]
    return next((name for name in ("cg-api", "cg-ledger", "cg-scheduler") if name in scripts), str(process.name()))


async def publish_as_another_system(url: str) -> tuple[bool, bool]:
    """(its usage was acknowledged by JetStream, a forged probe result was refused) for `url`'s user."""
    violations: list[str] = []

    async def on_error(error: Exception) -> None:
        violations.append(str(error).lower())

    nc = await nats.connect(url, error_cb=on_error)
    try:
        ack = await nc.jetstream().publish(
            "cg.usage.other-system", json.dumps(usage_event(source="//o", event_id="1")).encode()
        )
        await nc.publish("cg.probe.result.1", b"{}")
        await nc.flush()
        await asyncio.sleep(0.1)
    finally:
        await nc.close()
    return ack.stream == "CG_USAGE", any("cg.probe.result.1" in v for v in violations)


def test_make_up_runs_the_api_on_embedded_servers_and_keeps_data(tmp_path: Path) -> None:
    openai_key = "sk-test-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    api_port = free_port()

    with make_up(tmp_path, api_port) as up:
        assert list(up.announced) == list(ANNOUNCED_NAMES)
        assert up.announced["API_URL"] == f"http://127.0.0.1:{api_port}"
        assert up.announced["WEB_URL"].endswith("/dashboard")
        assert (tmp_path / ".env").read_text().count(f"API_KEY={up.announced['API_KEY']}\n") == 1
        wait_for_ping(up.announced["API_URL"])
        headers = {"X-API-Key": up.announced["API_KEY"]}
        created = httpx.post(
            f"{up.announced['API_URL']}/keys", json={"label": "ci", "api_key": openai_key}, headers=headers
        )
        assert created.status_code == 201, created.text
        # The whole usage path runs too: api → JetStream → ledger → Postgres → api.
        event = usage_event(source="//make-up", event_id="first", key_fingerprint=fingerprint(openai_key))
        sent = httpx.post(f"{up.announced['API_URL']}/usage/events", json=event, headers=headers)
        assert sent.status_code == 202, sent.text
        wait_until(
            lambda: len(httpx.get(f"{up.announced['API_URL']}/data", headers=headers).json()["items"]) == 1,
            timeout=30,
            message="the ledger under make up did not record the event",
        )
        # Another system connects in one step with the printed URLs: it publishes usage, and may do nothing else.
        published, forged = asyncio.run(publish_as_another_system(up.announced["NATS_URL"]))
        assert published and forged, (published, forged)
        assert "subscriber:" in up.announced["NATS_SUBSCRIBER_URL"]
        ctrl_c_stops_everything(up, tmp_path / "data")

    with make_up(tmp_path, api_port) as again:
        assert again.announced["API_KEY"] == up.announced["API_KEY"]  # the .env was kept, not replaced
        wait_for_ping(again.announced["API_URL"])
        listed = httpx.get(f"{again.announced['API_URL']}/keys", headers=headers)
        assert listed.status_code == 200, listed.text
        assert [key["label"] for key in listed.json() if key["fingerprint"] == fingerprint(openai_key)] == ["ci"]
        assert openai_key not in listed.text
        recorded = httpx.get(f"{again.announced['API_URL']}/data", headers=headers).json()["items"]
        ours = [(r["event_id"], r["key_id"]) for r in recorded if r["source"] == "//make-up"]
        assert ours == [("first", created.json()["id"])]
        assert [r["source"] for r in recorded].count("//o") == 1  # the other system's usage, over NATS
        ctrl_c_stops_everything(again, tmp_path / "data")


def test_make_up_runs_cg_dev_up() -> None:
    plan = subprocess.run(
        ["make", "--no-print-directory", "--dry-run", "up"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert plan[-1].endswith(" run --no-sync cg-dev up"), plan
