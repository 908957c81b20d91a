"""The NATS users of deploy/k8s/base/nats-permissions.conf in tests: the test stack's NATS runs with that file, test
code itself connects as `admin` (it injects and inspects raw traffic), and every service a test starts connects as its
own user, as in the deployments. Where NATS came from outside (NATS_URL set), there are no users to switch to."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from cg_devstack.servers import Stack

_URLS_BY_SERVER: dict[str, dict[str, str]] = {}  # "host:port" → user → URL


def register(stack: Stack) -> None:
    nats = stack.servers.get("nats")
    if nats is not None and nats.user_urls:
        _URLS_BY_SERVER[_server(nats.url)] = dict(nats.user_urls)


def as_user(url: str, user: str) -> str:
    """The same server's URL for `user`; `url` itself when the server has no users known here."""
    return _URLS_BY_SERVER.get(_server(url), {}).get(user, url)


def env_as(env: Mapping[str, str], user: str) -> dict[str, str]:
    """`env` with its NATS_URL (if any) switched to `user`."""
    return {**env, "NATS_URL": as_user(env["NATS_URL"], user)} if "NATS_URL" in env else dict(env)


def _server(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2]
