"""The deployment files read as data: compose services, rendered kustomize overlays, the Dockerfile's instructions.

Tests take commands, ports, probes and grace periods from here, so what they run is what the files say.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from compose_spec import PyCompose

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
COMPOSE_FILE = REPO / "deploy" / "compose" / "docker-compose.yml"
ROOT_COMPOSE_FILE = REPO / "compose.yaml"
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The newest Kubernetes minor version whose schemas kubernetes-validate ships that this kubectl also speaks.
KUBERNETES_VERSION = "1.32.0"
SECRET_NAME = "cost-guardian-secrets"

Manifest = dict[str, Any]


def compose_document(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as Compose reads it: YAML merge keys (`<<: *service`) applied, interpolation left for run time."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def parse_compose(document: dict[str, Any]) -> PyCompose:
    """The Compose specification's own validating parser (Rust `compose_spec`); ValueError names what is wrong."""
    return PyCompose.from_json(json.dumps(document))


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise RuntimeError("kubectl is needed to render deploy/k8s (Debian: apt-get install kubectl)")
    return path


def render(directory: Path) -> list[Manifest]:
    """`kubectl kustomize` of a kustomization directory, as a list of objects."""
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@cache
def rendered_overlay(overlay: str) -> tuple[Manifest, ...]:
    return tuple(render(K8S / "overlays" / overlay))


def validate_manifests(manifests: list[Manifest] | tuple[Manifest, ...]) -> None:
    """Each object against the Kubernetes OpenAPI schemas shipped inside kubernetes-validate (offline), strictly:
    an unknown field is an error, as it is for `kubectl apply --validate=strict`."""
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def workloads(manifests: tuple[Manifest, ...]) -> Iterator[Manifest]:
    yield from (m for m in manifests if m["kind"] in {"Deployment", "StatefulSet", "Job"})


def pod_of(manifests: tuple[Manifest, ...], name: str) -> Manifest:
    """The pod template of the workload labelled `app.kubernetes.io/name: <name>`."""
    for workload in workloads(manifests):
        if workload["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == name:
            template: Manifest = workload["spec"]["template"]
            return template
    raise KeyError(name)


def settings_config_map(manifests: tuple[Manifest, ...]) -> dict[str, str]:
    """The generated `cost-guardian-settings-<hash>` ConfigMap's data."""
    (data,) = [m["data"] for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"].startswith("cost-g")]
    return dict(data)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [(text.split(" ", 1)[0].upper(), text.split(" ", 1)[1]) for text in logical]


def dockerfile_healthcheck() -> list[str]:
    """The HEALTHCHECK's command (exec form)."""
    (arguments,) = [args for name, args in dockerfile_instructions() if name == "HEALTHCHECK"]
    command: list[str] = json.loads(arguments.split(" CMD ", 1)[1])
    return command


def dockerfile_sync_command() -> list[str]:
    """The build stage's `uv sync …`, without the RUN's cache mount."""
    (arguments,) = [args for name, args in dockerfile_instructions() if name == "RUN" and "uv sync" in args]
    words = [word for word in shlex.split(arguments) if not word.startswith("--mount=")]
    return words
