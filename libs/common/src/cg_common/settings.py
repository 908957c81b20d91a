"""Settings shared by every service, read from the environment and a `.env` file.

Each service subclasses `CommonSettings` with what it alone needs and loads it through `load_settings`, which turns
a validation failure into one line naming the setting, so a bad deployment stops at once and says why.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal, NoReturn, TypeVar

from cryptography.fernet import Fernet
from pydantic import AnyUrl, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that are fine on a laptop and dangerous anywhere else.
WEAK_API_KEYS = frozenset({"", "changeme", "changethis", "admin", "secret", "dev", "dev-api-key", "password"})
MIN_PRODUCTION_API_KEY_LENGTH = 32
MIN_PRODUCTION_DISTINCT_CHARACTERS = 16  # "aaaa…" or a repeated word is long but guessable

CommaList = Annotated[tuple[str, ...], NoDecode]


def split_commas(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def require_scheme(value: str, schemes: tuple[str, ...], name: str) -> str:
    url = AnyUrl(value)
    if url.scheme not in schemes:
        raise ValueError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}")
    return value


def require_strong_api_key(api_key: str, *, name: str = "API_KEY") -> None:
    """A shared secret of a production deployment (the admin key, the dashboard's): long, and none of the
    well-known placeholders."""
    if (
        api_key.lower() in WEAK_API_KEYS
        or len(api_key) < MIN_PRODUCTION_API_KEY_LENGTH
        or len(set(api_key)) < MIN_PRODUCTION_DISTINCT_CHARACTERS
    ):
        raise ValueError(
            f"{name} is too weak for ENV=production (use {MIN_PRODUCTION_API_KEY_LENGTH}+ random characters, "
            f"{MIN_PRODUCTION_DISTINCT_CHARACTERS}+ of them distinct, e.g. `openssl rand -base64 32`)"
        )


class ServiceSettings(BaseSettings):
    """What every process reads, whatever servers it reaches."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    debug: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @model_validator(mode="after")
    def _no_debug_in_production(self) -> ServiceSettings:
        if self.is_production and self.debug:
            raise ValueError("DEBUG=true is refused when ENV=production (it logs request details)")
        return self


class DatabaseSettings(ServiceSettings):
    """Enough to reach PostgreSQL: what `cg-migrate` needs, and the base of every service's settings."""

    database_url: str

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        return require_scheme(value, ("postgresql", "postgres"), "DATABASE_URL")


class NatsSettings(ServiceSettings):
    """Enough to reach NATS."""

    nats_url: str

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str) -> str:
        return require_scheme(value, ("nats", "tls", "ws", "wss"), "NATS_URL")


class MessagingSettings(NatsSettings):
    """Enough to reach NATS and Redis: all the dashboard needs, which never opens PostgreSQL."""

    redis_url: str

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return require_scheme(value, ("redis", "rediss", "unix"), "REDIS_URL")


class TopologySettings(ServiceSettings):
    """The settings JetStream's streams, consumers and buckets are made from (`cg_common.topology`): read by the
    migration step that provisions them and by every service that checks them, so both derive the same config."""

    # JetStream replicas per stream: 1 on a single server, 3 on a cluster. Same code, different setting.
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    probe_interval_secs: int = Field(default=300, ge=5, le=86_400)
    ledger_consumer: str = Field(default="ledger", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # How long a delivered message may stay unacknowledged before JetStream gives it to another ledger replica.
    ledger_ack_wait_secs: float = Field(default=30.0, ge=1, le=3600)
    prober_consumer: str = Field(default="prober", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # A probe request not settled within this time goes to another prober (a crashed prober's work comes back).
    prober_ack_wait_secs: float = Field(default=30.0, ge=1, le=3600)
    notifier_consumer: str = Field(default="notifier", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class CommonSettings(DatabaseSettings, MessagingSettings, TopologySettings):
    """What every service reads; names and defaults follow the contract."""


class KeyVaultSettings(CommonSettings):
    """Settings of the services that encrypt or decrypt stored OpenAI keys (api, prober)."""

    master_key: str = ""

    @field_validator("master_key")
    @classmethod
    def _valid_fernet_keys(cls, value: str) -> str:
        for position, key in enumerate(k.strip() for k in value.split(",") if k.strip()):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise ValueError(
                    f"entry {position + 1} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "make one with `uv run cg-dev new-master-key`)"
                ) from None
        return value

    @model_validator(mode="after")
    def _master_key_required_in_production(self) -> KeyVaultSettings:
        if not self.master_keys and self.is_production:
            raise ValueError("MASTER_KEY is required when ENV=production")
        return self

    @property
    def master_keys(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in self.master_key.split(",") if k.strip())


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def describe_error(error: ValidationError) -> str:
    """One line naming each bad setting, in the environment's spelling."""
    parts = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return "invalid configuration: " + "; ".join(parts)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Build the settings or stop the process with one clear line on stderr."""
    try:
        return cls()
    except ValidationError as error:
        fail(describe_error(error))


def fail(line: str) -> NoReturn:
    print(line, file=sys.stderr)  # logging may not be configured yet, and this must reach the operator
    raise SystemExit(2)


__all__ = [
    "MIN_PRODUCTION_API_KEY_LENGTH",
    "WEAK_API_KEYS",
    "CommaList",
    "CommonSettings",
    "DatabaseSettings",
    "KeyVaultSettings",
    "MessagingSettings",
    "NatsSettings",
    "ServiceSettings",
    "TopologySettings",
    "describe_error",
    "fail",
    "load_settings",
    "require_scheme",
    "split_commas",
]
