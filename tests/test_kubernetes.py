"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas (offline, strict), and
what the two kustomizations render agrees with the service: probes on its own health routes,
the port it listens on, settings it knows, URLs from the Secret as the least-privilege user,
memory for what its limits allow, and a grace period longer than its shutdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from starlette.routing import Route

from service._app import build_routes
from service._settings import DatabaseURL, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES = kubernetes_validate.latest_version()
# uvicorn's timeout_graceful_shutdown in service/__main__.py
GRACEFUL_SHUTDOWN_SECONDS = 30
# What one process holds besides guest memory and unsent answers (measured at rest: ~65 MiB).
BASELINE_MB = 128

Resource = dict[str, Any]


def render(directory: Path) -> list[Resource]:
    """What `kubectl kustomize DIR` prints for these kustomizations, which only list resources
    (the test below keeps them that way, so this stays the whole of kustomize's work)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out: list[Resource] = []
    for entry in kustomization["resources"]:
        path = (directory / entry).resolve()
        if path.is_dir():
            out += render(path)
        else:
            out += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def server(resources: list[Resource]) -> tuple[Resource, Resource]:
    (deployment,) = of_kind(resources, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


MANIFESTS = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")
OVERLAYS = ["demo", "external"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_is_valid_kubernetes(path: Path) -> None:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_wrong_manifest_is_refused() -> None:
    """The validator is not a formality: a misspelt field fails."""
    deployment, container = server(render(DEPLOY / "base"))
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_kustomizations_only_list_resources(overlay: Path) -> None:
    kustomization = yaml.safe_load((DEPLOY / overlay / "kustomization.yaml").read_text())
    assert set(kustomization) == {"apiVersion", "kind", "resources"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_probes_and_ports_are_the_services(overlay: str) -> None:
    resources = render(DEPLOY / overlay)
    deployment, container = server(resources)
    routes = {route.path for route in build_routes() if isinstance(route, Route)}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["args"][-2:] == ["--port", str(ports["http"])]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
        assert container[probe]["httpGet"]["port"] in ports
    (service,) = [s for s in of_kind(resources, "Service") if s["metadata"]["name"] == "orders"]
    assert service["spec"]["ports"][0]["targetPort"] in ports
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    (budget,) = of_kind(resources, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (autoscaler,) = of_kind(resources, "HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert autoscaler["spec"]["minReplicas"] > budget["spec"]["minAvailable"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count: kubectl apply would reset it"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_environment_is_settings_the_service_reads(overlay: str) -> None:
    """Every plain value parses as the service would parse it; the URLs come from the Secret;
    memory covers what the settings let one pod hold; the grace period outlasts the shutdown."""
    deployment, container = server(render(DEPLOY / overlay))
    env = {e["name"]: e for e in container["env"]}
    plain = {name: e["value"] for name, e in env.items() if "value" in e}
    for name in ("DATABASE_URL", "DATABASE_ADMIN_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "orders-database"
    settings = Settings.from_environ({**plain, "DATABASE_URL": "mysql://u:p@h/orders"})
    for name in plain:
        assert name in Path(ROOT / "service" / "_settings.py").read_text(), f"{name} is not a setting"
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    needed = BASELINE_MB + (settings.guest_memory_total + settings.max_unsent_bytes) // (1024 * 1024)
    assert int(limit[:-2]) >= needed
    pod = deployment["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + GRACEFUL_SHUTDOWN_SECONDS


def test_the_demo_runs_the_guest_as_the_least_privileged_user() -> None:
    """The demo's URLs name the users sql/grants.sql makes, with its passwords: the guest's
    statements as orders_app, which reaches only the orders table."""
    resources = render(DEPLOY / "demo")
    (secret,) = [s for s in of_kind(resources, "Secret") if s["metadata"]["name"] == "orders-database"]
    grants = (ROOT / "sql" / "grants.sql").read_text()
    guest = DatabaseURL.parse(secret["stringData"]["url"])
    admin = DatabaseURL.parse(secret["stringData"]["admin-url"], "DATABASE_ADMIN_URL")
    assert guest.user == "orders_app"
    for url in (guest, admin):
        assert f"CREATE USER IF NOT EXISTS '{url.user}'@'%' IDENTIFIED BY '{url.password}'" in grants
    (database,) = of_kind(resources, "StatefulSet")
    (mariadb_service,) = [s for s in of_kind(resources, "Service") if s["metadata"]["name"] != "orders"]
    assert guest.host == admin.host == mariadb_service["metadata"]["name"] == database["spec"]["serviceName"]
    (init,) = database["spec"]["template"]["spec"]["initContainers"]
    script = init["command"][-1]
    assert "/app/sql/schema.sql" in script and "/app/sql/grants.sql" in script
    assert (ROOT / "Dockerfile").read_text().count("COPY sql sql") == 1  # the image has them there
