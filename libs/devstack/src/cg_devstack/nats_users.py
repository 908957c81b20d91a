"""The NATS users of deploy/k8s/base/nats-permissions.conf, for the embedded server: their passwords (made once per data
directory and kept there, owner-only) and the URL each connects with. The deployments set the same variables from
their secrets."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

PERMISSIONS_FILE = Path(__file__).resolve().parents[4] / "deploy" / "k8s" / "base" / "nats-permissions.conf"
SERVICES = ("migrate", "api", "web", "scheduler", "prober", "ledger", "notifier")
USERS = ("admin", *SERVICES, "usage-publisher", "subscriber")
PASSWORDS_FILE = "nats-users.json"


def password_variable(user: str) -> str:
    """`usage-publisher` → `CG_NATS_USAGE_PUBLISHER_PASSWORD`, the variable the permission file reads."""
    return f"CG_NATS_{user.upper().replace('-', '_')}_PASSWORD"


def passwords(data_dir: Path) -> dict[str, str]:
    """Every user's password, made on first use and kept under `data_dir` for the next start."""
    path = data_dir / PASSWORDS_FILE
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if set(USERS) <= known.keys():
        return {user: known[user] for user in USERS}
    made = {user: known.get(user) or new_password() for user in USERS}
    data_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        json.dump(made, file)
    return made


def new_password() -> str:
    """Letters and digits, a letter first: nats-server reads a variable's value as a config value, so one that
    looked like a number (or began with `-`) would not be a password."""
    return "p" + secrets.token_hex(20)


def server_environment(passwords_by_user: dict[str, str]) -> dict[str, str]:
    """The variables nats-server expands in the permission file."""
    return {password_variable(user): password for user, password in passwords_by_user.items()}


def user_url(url: str, user: str, password: str) -> str:
    """`nats://host:port` with a user's credentials in it: what that user's NATS_URL is."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))
