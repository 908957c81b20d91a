"""Who owns each PostgreSQL table and who may read it: the table `docs/architecture.md` shows, as data.

Every table has one owning service, the only one that writes it; another service reads it only where a grant below
says so, and only the columns named. What one service may do to another's data beyond reading goes through a
function the owner defines (`clear_usage()`, for the api's DELETE /reset). A test holds the document to this module,
and the grants here are what a service's own PostgreSQL role is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

SERVICES = ("api", "ledger", "prober", "scheduler", "notifier")  # the web never opens PostgreSQL
OWNER_PRIVILEGES = sql.SQL("SELECT, INSERT, UPDATE, DELETE, TRUNCATE")


@dataclass(frozen=True)
class Table:
    name: str
    owner: str
    purpose: str
    # Reader → the columns it may read; every column where the tuple is empty.
    readers: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Function:
    """An operation on its owner's tables that another service may invoke, with the owner's rights."""

    name: str
    owner: str
    purpose: str
    callers: tuple[str, ...]
    arguments: str = ""  # the argument types, as PostgreSQL names the function by them


KEY_COLUMNS_FOR_ATTRIBUTION = ("id", "fingerprint", "deleted_at")

TABLES = (
    Table(
        "api_keys",
        "api",
        "stored OpenAI keys: ciphertext, fingerprint, label, kind, active, deleted",
        {
            "ledger": KEY_COLUMNS_FOR_ATTRIBUTION,
            "prober": ("id", "kind", "ciphertext", "fingerprint", "active", "deleted_at"),
            "scheduler": ("id", "active", "deleted_at"),
        },
    ),
    Table("key_health", "ledger", "each key's health from its probe results", {"api": ()}),
    Table("key_probe_results", "ledger", "which probe results were applied, so each counts once"),
    Table("usage_events", "ledger", "usage records, one per (source, event id)", {"api": ()}),
    Table("usage_rollup_hourly", "ledger", "usage summed per hour, key, source, provider, model", {"api": ()}),
    Table("usage_rollup_daily", "ledger", "usage summed per UTC day, key, source, provider, model", {"api": ()}),
    Table("usage_rollup_pending", "ledger", "roll-up sums of committed batches not folded in yet", {"api": ()}),
    Table(
        "usage_rollup_groupings",
        "ledger",
        "the dimension groupings rolled up, and whether each holds its history",
        {"api": ()},
    ),
    Table("usage_rollup_dimension_hourly", "ledger", "usage summed per hour and dimension grouping value", {"api": ()}),
    Table(
        "usage_rollup_dimension_daily", "ledger", "usage summed per UTC day and dimension grouping value", {"api": ()}
    ),
    Table(
        "usage_rollup_dimension_monthly",
        "ledger",
        "usage summed per UTC month and value of a coarse dimension grouping",
        {"api": ()},
    ),
    Table(
        "usage_rollup_dimension_pending",
        "ledger",
        "dimension roll-up sums of committed batches not folded in yet",
        {"api": ()},
    ),
    Table("billed_costs", "ledger", "what OpenAI billed per day, project and line item", {"api": ()}),
    Table("api_tokens", "api", "API tokens: name, scopes, limits, the secret's hash, expiry, revocation, last use"),
    Table(
        "dashboard_sessions", "api", "signed-in dashboard sessions: the secret's hash, the token or admin key behind"
    ),
    Table("audit_log", "api", "every change made through the api, with the acting credential's name and outcome"),
    Table(
        "budgets",
        "api",
        "budgets: amount, period, time zone, scope, thresholds, hard or not; deleted ones kept",
        {
            "ledger": (
                "id",
                "name",
                "amount",
                "period",
                "timezone",
                "scope",
                "thresholds",
                "definition",
                "deleted_at",
                "opening_period_start",
                "opening_spent",
                "scope_members",
                "scope_values",
            )
        },
    ),
    Table("budget_spend", "ledger", "each budget's spend per period, kept with the usage it counts", {"api": ()}),
    Table(
        "budget_spend_hourly",
        "ledger",
        "each budget's spend per hour, for the recent burn rate its forecast rests on",
        {"api": ()},
    ),
    Table("budget_alerts", "ledger", "every budget alert, once per budget, period, kind and threshold", {"api": ()}),
    Table(
        "webhooks",
        "api",
        "alert receivers: URL, alert types, format, the signing secret encrypted; deleted ones kept",
        {"notifier": ("id", "url", "events", "format", "secret_ciphertext", "deleted_at")},
    ),
    Table(
        "webhook_deliveries",
        "notifier",
        "one delivery per webhook and alert: its body, status, attempts, when it is next due",
        {"api": ()},
    ),
    Table("webhook_attempts", "notifier", "every delivery attempt and the receiver's answer", {"api": ()}),
    Table(
        "budget_holds",
        "api",
        "per hard budget: what its live admission reservations hold, its refusals; the lock admission takes",
    ),
    Table(
        "budget_reservations",
        "api",
        "admission reservations: the budgets they hold money in, amount, expiry, how and when each ended",
    ),
    Table("schema_migrations", "migrate", "the SQL migrations applied"),
)

FUNCTIONS = (
    Function("clear_usage", "ledger", "every usage record and roll-up (DELETE /reset)", ("api",)),
    Function(
        "settle_reservations",
        "api",
        "ends the admission reservations that newly recorded usage events name",
        ("ledger",),
        "uuid[], numeric[], text[]",
    ),
)


def table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


def grants(service: str, role: str) -> list[sql.Composed]:
    """The GRANT statements that give `role` exactly what `service` may do: write its own tables, read the columns
    it is granted of others', call the functions offered to it."""
    statements = []
    role_id = sql.Identifier(role)
    for item in TABLES:
        name = sql.Identifier(item.name)
        if item.owner == service:
            statements.append(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {}").format(name, role_id)
            )
        elif service in item.readers:
            columns = item.readers[service]
            what = (
                sql.SQL("SELECT ({})").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
                if columns
                else sql.SQL("SELECT")
            )
            statements.append(sql.SQL("GRANT {} ON {} TO {}").format(what, name, role_id))
    for function in FUNCTIONS:
        if service in function.callers:
            statements.append(
                sql.SQL("GRANT EXECUTE ON FUNCTION {}({}) TO {}").format(
                    sql.Identifier(function.name), sql.SQL(function.arguments), role_id
                )
            )
    return statements
