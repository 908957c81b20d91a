"""The embedded servers behind `make up` and the tests: real, persistent, never left running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import nats
import psutil
import psycopg
import pytest
import redis

from cg_devstack.envfile import ensure_env_file, render
from cg_devstack.servers import DataDirInUseError, Stack, start_stack

REPO_ROOT = Path(__file__).resolve().parents[1]
NO_URLS: dict[str, str] = {}
SERVER_NAMES = {"nats-server", "postgres", "redis-server"}
URL_NAMES = ("NATS_URL", "DATABASE_URL", "REDIS_URL")
ANNOUNCED = re.compile(r"^([A-Z_]+)=(.*)$")


def environment_without_urls(**extra: str) -> dict[str, str]:
    """This environment minus the server URLs, so that a runner starts embedded servers."""
    return {**{k: v for k, v in os.environ.items() if k not in URL_NAMES}, **extra}


def read_announced(lines: Iterator[str], names: Iterable[str]) -> dict[str, str]:
    """The `NAME=value` lines a runner prints, read until every one of `names` was seen (other lines skipped)."""
    wanted, found, seen = set(names), {}, []
    for line in lines:
        seen.append(line)
        if (match := ANNOUNCED.match(line.strip())) and match[1] in wanted:
            found[match[1]] = match[2]
            if wanted <= found.keys():
                return found
    raise AssertionError(f"output ended before {sorted(wanted - found.keys())} appeared:\n{''.join(seen)}")


def start_runner(*args: str | Path) -> subprocess.Popen[bytes]:
    """`cg-dev` from this venv, in a session of its own like a terminal's foreground job."""
    return subprocess.Popen(
        [Path(sys.executable).with_name("cg-dev"), *args],
        env=environment_without_urls(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stdout_lines(process: subprocess.Popen[bytes]) -> Iterator[str]:
    assert process.stdout is not None
    return (raw.decode(errors="replace") for raw in process.stdout)


def servers_on(data_dir: Path) -> set[int]:
    """Pids of live server processes working in `data_dir`: as their cwd (postgres and its backends, redis) or
    named in their arguments (nats)."""
    root = str(data_dir.resolve())
    found = set()
    for process in psutil.process_iter(["name"]):
        if process.info["name"] not in SERVER_NAMES:
            continue
        try:
            if process.status() != psutil.STATUS_ZOMBIE and (
                process.cwd().startswith(root) or any(root in arg for arg in process.cmdline())
            ):
                found.add(process.pid)
        except psutil.Error:
            continue
    return found


def wait_until_none_on(data_dir: Path, timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := servers_on(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


async def jetstream_account_info(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().account_info()
        return int(info.streams)
    finally:
        await nc.close()


async def publish(url: str, subject: str, payload: bytes) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DEVSTACK_TEST", subjects=[subject])
        await js.publish(subject, payload)
    finally:
        await nc.close()


async def last_message(url: str, subject: str) -> bytes:
    nc = await nats.connect(url)
    try:
        message = await nc.jetstream().get_last_msg("DEVSTACK_TEST", subject)
        return bytes(message.data or b"")
    finally:
        await nc.close()


def assert_answers(stack: Stack) -> None:
    asyncio.run(jetstream_account_info(stack.nats_url))
    with psycopg.connect(stack.database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    client = redis.Redis.from_url(stack.redis_url)
    try:
        assert client.ping()
    finally:
        client.close()


def test_three_real_servers_answer_and_none_is_left_after(tmp_path: Path) -> None:
    with start_stack(tmp_path, NO_URLS) as stack:
        assert set(stack.servers) == {"nats", "postgres", "redis"}
        assert stack.database_url.endswith("/costguardian")
        assert_answers(stack)
        running = servers_on(tmp_path)
        assert {server.pid for server in stack.servers.values()} < running  # postgres runs backends too
    assert servers_on(tmp_path) == set()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with start_stack(tmp_path, NO_URLS) as stack:
        with psycopg.connect(stack.database_url) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
        asyncio.run(publish(stack.nats_url, "devstack.kept", b"still here"))
        redis.Redis.from_url(stack.redis_url).set("kept", "still here")

    with start_stack(tmp_path, NO_URLS) as stack:
        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]
        assert asyncio.run(last_message(stack.nats_url, "devstack.kept")) == b"still here"
        assert redis.Redis.from_url(stack.redis_url).get("kept") == b"still here"


def test_urls_given_in_the_environment_are_used_as_they_are(tmp_path: Path) -> None:
    with start_stack(tmp_path / "outer", NO_URLS) as outer:
        given = {"NATS_URL": outer.nats_url, "DATABASE_URL": outer.database_url, "REDIS_URL": ""}
        with start_stack(tmp_path / "inner", given) as inner:
            assert set(inner.servers) == {"redis"}  # an empty URL counts as not given
            assert (inner.nats_url, inner.database_url) == (outer.nats_url, outer.database_url)
            assert inner.redis_url != outer.redis_url
            assert_answers(inner)
        assert not (tmp_path / "inner" / "postgres").exists()
        assert outer.servers["redis"].running()


def test_a_killed_runner_leaves_nothing_that_blocks_the_next_start(tmp_path: Path) -> None:
    """`cg-dev servers` is killed with -9, then its postgres and nats too; redis stays up as an orphan."""
    data = tmp_path / "data"
    runner = start_runner("servers", "--data-dir", data, "--env-file", tmp_path / ".env")
    urls = read_announced(stdout_lines(runner), URL_NAMES)
    with psycopg.connect(urls["DATABASE_URL"]) as conn:
        conn.execute("CREATE TABLE crashed (note text)")
        conn.execute("INSERT INTO crashed VALUES ('committed')")
    servers = {p.name(): p for p in psutil.Process(runner.pid).children()}
    old = servers_on(data)
    runner.kill()
    runner.wait()
    servers["postgres"].kill()
    servers["nats-server"].kill()

    with start_stack(data, NO_URLS) as stack:
        assert_answers(stack)
        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT note FROM crashed").fetchall() == [("committed",)]
        assert old & servers_on(data) == set()  # the orphaned redis was stopped, postgres backends are gone
    assert servers_on(data) == set()


def test_a_data_dir_in_use_by_a_live_stack_is_refused(tmp_path: Path) -> None:
    with start_stack(tmp_path, {"NATS_URL": "nats://unused", "DATABASE_URL": "postgresql://unused"}) as stack:
        with pytest.raises(DataDirInUseError), start_stack(tmp_path, NO_URLS):
            pass
        assert stack.servers["redis"].running()


def test_stop_wakes_a_frozen_server(tmp_path: Path) -> None:
    with start_stack(tmp_path, {"NATS_URL": "nats://unused", "DATABASE_URL": "postgresql://unused"}) as stack:
        redis_server = stack.servers["redis"]
        redis_server.freeze()
        deadline = time.monotonic() + 5
        while psutil.Process(redis_server.pid).status() != psutil.STATUS_STOPPED:
            assert time.monotonic() < deadline, "SIGSTOP did not take"
            time.sleep(0.01)
        started = time.monotonic()
        redis_server.stop()
        assert time.monotonic() - started < 5
        assert redis_server.process.returncode == 0  # a clean shutdown, not the SIGKILL fallback


def test_env_file_is_created_once_with_fresh_secrets(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    values = ensure_env_file(path)
    assert values["ENV"] == "development"
    assert len(values["API_KEY"]) >= 32
    assert len(values["MASTER_KEY"]) == 44
    assert path.stat().st_mode & 0o077 == 0  # secrets: owner only
    path.write_text(path.read_text() + "DEBUG=true\n")
    assert ensure_env_file(path) == {**values, "DEBUG": "true"}  # never overwritten
    assert ensure_env_file(tmp_path / "other.env")["API_KEY"] != values["API_KEY"]
    assert len(values["DASHBOARD_API_KEY"]) >= 32 and values["DASHBOARD_API_KEY"] != values["API_KEY"]


def test_an_older_env_file_gains_only_the_dashboard_credential(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("ENV=development\nAPI_KEY=kept-as-it-was\n")
    values = ensure_env_file(path)
    assert values["API_KEY"] == "kept-as-it-was" and len(values["DASHBOARD_API_KEY"]) >= 32
    assert ensure_env_file(path) == values  # added once


def test_env_example_lists_every_setting_as_rendered() -> None:
    assert (REPO_ROOT / ".env.example").read_text() == render({}), (
        "regenerate: uv run cg-dev env-example > .env.example"
    )


def test_sigterm_stops_the_servers_of_a_runner(tmp_path: Path) -> None:
    runner = start_runner("servers", "--data-dir", tmp_path, "--env-file", tmp_path / ".env")
    read_announced(stdout_lines(runner), URL_NAMES)
    assert len(servers_on(tmp_path)) > 3
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 143
    assert wait_until_none_on(tmp_path) == set()
