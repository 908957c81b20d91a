"""deploy/k8s rendered with `kubectl kustomize` and checked offline against the Kubernetes schemas, and for what the
schemas cannot say: hardened pods, probes, secrets only referenced, autoscaling, disruption budgets, network reach."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from cg_devstack import nats_users
from tests.support.deployment import (
    K8S,
    OVERLAYS,
    REPO,
    SECRET_NAME,
    Manifest,
    of_kind,
    pod_of,
    render,
    rendered_overlay,
    settings_config_map,
    validate_manifests,
    workloads,
)

SERVICES = ("api", "web", "scheduler", "prober", "ledger", "notifier")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_matches_the_kubernetes_schemas(overlay: str) -> None:
    manifests = rendered_overlay(overlay)
    validate_manifests(manifests)
    assert {m["metadata"].get("namespace") for m in manifests if m["kind"] != "Namespace"} == {"cost-guardian"}


def test_the_top_level_kustomization_is_the_dev_overlay() -> None:
    assert render(K8S) == list(rendered_overlay("dev"))


def test_a_misspelt_field_fails_validation(tmp_path: Path) -> None:
    tree = shutil.copytree(K8S, tmp_path / "k8s")
    api = tree / "base" / "api.yaml"
    api.write_text(api.read_text().replace("readinessProbe:", "readinesProbe:", 1))
    manifests = render(tree / "overlays" / "dev")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        validate_manifests(manifests)


def test_a_misspelt_field_in_an_overlay_fails_validation(tmp_path: Path) -> None:
    tree = shutil.copytree(K8S, tmp_path / "k8s")
    nats = tree / "overlays" / "prod" / "nats-cluster.yaml"
    nats.write_text(nats.read_text().replace("volumeClaimTemplates:", "volumeClaimTemplate:", 1))
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeClaimTemplate"):
        validate_manifests(render(tree / "overlays" / "prod"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_bounded(overlay: str) -> None:
    for workload in workloads(rendered_overlay(overlay)):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["terminationGracePeriodSeconds"] >= 30, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert set(container["resources"]) == {"requests", "limits"}, name
            if workload["kind"] != "Job":
                assert {"livenessProbe", "readinessProbe"} <= set(container), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_have_an_account_a_service_and_a_disruption_budget(overlay: str) -> None:
    manifests = rendered_overlay(overlay)
    for kind in ("Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"):
        assert set(SERVICES) <= set(of_kind(manifests, kind)), kind
    for name in SERVICES:
        assert pod_of(manifests, name)["spec"]["serviceAccountName"] == name
    autoscaled = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(manifests, "HorizontalPodAutoscaler").values()}
    assert autoscaled == {"prober", "ledger"}
    for name in autoscaled:  # the autoscaler owns the count: `kubectl apply` must not reset it
        assert "replicas" not in of_kind(manifests, "Deployment")[name]["spec"], name
    job = of_kind(manifests, "Job")["cost-guardian-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["cg-migrate"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_committed(overlay: str) -> None:
    manifests = rendered_overlay(overlay)
    assert of_kind(manifests, "Secret") == {}
    referenced = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for workload in workloads(manifests)
        for container in workload["spec"]["template"]["spec"]["containers"]
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    names = {name for name, _ in referenced}
    keys = {key for _, key in referenced}
    assert names == {SECRET_NAME}
    assert {"MASTER_KEY", "API_KEY", "DATABASE_URL", "REDIS_URL"} <= keys
    # The operator's guide creates exactly the keys the manifests reference.
    guide = (REPO / "docs" / "deploy.md").read_text()
    for key in keys:
        assert f"--from-literal={key}=" in guide, key
    for key in ("MASTER_KEY", "API_KEY", "DATABASE_URL", "REDIS_URL"):
        assert key not in settings_config_map(manifests)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_runs_the_permission_file_and_each_service_connects_as_its_own_user(overlay: str) -> None:
    """The same file as make up, the tests and compose; every user's password reaches the NATS pods from the Secret,
    each service gets only its own, in its NATS_URL."""
    manifests = rendered_overlay(overlay)
    permissions = next(m for name, m in of_kind(manifests, "ConfigMap").items() if name.startswith("nats-permissions"))
    assert permissions["data"]["permissions.conf"] == nats_users.PERMISSIONS_FILE.read_text()
    nats = of_kind(manifests, "StatefulSet")["nats"]["spec"]["template"]["spec"]
    passwords = {e["name"] for e in nats["containers"][0]["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert passwords == {nats_users.password_variable(user) for user in nats_users.USERS}
    mounted = json.dumps(nats["volumes"])
    assert permissions["metadata"]["name"] in mounted
    for service in (*SERVICES, "migrate"):
        container = pod_of(manifests, service)["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["NATS_URL"]["value"] == f"nats://{service}:$(NATS_PASSWORD)@nats:4222", service
        key = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
        assert key == nats_users.password_variable(service), service
        nats_keys = {
            e["valueFrom"]["secretKeyRef"]["key"] for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert {k for k in nats_keys if k.startswith("CG_NATS_")} == {key}, service
        assert list(env).index("NATS_PASSWORD") < list(env).index("NATS_URL"), service  # $(…) needs it defined first


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_gets_only_its_own_secrets(overlay: str) -> None:
    """MASTER_KEY only where secrets are encrypted (api) or decrypted (prober, notifier); each service's own
    PostgreSQL role."""
    manifests = rendered_overlay(overlay)
    expected = {
        "api": {"MASTER_KEY", "API_KEY", "DASHBOARD_API_KEY", "DATABASE_URL_API", "REDIS_URL", "CG_NATS_API_PASSWORD"},
        "web": {"DASHBOARD_API_KEY", "REDIS_URL", "CG_NATS_WEB_PASSWORD"},
        "scheduler": {"DATABASE_URL_SCHEDULER", "REDIS_URL", "CG_NATS_SCHEDULER_PASSWORD"},
        "ledger": {"DATABASE_URL_LEDGER", "REDIS_URL", "CG_NATS_LEDGER_PASSWORD"},
        "prober": {"MASTER_KEY", "DATABASE_URL_PROBER", "REDIS_URL", "CG_NATS_PROBER_PASSWORD"},
        "notifier": {"MASTER_KEY", "DATABASE_URL_NOTIFIER", "REDIS_URL", "CG_NATS_NOTIFIER_PASSWORD"},
        "migrate": {
            "DATABASE_URL",
            "CG_NATS_MIGRATE_PASSWORD",
            *(f"PG_{s}_PASSWORD" for s in ("API", "LEDGER", "PROBER", "SCHEDULER", "NOTIFIER")),
        },
    }
    for service, keys in expected.items():
        container = pod_of(manifests, service)["spec"]["containers"][0]
        given = {
            e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert given == keys, service


def test_prod_runs_a_three_node_jetstream_cluster_with_three_replica_streams() -> None:
    manifests = rendered_overlay("prod")
    nats = of_kind(manifests, "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    config = of_kind(manifests, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "jetstream" in config
    assert all(f"nats://nats-{n}.nats-headless:6222" in config for n in range(3))
    assert settings_config_map(manifests)["NATS_STREAM_REPLICAS"] == "3"
    # PostgreSQL and Redis are external: no pods of theirs here.
    assert not {"postgres", "redis"} & (set(of_kind(manifests, "StatefulSet")) | set(of_kind(manifests, "Deployment")))


def test_dev_runs_single_node_datastores_in_the_cluster() -> None:
    manifests = rendered_overlay("dev")
    assert of_kind(manifests, "StatefulSet")["nats"]["spec"]["replicas"] == 1
    assert {"nats", "postgres"} <= set(of_kind(manifests, "StatefulSet"))
    assert "redis" in of_kind(manifests, "Deployment")
    assert settings_config_map(manifests)["NATS_STREAM_REPLICAS"] == "1"


# Who may open a connection to whom in the dev overlay (where every datastore is a pod): exactly these.
REACH = {
    "api": {("nats", 4222), ("postgres", 5432), ("redis", 6379)},
    "web": {("api", 5001), ("nats", 4222), ("redis", 6379)},
    "scheduler": {("nats", 4222), ("postgres", 5432), ("redis", 6379)},
    "prober": {("nats", 4222), ("postgres", 5432), ("redis", 6379)},
    "ledger": {("nats", 4222), ("postgres", 5432), ("redis", 6379)},
    "notifier": {("nats", 4222), ("postgres", 5432), ("redis", 6379)},
    "migrate": {("nats", 4222), ("postgres", 5432)},
}
PORTS = {"api": 5001, "web": 5002, "nats": 4222, "postgres": 5432, "redis": 6379}


def test_network_policies_let_each_service_reach_only_what_it_needs() -> None:
    manifests = rendered_overlay("dev")
    policies = list(of_kind(manifests, "NetworkPolicy").values())
    # Everything not opened below is closed, the internet included, for every pod of the namespace.
    assert of_kind(manifests, "NetworkPolicy")["default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    labels = {name: pod_of(manifests, name)["metadata"]["labels"] for name in [*REACH, "nats", "postgres", "redis"]}
    for source, allowed in REACH.items():
        for target, port in PORTS.items():
            reachable = _allows(policies, "Egress", labels[source], labels[target], port) and _allows(
                policies, "Ingress", labels[target], labels[source], port
            )
            assert reachable == ((target, port) in allowed), f"{source} -> {target}:{port}"


def _allows(policies: list[Manifest], direction: str, subject: dict[str, str], peer: dict[str, str], port: int) -> bool:
    """Whether some policy of this direction selecting `subject` lets it talk to the pod `peer` on `port`; a pod that
    no policy of the direction selects is open (the default-deny policy selects them all)."""
    selecting = [
        p for p in policies if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], subject)
    ]
    if not selecting:
        return True
    field, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in selecting:
        for rule in policy["spec"].get(field, []):
            port_ok = "ports" not in rule or any(p.get("port") == port for p in rule["ports"])
            peer_ok = peers not in rule or any(_peer_matches(entry, peer) for entry in rule[peers])
            if port_ok and peer_ok:
                return True
    return False


def _peer_matches(entry: dict[str, Any], pod: dict[str, str]) -> bool:
    # Pods of this namespace only: a namespaceSelector (DNS, metrics scrapers) or an ipBlock (the internet) is a peer
    # elsewhere, never one of the pods in the table.
    return "podSelector" in entry and "namespaceSelector" not in entry and _selects(entry["podSelector"], pod)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True
