"""The deployment files, checked offline: compose.yaml against the Compose Specification,
deploy/ against the Kubernetes schemas, and both against the code (workers, settings).

No Docker, no cluster, no network: the schemas are the ones vendored by check-jsonschema and
kubernetes-validate.
"""

from __future__ import annotations

import importlib
import importlib.resources
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from shared.settings import CommonSettings, CouncilDataSettings
from stack.launcher import WORKERS

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "compose.yaml"
DEPLOY = REPO / "deploy"
KUSTOMIZATION = DEPLOY / "kustomization.yaml"
PROCESSES = (*WORKERS, "api")
# Every settings model; importing them registers their subclasses of CommonSettings too.
SETTINGS_MODULES = (
    *(f"services.{name}.settings" for name in WORKERS),
    "api.settings",
    "cli.settings",
)
CONFIGMAP = "tenancy-config"
SECRET = "tenancy-secrets"
SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL")
# Variables of the images themselves (compose's postgres and kafka services), not of Tenancy.
THIRD_PARTY_SERVICES = ("kafka", "postgres", "jaeger")
HEALTH_PORT = 8081
API_PORT = 18080
# Containers listen on every interface (the probes come from the kubelet / other containers).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
TMP = "/tmp"  # noqa: S108


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def kustomization() -> dict[str, Any]:
    data = load_yaml(KUSTOMIZATION)
    assert isinstance(data, dict)
    return data


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p != KUSTOMIZATION)


def documents(path: Path) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if document is not None:  # comments only, or an empty document between `---`
            assert isinstance(document, dict), f"{path.name}: not a mapping"
            yield document


def resources() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/` applies (before kustomize's own transformations)."""
    listed = kustomization()["resources"]
    return [doc for name in listed for doc in documents(DEPLOY / name)]


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in resources() if d["kind"] == "Deployment"}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def setting_names() -> set[str]:
    """Every environment variable a Tenancy process reads: its settings' fields, upper-cased."""
    for module in SETTINGS_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    pending: list[type[CommonSettings]] = [CommonSettings]
    while pending:
        model = pending.pop()
        names |= {field.upper() for field in model.model_fields}
        pending += model.__subclasses__()
    return names


# -- compose.yaml -----------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_compose_runs_every_process_with_a_readiness_healthcheck() -> None:
    services = compose()["services"]
    for name in PROCESSES:
        assert name in services, f"compose.yaml has no service {name!r}"
        service = services[name]
        module = "api" if name == "api" else f"services.{name}"
        assert service["command"] == ["python", "-m", module]
        test = " ".join(map(str, service["healthcheck"]["test"]))
        port = API_PORT if name == "api" else HEALTH_PORT
        assert f"127.0.0.1:{port}/readyz" in test, f"{name}: healthcheck does not GET /readyz"
        if name != "api":
            environment = service["environment"]
            assert str(environment["HEALTH_PORT"]) == str(HEALTH_PORT)
            assert environment["HEALTH_HOST"] == ALL_INTERFACES
    api = services["api"]
    assert api["environment"]["API_HOST"] == ALL_INTERFACES
    assert any(str(p).endswith(f"{API_PORT}:{API_PORT}") for p in api["ports"])
    for name in THIRD_PARTY_SERVICES:
        assert "test" in services[name]["healthcheck"], f"{name}: no healthcheck"


def test_compose_waits_for_healthy_kafka_and_postgres() -> None:
    services = compose()["services"]
    for name in PROCESSES:
        depends_on = services[name]["depends_on"]
        for server in ("kafka", "postgres"):
            assert depends_on[server]["condition"] == "service_healthy", (name, server)


def test_compose_environment_names_are_real_settings() -> None:
    known = setting_names()
    unknown = {
        f"{name}: {variable}"
        for name, service in compose()["services"].items()
        if name not in THIRD_PARTY_SERVICES
        for variable in service.get("environment", {})
        if variable not in known
    }
    assert not unknown, f"not a setting of any process (typo?): {sorted(unknown)}"


def test_compose_secrets_are_not_literal() -> None:
    """Local-only defaults are allowed, but only as `${VAR:-default}`, overridable."""
    for name, service in compose()["services"].items():
        for variable, value in service.get("environment", {}).items():
            if SECRET_LIKE.search(variable) and value:
                assert "${" in str(value), f"{name}: {variable} is a literal"


# -- deploy/ ----------------------------------------------------------------------------------


def test_kustomization_lists_existing_files_and_no_secret() -> None:
    listed = kustomization()["resources"]
    missing = [name for name in listed if not (DEPLOY / name).is_file()]
    assert not missing, f"kustomization.yaml lists missing files: {missing}"
    assert "secret.example.yaml" not in listed
    assert not [d for d in resources() if d["kind"] == "Secret"], "a Secret is applied"


def test_every_manifest_matches_the_kubernetes_schema() -> None:
    version = kubernetes_validate.latest_version()
    checked = 0
    for path in manifest_files():
        for document in documents(path):
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = "/".join(map(str, error.absolute_path))
                pytest.fail(f"{path.name} {document.get('kind')}: {where}: {error.message}")
            checked += 1
    assert checked >= len(PROCESSES), "expected at least a Deployment per process"


def test_every_process_has_a_deployment_and_the_api_a_service() -> None:
    found = deployments()
    for name in PROCESSES:
        deployment = found.get(f"tenancy-{name}")
        assert deployment is not None, f"deploy/ has no Deployment tenancy-{name}"
        module = "api" if name == "api" else f"services.{name}"
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", module]
    services = [d for d in resources() if d["kind"] == "Service"]
    labels = found["tenancy-api"]["spec"]["template"]["metadata"]["labels"]
    assert any(
        s["metadata"]["name"] == "tenancy-api" and s["spec"]["selector"].items() <= labels.items()
        for s in services
    ), "no Service selects the API's pods"


def test_deployments_probe_health_and_request_resources() -> None:
    for name, deployment in deployments().items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{name}/{container['name']}"
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
                assert probe in container, f"{where}: no {probe}"
                http = container[probe].get("httpGet")
                assert http is not None, f"{where}: {probe} is not httpGet"
                assert http["path"] == path, f"{where}: {probe} does not GET {path}"
                port = ports.get(http["port"], http["port"])
                expected = API_PORT if name == "tenancy-api" else HEALTH_PORT
                assert port == expected, f"{where}: {probe} on port {port}"
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= requests.keys(), f"{where}: no resource requests"


def test_deployments_are_locked_down() -> None:
    for name, deployment in deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in containers(deployment):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts[TMP]], f"{name}: {TMP} is not an emptyDir"


def test_deployments_use_the_configmap_and_no_literal_secrets() -> None:
    for name, deployment in deployments().items():
        for container in containers(deployment):
            sources = container.get("envFrom", [])
            assert {"configMapRef": {"name": CONFIGMAP}} in sources, f"{name}: no envFrom"
            env = {e["name"]: e for e in container.get("env", [])}
            for variable, entry in env.items():
                if SECRET_LIKE.search(variable):
                    assert "value" not in entry, f"{name}: {variable} has a literal value"
            reference = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": SECRET, "key": "DATABASE_URL"}, name


def test_configmap_names_are_real_settings_and_hold_no_secret() -> None:
    [configmap] = [
        d for d in resources() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == CONFIGMAP
    ]
    data: dict[str, Any] = configmap["data"]
    unknown = sorted(set(data) - setting_names())
    assert not unknown, f"not a setting of any process (typo?): {unknown}"
    assert not [k for k in data if SECRET_LIKE.search(k)], "a secret in the ConfigMap"
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    assert data["HEALTH_PORT"] == str(HEALTH_PORT)
    assert data["API_PORT"] == str(API_PORT)
    assert data["HEALTH_HOST"] == data["API_HOST"] == ALL_INTERFACES


def test_mounted_paths_match_the_configured_directories() -> None:
    """Each directory a Deployment is configured with is a mounted volume, not the read-only
    root filesystem (COUNCILS_CSV: its folder)."""
    data = next(d for d in resources() if d["kind"] == "ConfigMap")["data"]
    needs = {
        "tenancy-onboarding": ["ASSETS_DIR", "COUNCILS_CSV"],
        "tenancy-isolation": ["EXPORTS_DIR"],
        "tenancy-branding": ["ASSETS_DIR", "THEMES_DIR"],
        "tenancy-api": ["ASSETS_DIR", "COUNCILS_CSV"],
    }
    found = deployments()
    for name, variables in needs.items():
        [container] = found[name]["spec"]["template"]["spec"]["containers"]
        mounted = {m["mountPath"].rstrip("/") for m in container["volumeMounts"]}
        for variable in variables:
            path = data[variable]
            folder = str(Path(path).parent) if variable == "COUNCILS_CSV" else path
            assert folder in mounted, f"{name}: {variable}={path} is not on a volume"


def test_council_data_settings_cover_the_processes_that_mount_it() -> None:
    # The API and onboarding read COUNCILS_CSV; keep that assumption of the manifests honest.
    from api.settings import ApiSettings
    from services.onboarding.settings import OnboardingSettings

    assert issubclass(ApiSettings, CouncilDataSettings)
    assert issubclass(OnboardingSettings, CouncilDataSettings)


def settings_models() -> dict[str, type[CommonSettings]]:
    """Each process's settings model: the subclass of CommonSettings its settings module defines."""
    models: dict[str, type[CommonSettings]] = {}
    for name in PROCESSES:
        module = importlib.import_module(
            "api.settings" if name == "api" else f"services.{name}.settings"
        )
        [model] = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, CommonSettings)
            and value.__module__ == module.__name__
        ]
        models[name] = model
    return models


def parse(model: type[CommonSettings], environment: dict[str, Any]) -> CommonSettings:
    """Validate values as the process would read them from its environment (strings); the
    test's own environment and .tenancy/stack.env play no part (model_validate reads neither)."""
    values = {k.lower(): str(v) for k, v in environment.items() if k.lower() in model.model_fields}
    return model.model_validate(values)


def test_configmap_values_parse_as_every_process_reads_them() -> None:
    [configmap] = [
        d for d in resources() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == CONFIGMAP
    ]
    for name, model in settings_models().items():
        settings = parse(model, {**configmap["data"], "DATABASE_URL": "postgresql://u@db/tenancy"})
        assert settings.log_format == "json", name


def test_compose_values_parse_as_every_process_reads_them() -> None:
    default = re.compile(r"\$\{[A-Z_]+:-([^}]*)\}")  # compose's ${VAR:-default}, unset VAR
    services = compose()["services"]
    for name, model in settings_models().items():
        environment = {
            k: default.sub(r"\1", str(v)) for k, v in services[name]["environment"].items()
        }
        settings = parse(model, environment)
        assert settings.kafka_bootstrap_servers == "kafka:9092", name
