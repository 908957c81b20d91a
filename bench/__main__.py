"""`make bench`: start real servers, run every benchmark, print the figures and write docs/benchmarks.md."""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench import machine, ratelimit, wrk
from cg_common.crypto import new_master_key
from cg_common.migrate import apply_migrations
from cg_devstack.servers import start_stack

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

INTRO = """# Benchmarks

Written by `make bench` (`uv run python -m bench`); every figure below comes from the run stamped under it, with its
baseline measured in the same run. Real servers throughout: NATS JetStream, PostgreSQL 16 and Redis, embedded from
PyPI unless `NATS_URL`, `DATABASE_URL`, `REDIS_URL` are set.
"""


def main() -> None:
    if not wrk.available():
        sys.exit("make bench needs wrk (Debian: apt-get install wrk); `make bench` installs it where it can")
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp, start_stack(Path(tmp) / "servers") as stack:
        database_url = _fresh_database(stack.database_url)
        env = {
            "NATS_URL": stack.nats_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": stack.redis_url,
            "MASTER_KEY": new_master_key(),
            "API_KEY": secrets.token_urlsafe(32),
        }
        limiter = ratelimit.run(stack, database_url, env, Path(tmp))
    sections = [INTRO, f"Machine: {machine.describe()}.\n", "## Rate limiter cost\n", ratelimit.markdown(limiter), ""]
    text = "\n".join(sections)
    DOC.write_text(text)
    print(text)


def _fresh_database(server_url: str) -> str:
    name = "cg_bench_" + secrets.token_hex(4)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    apply_migrations(url)
    return url


if __name__ == "__main__":
    main()
