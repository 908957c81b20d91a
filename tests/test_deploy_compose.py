"""The one-host deployment: the compose files parsed by the Compose specification's validating parser, what they
promise checked, and the Dockerfile linted with hadolint."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from cg_api.settings import ApiSettings
from cg_common.crypto import new_master_key
from cg_common.migration_step import MigrateSettings
from cg_common.settings import DatabaseSettings
from cg_devstack import nats_users
from cg_devstack.envfile import SETTINGS
from cg_ledger.settings import LedgerSettings
from tests.support.deployment import (
    COMPOSE_FILE,
    DOCKERFILE,
    REPO,
    ROOT_COMPOSE_FILE,
    compose_document,
    dockerfile_instructions,
    parse_compose,
)

APP_SERVICES = ("migrate", "api", "web", "scheduler", "ledger", "prober", "notifier")
DATASTORES = ("nats", "postgres", "redis")


@pytest.mark.parametrize("path", [COMPOSE_FILE, ROOT_COMPOSE_FILE], ids=["deploy/compose", "root"])
def test_compose_files_parse(path: Path) -> None:
    parse_compose(compose_document(path))


def test_the_root_file_includes_the_deployment() -> None:
    included = compose_document(ROOT_COMPOSE_FILE)["include"]
    assert [REPO / path for path in included] == [COMPOSE_FILE]


@pytest.mark.parametrize(
    ("service", "field", "typo"),
    [("api", "depends_on", "depend_on"), ("prober", "deploy", "deploi"), ("postgres", "healthcheck", "healthchek")],
)
def test_a_misspelt_field_is_refused(service: str, field: str, typo: str) -> None:
    document = compose_document()
    document["services"][service][typo] = document["services"][service].pop(field)
    with pytest.raises(ValueError, match=typo):
        parse_compose(document)


def test_a_misspelt_nested_field_is_refused() -> None:
    document = compose_document()
    document["services"]["redis"]["healthcheck"]["intervall"] = document["services"]["redis"]["healthcheck"].pop(
        "interval"
    )
    with pytest.raises(ValueError, match="intervall"):
        parse_compose(document)


def test_services_start_in_order_once_their_dependencies_are_healthy() -> None:
    services = parse_compose(compose_document()).to_dict()["services"]
    assert set(services) == {*DATASTORES, *APP_SERVICES}
    for name in DATASTORES:
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
        assert services[name].get("volumes"), name
    assert services["migrate"]["command"] == ["cg-migrate"]
    assert services["migrate"]["depends_on"] == {
        "nats": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    for name in ("api", "scheduler", "ledger", "prober", "notifier"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions == {
            "nats": "service_healthy",
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
        }, name
    assert services["web"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert services["prober"]["deploy"]["replicas"] == 2
    assert services["api"]["ports"] == ["5001:5001"]
    assert services["web"]["ports"] == ["5002:5002"]


SECRETS_BY_SERVICE = {
    "migrate": {
        "POSTGRES_PASSWORD",
        "CG_NATS_MIGRATE_PASSWORD",
        *(f"PG_{s}_PASSWORD" for s in ("API", "LEDGER", "PROBER", "SCHEDULER", "NOTIFIER")),
    },
    "api": {"PG_API_PASSWORD", "CG_NATS_API_PASSWORD", "MASTER_KEY", "API_KEY", "DASHBOARD_API_KEY"},
    "web": {"CG_NATS_WEB_PASSWORD", "DASHBOARD_API_KEY"},
    "scheduler": {"PG_SCHEDULER_PASSWORD", "CG_NATS_SCHEDULER_PASSWORD"},
    "ledger": {"PG_LEDGER_PASSWORD", "CG_NATS_LEDGER_PASSWORD"},
    "prober": {"PG_PROBER_PASSWORD", "CG_NATS_PROBER_PASSWORD", "MASTER_KEY"},
    "notifier": {"PG_NOTIFIER_PASSWORD", "CG_NATS_NOTIFIER_PASSWORD", "MASTER_KEY"},
    "postgres": {"POSTGRES_PASSWORD"},
    "nats": {f"CG_NATS_{user.upper().replace('-', '_')}_PASSWORD" for user in nats_users.USERS},
}
INTERPOLATED = re.compile(r"\$\{(\w+):\?[^}]*\}")


def secrets_of(example: Path) -> set[str]:
    return {line.split("=", 1)[0] for line in example.read_text().splitlines() if line and not line.startswith("#")}


def test_each_service_gets_only_the_secrets_it_needs_and_none_is_written_in() -> None:
    """MASTER_KEY only to the api (which encrypts) and the prober and notifier (which decrypt), each NATS password only
    to its user's service, and no literal secret anywhere: they enter by interpolation from deploy/compose/.env."""
    document = compose_document()
    secrets_known = secrets_of(COMPOSE_FILE.parent / ".env.example")
    for name, service in document["services"].items():
        if name in APP_SERVICES:
            assert service["env_file"] == "settings.env", name
        given = set()
        for key, value in service.get("environment", {}).items():
            given |= set(INTERPOLATED.findall(value))
            assert key not in secrets_known or INTERPOLATED.fullmatch(value), (name, key)
            assert "@" not in value or INTERPOLATED.search(value), (name, key)
        assert given == SECRETS_BY_SERVICE.get(name, set()), name
    assert set().union(*SECRETS_BY_SERVICE.values()) == secrets_known


def test_settings_and_secrets_files_name_only_known_settings_and_the_real_file_is_ignored() -> None:
    settings = secrets_of(COMPOSE_FILE.parent / "settings.env")
    assert settings <= {s.name for s in SETTINGS} and {"ENV", "ALLOWED_ORIGINS", "WEB_URL"} <= settings
    assert not settings & set().union(*SECRETS_BY_SERVICE.values())
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/compose/.env"], cwd=REPO, check=False)
    assert ignored.returncode == 0


def test_the_nats_server_runs_the_permission_file_of_make_up_and_the_tests() -> None:
    nats = compose_document()["services"]["nats"]
    assert "../k8s/base/nats-permissions.conf:/etc/nats/permissions.conf:ro" in nats["volumes"]
    assert nats["command"][:2] == ["--config", "/etc/nats/permissions.conf"]
    assert (COMPOSE_FILE.parent / "../k8s/base/nats-permissions.conf").resolve() == nats_users.PERMISSIONS_FILE
    for name in APP_SERVICES:
        url = compose_document()["services"][name]["environment"]["NATS_URL"]
        assert url.startswith(f"nats://{name}:${{CG_NATS_{name.upper()}_PASSWORD:?"), name


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    instructions = dockerfile_instructions()
    stages = [args for name, args in instructions if name == "FROM"]
    assert len(stages) >= 3  # uv, build, final
    final = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    names = [name for name, _ in final]
    assert "USER" in names and "HEALTHCHECK" in names
    assert dict(final)["USER"].split(":")[0] not in {"0", "root"}
    # Without a command of its own, the image runs the api exactly as the deployments do.
    assert json.loads(dict(final)["CMD"]) == compose_document()["services"]["api"]["command"]
    # Only the built virtual environment reaches the final image: no uv, no sources, no build cache.
    assert [args for name, args in final if name in {"COPY", "ADD"}] == ["--from=build /app/.venv /app/.venv"]
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "**/.env" in dockerignore and ".git" in dockerignore


@pytest.mark.parametrize(
    ("service", "settings_class"), [("api", ApiSettings), ("ledger", LedgerSettings), ("migrate", MigrateSettings)]
)
def test_the_env_example_filled_in_gives_valid_production_settings(
    service: str, settings_class: type[DatabaseSettings]
) -> None:
    """What a service gets from Compose (settings.env, then `environment:` with the secrets of a filled-in .env
    interpolated) passes the service's own production checks."""
    filled = {name: "p" + secrets.token_hex(20) for name in secrets_of(COMPOSE_FILE.parent / ".env.example")}
    filled |= {"MASTER_KEY": new_master_key(), "POSTGRES_PASSWORD": "s3cret"}
    filled |= {"API_KEY": secrets.token_urlsafe(32), "DASHBOARD_API_KEY": secrets.token_urlsafe(32)}
    env = {k: v for k, v in dotenv_values(COMPOSE_FILE.parent / "settings.env").items() if v is not None}
    for key, value in compose_document()["services"][service]["environment"].items():
        env[key] = INTERPOLATED.sub(lambda match: filled[match.group(1)], value)
    settings = settings_class.model_validate({k.lower(): v for k, v in env.items()})
    assert settings.is_production
    role = "costguardian" if service == "migrate" else f"cg_{service}"
    password = "s3cret" if service == "migrate" else filled[f"PG_{service.upper()}_PASSWORD"]
    assert settings.database_url == f"postgresql://{role}:{password}@postgres:5432/costguardian"
