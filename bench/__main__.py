"""`make bench`: start real servers, run every benchmark, print the figures and write docs/benchmarks.md.

`--only NAME` (repeatable) runs only the named benchmarks and replaces only their sections of docs/benchmarks.md;
the others stay as they were. `--py-spy PATH` adds, to the ingest benchmark, one more ledger run sampled by py-spy
(not part of the figures), summarised under `--profile-dir`.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    admission,
    alert_latency,
    dlq,
    forecast_error,
    ingest,
    live_feed,
    machine,
    overview,
    probes,
    ratelimit,
    summary,
    wrk,
)
from bench.support import OtherLoad, code_version, drop_database, fresh_database, say
from cg_common.crypto import new_master_key
from cg_common.logging import configure_logging
from cg_devstack.servers import Stack, start_stack

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BUSY_MACHINE_CORES = 0.1  # CPU used by processes outside the run, beyond which its figures are flagged

INTRO = """# Benchmarks

Written by `make bench` (`uv run python -m bench`; `--only NAME` reruns one section and leaves the others as they
were). Every figure comes from the run stamped at the top of its section, with its baseline measured in the same run.
Real servers throughout: NATS JetStream, PostgreSQL 16 and Redis, embedded from PyPI unless `NATS_URL`,
`DATABASE_URL`, `REDIS_URL` are set.
"""


@dataclass(frozen=True)
class Context:
    stack: Stack
    work_dir: Path
    master_key: str
    api_key: str
    args: argparse.Namespace

    def env(self, database_url: str) -> dict[str, str]:
        return {
            "NATS_URL": self.stack.nats_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": self.stack.redis_url,
            "MASTER_KEY": self.master_key,
            "API_KEY": self.api_key,
        }


@dataclass(frozen=True)
class Benchmark:
    title: str
    run: Callable[[Context], str]  # returns the section's markdown body


def _ratelimit(ctx: Context) -> str:
    database_url = fresh_database(ctx.stack.database_url)
    try:
        result = ratelimit.run(ctx.stack, database_url, ctx.env(database_url), ctx.work_dir)
    finally:
        drop_database(ctx.stack.database_url, database_url)
    return ratelimit.markdown(result)


def _ingest(ctx: Context) -> str:
    result = ingest.run(
        ctx.stack, ctx.work_dir, ctx.master_key, py_spy=ctx.args.py_spy, profile_dir=ctx.args.profile_dir
    )
    _print_figures("ingest", result)
    return ingest.markdown(result)


def _summary(ctx: Context) -> str:
    result = summary.run(ctx.stack, ctx.work_dir, ctx.env)
    _print_figures("summary", result)
    return summary.markdown(result)


def _probes(ctx: Context) -> str:
    result = probes.run(ctx.stack, ctx.work_dir, ctx.master_key)
    _print_figures("probes", result)
    return probes.markdown(result)


def _dlq(ctx: Context) -> str:
    result = dlq.run(ctx.work_dir)
    _print_figures("dlq", result)
    return dlq.markdown(result)


def _overview(ctx: Context) -> str:
    result = overview.run(ctx.stack, ctx.work_dir, ctx.env)
    _print_figures("overview", result)
    return overview.markdown(result)


def _live(ctx: Context) -> str:
    result = live_feed.run(ctx.stack, ctx.work_dir, ctx.master_key, ctx.api_key)
    _print_figures("live", result)
    return live_feed.markdown(result)


def _admission(ctx: Context) -> str:
    result = admission.run(ctx.stack, ctx.work_dir, ctx.env)
    _print_figures("admission", result)
    return admission.markdown(result)


def _forecast(_ctx: Context) -> str:
    result = forecast_error.run()
    return forecast_error.markdown(result)


def _alerts(ctx: Context) -> str:
    result = alert_latency.run(ctx.stack, ctx.work_dir, ctx.env)
    _print_figures("alerts", result)
    return alert_latency.markdown(result)


BENCHMARKS: dict[str, Benchmark] = {
    "ratelimit": Benchmark("Access control cost: a token, its scope and its own bucket", _ratelimit),
    "ingest": Benchmark("End-to-end ingest: JetStream → ledger → PostgreSQL", _ingest),
    "summary": Benchmark("Usage summary over 10 million events", _summary),
    "probes": Benchmark("Probing 10,000 keys against a 100 ms OpenAI", _probes),
    "dlq": Benchmark("Dead letters: listing and replaying 20,000", _dlq),
    "overview": Benchmark("Dashboard overview over 10 million events", _overview),
    "live": Benchmark("Dashboard live feed while the ledger ingests at full rate", _live),
    "alerts": Benchmark("Alert latency: a threshold crossed to the webhook's arrival", _alerts),
    "forecast": Benchmark("Budget forecast: its error on a replayed history", _forecast),
    "admission": Benchmark("Admission: admits per second and their latency", _admission),
}


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    configure_logging(level="warning", service="bench")  # stream set-up chatter is not progress
    selected = args.only or list(BENCHMARKS)
    if "ratelimit" in selected and not wrk.available():
        sys.exit("make bench needs wrk (Debian: apt-get install wrk); `make bench` installs it where it can")
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
        if "summary" in selected or "overview" in selected:
            summary.check_disk(Path(tmp))
        with start_stack(Path(tmp) / "servers") as stack:
            ctx = Context(stack, Path(tmp), new_master_key(), secrets.token_urlsafe(32), args)
            bodies = {}
            for name in selected:
                say(name, "starting")
                version = code_version()
                load = OtherLoad()
                load.start()
                body = BENCHMARKS[name].run(ctx)
                others = load.stop()
                if code_version() != version:
                    say(name, "the code changed while this benchmark ran: its figures mix two versions")
                    version += ", changed during the run"
                if others > BUSY_MACHINE_CORES:
                    say(name, f"other processes kept {others:.2f} cores busy meanwhile: these figures are disturbed")
                stamp = f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {version}; other processes on the machine"
                bodies[name] = f"{stamp} used {others:.2f} cores meanwhile.\n\n{body}"
                say(name, "done")
                _write(bodies)  # a later benchmark failing keeps what this one measured
    print(DOC.read_text())


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        help="run only this benchmark (repeatable); the other sections of docs/benchmarks.md stay as they are",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        default=None,
        help="py-spy executable: the ingest benchmark then also profiles one ledger run (outside the figures)",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cg-bench-profile",
        help="where the py-spy profile and its summary go (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.py_spy and not shutil.which(args.py_spy):
        parser.error(f"--py-spy {args.py_spy}: not an executable")
    return args


def _print_figures(name: str, result: dict[str, Any]) -> None:
    say(name, f"figures: {result!r}")


# Sections live between markers, so that one benchmark can be rerun alone and replace only its own.
def _start(name: str) -> str:
    return f"<!-- bench:{name}:start -->"


def _end(name: str) -> str:
    return f"<!-- bench:{name}:end -->"


def _write(bodies: dict[str, str]) -> None:
    """docs/benchmarks.md with these sections (each stamped with its run) and every other one as it was."""
    old = DOC.read_text() if DOC.exists() else ""
    sections = []
    for name, bench in BENCHMARKS.items():
        if name in bodies:
            section = f"## {bench.title}\n\n{bodies[name]}\n"
        else:
            previous = _existing_section(old, name, bench.title)
            if previous is None:
                continue
            section = previous
        sections.append(f"{_start(name)}\n{section.strip()}\n{_end(name)}\n")
    DOC.write_text("\n".join([INTRO, f"Machine (latest run): {machine.describe()}.\n", *sections]))


def _existing_section(text: str, name: str, title: str) -> str | None:
    """A section as written before: between its markers, or (a file from before the markers) its heading up to the
    next heading."""
    marked = re.search(re.escape(_start(name)) + r"\n(.*?)" + re.escape(_end(name)), text, re.DOTALL)
    if marked:
        return marked.group(1)
    legacy = re.search(r"^## " + re.escape(title) + r"\n.*?(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    return legacy.group(0) if legacy else None


if __name__ == "__main__":
    main()
