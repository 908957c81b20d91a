"""The container entrypoints without Docker: the image's virtual environment is built with the Dockerfile's own
`uv sync` line, and each service's production command — read from the compose file and the Kubernetes manifests,
which must agree — runs from it against the real servers with the settings its pod gets (ConfigMap + Secret, so
ENV=production), becomes ready on the probed endpoint, passes the image's HEALTHCHECK, and stops on SIGTERM within
its pod's grace period."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cg_devstack import nats_users
from cg_devstack.servers import Stack
from tests.conftest import ADMIN_KEY, DASHBOARD_KEY
from tests.support.deployment import (
    REPO,
    compose_document,
    dockerfile_healthcheck,
    dockerfile_sync_command,
    pod_of,
    rendered_overlay,
    settings_config_map,
)
from tests.support.nats_users import as_user
from tests.support.processes import free_port, start_service

LONG_RUNNING = ("api", "web", "scheduler", "ledger", "prober", "notifier")
# The overlay whose settings the services get here: its datastores are single servers, like the test's.
OVERLAY = "dev"


@pytest.fixture(scope="session")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's /app/.venv, made by the Dockerfile's build step: locked runtime dependencies only, no dev tools."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    uv, *arguments = dockerfile_sync_command()
    assert uv == "uv"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": sys.executable, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run([*uv_command(), *arguments], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return venv


def uv_command() -> list[str]:
    """uv as `uv run` names it (UV), else on PATH, else the copy `pip install --user uv` made (as the Makefile)."""
    found = os.environ.get("UV") or shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


@pytest.fixture
def secrets(stack: Stack, database_url: str, master_key: str, clean_state: None, clean_streams: None) -> dict[str, str]:
    """What the operator puts in the cost-guardian-secrets Secret, for the test's servers."""
    return {
        "MASTER_KEY": master_key,
        "API_KEY": ADMIN_KEY,
        "DASHBOARD_API_KEY": DASHBOARD_KEY,
        "DATABASE_URL": database_url,
        **{
            f"DATABASE_URL_{service.upper()}": database_url
            for service in ("api", "ledger", "prober", "scheduler", "notifier")
        },
        **{
            f"PG_{service.upper()}_PASSWORD": "unused-here"
            for service in ("api", "ledger", "prober", "scheduler", "notifier")
        },
        "REDIS_URL": stack.redis_url,
        "POSTGRES_PASSWORD": "unused-here",
        # NATS_URL is pointed at the test's server below, as the service's own user there.
        **{nats_users.password_variable(user): "unused-here" for user in nats_users.USERS},
    }


def production_command(service: str) -> list[str]:
    """The command both deployments give the service; they must not drift apart."""
    in_compose: list[str] = compose_document()["services"][service]["command"]
    in_kubernetes: list[str] = pod_of(rendered_overlay(OVERLAY), service)["spec"]["containers"][0]["command"]
    assert in_compose == in_kubernetes, f"{service}: compose runs {in_compose}, Kubernetes {in_kubernetes}"
    return in_compose


def require_console_script(name: str) -> None:
    """xfail, naming the service, while its console script is declared but its module has not landed yet; any other
    import failure of a landed service is a failure."""
    scripts = importlib.metadata.entry_points(group="console_scripts", name=name)
    if not scripts:
        pytest.fail(f"no console script {name} is installed")
    (script,) = scripts
    try:
        script.load()
    except ModuleNotFoundError as error:
        if error.name != script.module:
            raise
        pytest.xfail(f"{name} not checked: its module {script.module} does not exist yet")


def pod_environment(service: str, secrets: dict[str, str], nats_url: str) -> dict[str, str]:
    """The variables the service's container gets in Kubernetes, pointed at the test's servers."""
    manifests = rendered_overlay(OVERLAY)
    container = pod_of(manifests, service)["spec"]["containers"][0]
    env = settings_config_map(manifests) if container.get("envFrom") else {}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            env[variable["name"]] = secrets[variable["valueFrom"]["secretKeyRef"]["key"]]
    env["NATS_URL"] = as_user(nats_url, service)
    return env


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_production_command_gets_ready_and_stops_on_sigterm_within_the_grace_period(
    service: str, image_env: Path, secrets: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    command = production_command(service)
    require_console_script(command[0])
    pod = pod_of(rendered_overlay(OVERLAY), service)["spec"]
    container = pod["containers"][0]
    env = pod_environment(service, secrets, stack.nats_url)
    assert env["ENV"] == "production"
    (port_setting,) = [
        k for k, v in env.items() if k.endswith("_PORT") and v == str(container["ports"][0]["containerPort"])
    ]
    port = free_port()
    env |= {port_setting: str(port), "PATH": f"{image_env / 'bin'}:{os.environ['PATH']}"}
    url = f"http://127.0.0.1:{port}"

    process = start_service(
        command,
        env,
        tmp_path / f"{service}.log",
        url=url,
        ready_path=container["readinessProbe"]["httpGet"]["path"],
        ready_timeout=60,
    )
    try:
        assert httpx.get(url + container["livenessProbe"]["httpGet"]["path"], timeout=5).status_code == 200
        assert image_healthcheck(service, port, env).returncode == 0
    finally:
        grace = pod["terminationGracePeriodSeconds"]
        started = time.monotonic()
        returncode = process.stop(timeout=grace)
        took = time.monotonic() - started
    log = process.log_text()
    # uvicorn re-raises the SIGTERM it handled once it has shut down, so the api may end "by" the signal, cleanly.
    assert returncode in (0, -signal.SIGTERM), f"exit {returncode} after SIGTERM:\n{log}"
    assert took < grace, f"{service} took {took:.1f} s to stop; its pod allows {grace} s"
    assert "Traceback" not in log, log


def image_healthcheck(service: str, port: int, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """The Dockerfile's HEALTHCHECK as the container runs it, with the service's HEALTHCHECK_URL from compose."""
    health_url = compose_document()["services"][service]["environment"]["HEALTHCHECK_URL"]
    health_url = health_url.replace(health_url.split("/")[2], f"127.0.0.1:{port}")
    return subprocess.run(
        dockerfile_healthcheck(), env={**env, "HEALTHCHECK_URL": health_url}, capture_output=True, timeout=30
    )


def test_migrate_job_command_applies_migrations_and_exits(
    image_env: Path, secrets: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    command = production_command("migrate")
    env = pod_environment("migrate", secrets, stack.nats_url) | {"PATH": f"{image_env / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "migrations applied" in result.stdout + result.stderr


def test_the_image_holds_every_service_and_no_development_tools(image_env: Path) -> None:
    scripts = {path.name for path in (image_env / "bin").iterdir()}
    assert {"cg-api", "cg-ledger", "cg-scheduler", "cg-prober", "cg-web", "cg-notifier", "cg-migrate"} <= scripts
    assert not {"cg-dev", "pytest", "ruff", "mypy", "uv"} & scripts
