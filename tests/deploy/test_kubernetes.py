"""deploy/kubernetes: the kustomize base parses, is locked down, and its parts refer to each
other correctly (Service, ServiceMonitor, ConfigMap, Secret, probes, state volume)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from m365_smtp_exporter.cli import build_parser
from m365_smtp_exporter.config import parse_config
from tests.deploy.manifests import (
    EXPORTER_JOB,
    KUSTOMIZE_DIR,
    Json,
    dockerfile_instructions,
    env_pairs,
    flag_value,
    kustomization,
    kustomize_resources,
    listen_port,
    load_yaml_documents,
    only,
)

SECRET_EXAMPLE = KUSTOMIZE_DIR / "secret.example.yaml"


@pytest.fixture(scope="module")
def objects() -> list[Json]:
    return kustomize_resources()


@pytest.fixture(scope="module")
def deployment(objects: list[Json]) -> Json:
    return only(objects, "Deployment")


@pytest.fixture(scope="module")
def pod(deployment: Json) -> Json:
    spec: Json = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: Json) -> Json:
    (exporter,) = pod["containers"]
    found: Json = exporter
    return found


def mount_of(container: Json, pod: Json, source_key: str) -> tuple[Json, Json]:
    """(volume, volumeMount) of the one volume whose source is `source_key`."""
    (found,) = [v for v in pod["volumes"] if source_key in v]
    (mounted,) = [m for m in container["volumeMounts"] if m["name"] == found["name"]]
    return found, mounted


def secret_example() -> Json:
    (secret,) = load_yaml_documents(SECRET_EXAMPLE)
    return secret


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in dockerfile_instructions():
        if instruction.keyword == "ENV":
            env.update(env_pairs(instruction.arguments))
    return env


def test_resources_exist_and_every_manifest_is_listed() -> None:
    resources = kustomization()["resources"]
    for name in resources:
        assert (KUSTOMIZE_DIR / name).is_file(), name
    on_disk = {path.name for path in KUSTOMIZE_DIR.glob("*.yaml")}
    assert on_disk - set(resources) == {"kustomization.yaml", "secret.example.yaml"}


def test_every_object_is_well_formed(objects: list[Json]) -> None:
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
    ]
    for obj in [*objects, secret_example()]:
        assert obj["apiVersion"] and obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == EXPORTER_JOB
        assert "namespace" not in obj["metadata"], "the namespace is set by the overlay"


def test_the_example_secret_stays_out_of_the_base() -> None:
    secret = secret_example()
    assert secret["kind"] == "Secret"
    assert "secret.example.yaml" not in kustomization()["resources"]


def test_pod_runs_as_the_image_user_without_privileges(pod: Json, container: Json) -> None:
    user = next(i.arguments for i in dockerfile_instructions() if i.keyword == "USER")
    uid, gid = (int(part) for part in user.split(":"))
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (uid, gid, gid)
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    locked = container["securityContext"]
    assert locked["readOnlyRootFilesystem"] is True
    assert locked["allowPrivilegeEscalation"] is False
    assert locked["privileged"] is False
    assert locked["capabilities"] == {"drop": ["ALL"]}
    assert locked["seccompProfile"] == {"type": "RuntimeDefault"}


def test_one_replica_that_never_overlaps_its_successor(deployment: Json) -> None:
    # Two replicas would both send probe mails and share the Graph request budget.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_resources_are_requested_and_limited(container: Json) -> None:
    resources = container["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"]
    mebibytes = {
        key: int(resources[key]["memory"].removesuffix("Mi")) for key in ("requests", "limits")
    }
    assert 0 < mebibytes["requests"] <= mebibytes["limits"]


def test_selectors_match_the_pod(deployment: Json, objects: list[Json]) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = only(objects, "Service")
    assert service["spec"]["selector"].items() <= labels.items()


def test_service_targets_the_container_port(objects: list[Json], container: Json) -> None:
    (port,) = only(objects, "Service")["spec"]["ports"]
    names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["targetPort"] in names
    listen = flag_value(container["args"], "--web.listen-address")
    assert listen is not None
    assert listen_port(listen) == names[port["targetPort"]]


def test_service_monitor_scrapes_the_service_as_the_rules_expect(objects: list[Json]) -> None:
    service = only(objects, "Service")
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert endpoint["interval"] == "15s"
    # The rules select job="m365-smtp-exporter"; the job label is the value of the
    # Service label named by jobLabel (the Service name when unset).
    job = service["metadata"]["labels"].get(monitor["spec"].get("jobLabel"), None)
    assert (job or service["metadata"]["name"]) == EXPORTER_JOB


def test_probes_ask_the_health_endpoints(container: Json) -> None:
    ports = {p["name"] for p in container["ports"]}
    expected = {
        "startupProbe": "/-/healthy",
        "livenessProbe": "/-/healthy",
        "readinessProbe": "/-/ready",
    }
    for probe, path in expected.items():
        check = container[probe]["httpGet"]
        assert check["path"] == path
        assert check["port"] in ports


def test_args_run_the_exporter_on_the_mounted_config(
    container: Json, pod: Json, objects: list[Json]
) -> None:
    args = build_parser().parse_args(container["args"])
    assert args.command == "run"
    config_volume, config_mount = mount_of(container, pod, "configMap")
    assert config_mount["readOnly"] is True
    config_file = Path(args.config_file)
    assert config_file.parent == Path(config_mount["mountPath"])
    configmap = only(objects, "ConfigMap")
    assert config_volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_file.name in configmap["data"]


def test_state_and_temporary_files_go_to_an_empty_dir(
    container: Json, pod: Json, objects: list[Json]
) -> None:
    state_volume, state_mount = mount_of(container, pod, "emptyDir")
    assert state_volume["emptyDir"]["sizeLimit"]
    state_dir = Path(state_mount["mountPath"])
    assert image_env()["TMPDIR"] == str(state_dir)
    text = next(iter(only(objects, "ConfigMap")["data"].values()))
    state_file = yaml.safe_load(text)["state_file"]
    assert Path(state_file).parent == state_dir


def test_secrets_are_files_the_config_refers_to(container: Json, pod: Json) -> None:
    secret_volume, secret_mount = mount_of(container, pod, "secret")
    secret = secret_example()
    assert secret_volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret_mount["readOnly"] is True
    # Files belong to root; the exporter reads them through fsGroup, nobody else can.
    assert secret_volume["secret"]["defaultMode"] == 0o440
    assert "env" not in container and "envFrom" not in container


def test_configmap_config_passes_the_exporters_validation(
    container: Json, pod: Json, objects: list[Json], tmp_path: Path
) -> None:
    _, secret_mount = mount_of(container, pod, "secret")
    mount_path = secret_mount["mountPath"].rstrip("/")
    secret_data = secret_example()["stringData"]
    (text,) = only(objects, "ConfigMap")["data"].values()
    assert mount_path in text
    # Lay the Secret's keys out as the kubelet would, under a local directory.
    for key, value in secret_data.items():
        (tmp_path / key).write_text(value + "\n", encoding="utf-8")
    config = parse_config(text.replace(mount_path, str(tmp_path)), env={}, source="configmap")
    assert config.tenants and config.probes
    secrets = [tenant.client_secret for tenant in config.tenants.values() if tenant.client_secret]
    assert [s.get_secret_value() for s in secrets] == [secret_data["client-secret"]]
    # Every secret file the config names is a key of the Secret.
    named = {
        line.split(mount_path + "/", 1)[1].split()[0]
        for line in text.splitlines()
        if mount_path + "/" in line and not line.lstrip().startswith("#")
    }
    assert named and named <= set(secret_data)


def test_kustomize_builds_the_base(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the structural checks above still ran")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    built = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert sorted(obj["kind"] for obj in built) == sorted(
        obj["kind"] for obj in kustomize_resources()
    )
    deployment = only(built, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (image,) = kustomization()["images"]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"
    for obj in [*built, deployment["spec"]["template"]]:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == EXPORTER_JOB
