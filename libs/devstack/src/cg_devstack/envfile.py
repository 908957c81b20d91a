"""The settings every Cost Guardian service reads, as `.env.example` and as the dev `.env` that `make up` creates.

Both files are rendered from the one table below, so they cannot drift apart (a test compares `.env.example`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from cg_common.crypto import new_master_key


@dataclass(frozen=True)
class Setting:
    name: str
    example: str
    doc: str


SETTINGS = (
    Setting("ENV", "development", "development or production; production refuses dev defaults"),
    Setting("DEBUG", "false", "true: verbose errors and debug logging"),
    Setting("LOG_LEVEL", "info", "debug, info, warning or error"),
    Setting(
        "MASTER_KEY",
        "",
        "Fernet key(s) encrypting stored OpenAI keys, comma-separated: the first encrypts, all decrypt "
        "(make one with `uv run cg-dev new-master-key`)",
    ),
    Setting("API_KEY", "", "admin key, sent as X-API-Key; 32+ random characters in production"),
    Setting(
        "DASHBOARD_API_KEY",
        "",
        "the dashboard's own credential to the api (set on both): it only opens sessions, with its own rate limit",
    ),
    Setting("TRUSTED_PROXIES", "", "proxies (CIDRs) whose X-Forwarded-For names the client; none by default"),
    Setting("NATS_URL", "nats://127.0.0.1:4222", "NATS with JetStream; unset: `make up` and tests start one"),
    Setting("NATS_STREAM_REPLICAS", "1", "JetStream replicas per stream: 1 on a single server, 3 on a cluster"),
    Setting(
        "DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/costguardian",
        "PostgreSQL; unset: `make up` and tests start one",
    ),
    Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis (rebuildable state); unset: `make up` and tests start one"),
    Setting("REDIS_TIMEOUT_MS", "100", "how long the api waits for Redis before RATE_LIMIT_FAIL_MODE decides"),
    Setting("API_PORT", "5001", "port the api listens on"),
    Setting("API_URL", "http://127.0.0.1:5001", "where the web service reaches the api"),
    Setting("WEB_PORT", "5002", "port the web dashboard listens on"),
    Setting("WEB_URL", "http://127.0.0.1:5002", "public URL of the dashboard, for the api's /dashboard redirect"),
    Setting("ALLOWED_ORIGINS", "*", "CORS origins, comma-separated; * is refused in production"),
    Setting(
        "DASHBOARD_PUBLIC", "false", "true: the dashboard's pages open without the admin key (changes still need it)"
    ),
    Setting(
        "SESSION_SECRET",
        "",
        "signs the dashboard's session cookie (32+ characters); unset: derived from DASHBOARD_API_KEY",
    ),
    Setting("SESSION_MAX_AGE_SECS", "43200", "how long a dashboard sign-in lasts"),
    Setting(
        "LOGIN_ATTEMPTS_PER_MINUTE", "5", "dashboard sign-in attempts allowed per client address (shared via Redis)"
    ),
    Setting("API_TIMEOUT_SECS", "10", "how long the dashboard waits for the api before saying it is too slow"),
    Setting("RATE_LIMIT_RPM", "60", "requests per minute refilled into each client's bucket (shared through Redis)"),
    Setting("RATE_LIMIT_BURST", "60", "bucket capacity: requests allowed at once"),
    Setting("RATE_LIMIT_EXEMPT", "/ping,/dashboard", "paths answered with no credential and no limit (only these two)"),
    Setting("RATE_LIMIT_FAIL_MODE", "open", "when Redis does not answer: open admits the request, closed answers 503"),
    Setting("RATE_LIMIT_ENABLED", "true", "false: no rate limiting at all (benchmarks, trusted networks)"),
    Setting("OPENAI_BASE_URL", "https://api.openai.com/v1", "OpenAI-compatible endpoint the prober calls"),
    Setting("OPENAI_MODEL", "gpt-4o-mini", "model of PROBE_MODE=completion probes"),
    Setting("PROBE_MODE", "models", "models: free GET /models; completion: a one-token chat completion, priced"),
    Setting("PROBE_INTERVAL_SECS", "300", "seconds between two probes of each active key"),
    Setting("PROBE_WAIT_SECS", "15", "how long POST /keys/{id}/probe waits for the pipeline's answer"),
    Setting("PUBLISH_TIMEOUT_SECS", "1.5", "how long POST /usage/events waits for JetStream's acks before a 503"),
    Setting("DATABASE_WAIT_SECS", "1.5", "how long an api request waits for a PostgreSQL connection before a 503"),
    Setting("LEDGER_PORT", "5003", "the ledger's health and Prometheus metrics port (/healthz, /readyz, /metrics)"),
    Setting("LEDGER_BATCH_SIZE", "2000", "usage events the ledger fetches, records and acknowledges at once"),
    Setting("LEDGER_ACK_WAIT_SECS", "30", "seconds a fetched event may stay unacknowledged before redelivery"),
    Setting("LEDGER_CONSUMER", "ledger", "durable JetStream consumer shared by all ledger replicas"),
    Setting("LEDGER_MAX_IN_FLIGHT", "4", "usage batches one ledger replica handles at once"),
    Setting("LEDGER_FOLD_INTERVAL_SECS", "1", "seconds between folds of pending roll-up sums into the roll-ups"),
    Setting("PROBER_PORT", "5005", "the prober's health and Prometheus metrics port (/healthz, /readyz, /metrics)"),
    Setting("PROBER_CONCURRENCY", "64", "probes in flight at once in one prober replica"),
    Setting("PROBER_CONSUMER", "prober", "durable JetStream consumer shared by all prober replicas"),
    Setting("PROBER_ACK_WAIT_SECS", "30", "seconds a probe request may stay unsettled before another replica gets it"),
    Setting("PROBE_TIMEOUT_SECS", "10", "how long one call to OpenAI may take before the attempt counts as a timeout"),
    Setting("PROBE_MAX_ATTEMPTS", "4", "deliveries of a request before a transient failure becomes its final result"),
    Setting(
        "PROBE_RETRY_BASE_SECS", "2", "first back-off after a transient failure, doubled each retry; retry-after wins"
    ),
    Setting("ORG_USAGE_LOOKBACK_HOURS", "48", "how far back the first organization usage pull of an admin key reaches"),
    Setting(
        "SCHEDULER_PORT", "5004", "the scheduler's health and Prometheus metrics port (/healthz, /readyz, /metrics)"
    ),
    Setting("NOTIFIER_PORT", "5006", "the notifier's health and Prometheus metrics port (/healthz, /readyz, /metrics)"),
    Setting("NOTIFIER_CONSUMER", "notifier", "durable JetStream consumer of alerts shared by all notifier replicas"),
    Setting(
        "WEBHOOK_ALLOW_PRIVATE",
        "true",
        "webhooks to loopback, private and link-local addresses; unset: allowed in development, refused in production",
    ),
    Setting("WEBHOOK_TIMEOUT_SECS", "10", "how long one webhook attempt may take before it counts as failed"),
    Setting(
        "WEBHOOK_RETRY_DELAYS_SECS",
        "5,300,1800,7200,18000,36000,36000",
        "waits between a webhook's attempts (Standard Webhooks' schedule, 27.5 h); then the delivery is failed",
    ),
    Setting("WEBHOOK_CONCURRENCY", "64", "webhook attempts in flight at once in one notifier replica"),
    Setting("WEBHOOK_PER_RECEIVER", "4", "attempts in flight to any one webhook, so a slow one holds up no other"),
)

CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL
HEADER = """\
# Cost Guardian settings. Variables set in the environment win over this file.
# `make up` creates a dev .env like this one, with a fresh MASTER_KEY, API_KEY and DASHBOARD_API_KEY;
# uncomment a line to change it.
"""


def render(values: dict[str, str]) -> str:
    """The file: each setting with its comment; set where `values` has it, else commented out with its example."""
    blocks = [HEADER]
    for setting in SETTINGS:
        value = values.get(setting.name)
        line = f"# {setting.name}={setting.example}" if value is None else f"{setting.name}={value}"
        blocks.append(f"# {setting.doc}\n{line}\n")
    return "\n".join(blocks)


def ensure_env_file(path: Path) -> dict[str, str]:
    """Create a dev `.env` at `path` unless one exists (never overwritten); return the values it sets."""
    if not path.exists():
        content = render(
            {
                "ENV": "development",
                "MASTER_KEY": new_master_key(),
                "API_KEY": secrets.token_urlsafe(32),
                "DASHBOARD_API_KEY": secrets.token_urlsafe(32),
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Exclusive create: a file made meanwhile by another `make up` is kept. Secrets inside: owner only.
        with contextlib.suppress(FileExistsError), os.fdopen(os.open(path, CREATE_NEW, 0o600), "w") as file:
            file.write(content)
    elif "DASHBOARD_API_KEY" not in read_env_file(path):
        # A .env from before the dashboard had its own credential: the one line it lacks is added, nothing changed.
        with path.open("a") as file:
            file.write("\n# added by `make up`: the dashboard's own credential to the api\n")
            file.write(f"DASHBOARD_API_KEY={secrets.token_urlsafe(32)}\n")
    return read_env_file(path)


def read_env_file(path: Path) -> dict[str, str]:
    """The values a `.env` file sets; none when it does not exist."""
    return {name: value for name, value in dotenv_values(path).items() if value is not None}
