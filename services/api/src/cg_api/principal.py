"""Who a request acts as, once its credential is resolved, and what each scope lets it do (docs/access.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["admin", "read", "ingest", "admit"]
SCOPES: tuple[Scope, ...] = ("admin", "read", "ingest", "admit")
# What only the dashboard's own credential may do: open and end sessions for the people who sign in.
DASHBOARD = "dashboard"

READ_METHODS = frozenset({"GET", "HEAD"})
ADMIN_ONLY_READS = ("/tokens", "/webhooks", "/audit")
SESSIONS_PATH = "/sessions"


@dataclass(frozen=True)
class Principal:
    """A resolved credential: its name for the audit log, its scopes, and the rate-limit bucket it draws from."""

    name: str
    scopes: frozenset[str]
    bucket: str
    rpm: int | None = None  # None: RATE_LIMIT_RPM
    burst: int | None = None  # None: RATE_LIMIT_BURST
    sources: tuple[str, ...] | None = None  # an ingest token's source patterns; None: any source
    token_id: int | None = None

    def may(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def required_scope(method: str, path: str) -> str:
    """The scope a request needs, from its method and path alone, so that it is refused before its body is read."""
    if path == SESSIONS_PATH or path.startswith(SESSIONS_PATH + "/"):
        return DASHBOARD
    if method == "POST" and path == "/usage/events":
        return "ingest"
    if (method == "POST" and path == "/budgets/admit") or (
        method == "DELETE" and path.startswith("/budgets/reservations/")
    ):
        return "admit"
    if method in READ_METHODS and not _under(path, ADMIN_ONLY_READS):
        return "read"
    return "admin"


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)
