"""deploy/docker-compose.yml: the exporter, Prometheus with the repository's rules,
Alertmanager and Grafana with the repository's dashboards, wired to each other."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from m365_smtp_exporter.cli import build_parser
from m365_smtp_exporter.config import ConfigError, parse_config
from tests.deploy.manifests import (
    COMPOSE_FILE,
    DEPLOY,
    EXPORTER_JOB,
    REPO,
    RULE_DIR,
    Json,
    compose_variables,
    dockerfile_instructions,
    flag_value,
    host_path_of,
    listen_port,
    load_compose,
    load_yaml,
    mounts,
    published_ports,
)
from tests.support.prom import require_tool

SERVICES = {"exporter", "prometheus", "alertmanager", "grafana"}
OFFICIAL_IMAGES = {
    "prometheus": "prom/prometheus",
    "alertmanager": "prom/alertmanager",
    "grafana": "grafana/grafana",
}
STATE_DIR = "/var/lib/m365-smtp-exporter"


@pytest.fixture(scope="module")
def compose() -> Json:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: Json) -> dict[str, Json]:
    found: dict[str, Json] = compose["services"]
    return found


@pytest.fixture(scope="module")
def prometheus_config(services: dict[str, Json]) -> Json:
    path = host_path_of(services["prometheus"], config_flag(services["prometheus"]))
    config: Json = load_yaml(path)
    return config


def config_flag(service: Json) -> str:
    value = flag_value(service["command"], "--config.file")
    assert value is not None
    return value


def host_and_port(address: str) -> tuple[str, int]:
    address = address.removeprefix("http://").rstrip("/")
    host, port = address.rsplit(":", 1)
    return host, int(port)


def exporter_args(env: dict[str, str] | None = None) -> Any:
    return build_parser().parse_args(load_compose(env)["services"]["exporter"]["command"])


def test_the_four_services(services: dict[str, Json]) -> None:
    assert set(services) == SERVICES


def test_images_are_official_and_pinned(services: dict[str, Json]) -> None:
    for name, repository in OFFICIAL_IMAGES.items():
        image, _, tag = services[name]["image"].partition(":")
        assert image == repository
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a release, not {tag!r}"


def test_exporter_is_built_from_this_repository(services: dict[str, Json]) -> None:
    build = services["exporter"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()


def test_every_mounted_host_path_exists(compose: Json) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for mount in mounts(service):
            if mount.is_bind():
                assert mount.host_path().exists(), f"{name}: {mount.source} does not exist"
                assert mount.read_only, f"{name}: mount {mount.source} read-only"
            else:
                assert mount.source in named, f"{name}: undeclared volume {mount.source}"


def test_ports_are_published_on_loopback_only(services: dict[str, Json]) -> None:
    for name, service in services.items():
        ports = published_ports(service)
        assert ports, name
        assert all(port.host_ip == "127.0.0.1" for port in ports), name


def test_exporter_runs_the_demo_by_default() -> None:
    args = exporter_args()
    assert args.command == "demo"


def test_one_variable_switches_the_exporter_to_the_real_configuration(
    services: dict[str, Json],
) -> None:
    args = exporter_args({"M365_EXPORTER_COMMAND": "run"})
    assert args.command == "run"
    config = host_path_of(services["exporter"], str(args.config_file))
    assert config == DEPLOY / "exporter" / "config.yml"
    other = exporter_args({"M365_EXPORTER_COMMAND": "run", "M365_EXPORTER_CONFIG": "/srv/x.yml"})
    assert other.config_file == args.config_file
    mounted = load_compose({"M365_EXPORTER_CONFIG": "/srv/x.yml"})["services"]["exporter"]
    assert host_path_of(mounted, str(args.config_file)) == Path("/srv/x.yml")


def test_exporter_listens_where_it_is_published(services: dict[str, Json]) -> None:
    port = listen_port(exporter_args().listen_address)
    assert [p.container_port for p in published_ports(services["exporter"])] == [port]


def test_exporter_has_a_read_only_root_and_a_tmpfs_for_state(services: dict[str, Json]) -> None:
    exporter = services["exporter"]
    assert exporter["read_only"] is True
    assert exporter["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in exporter["security_opt"]
    (tmpfs,) = exporter["tmpfs"]
    target, _, options = tmpfs.partition(":")
    assert target == STATE_DIR
    user = next(i.arguments for i in dockerfile_instructions() if i.keyword == "USER")
    uid, gid = user.split(":")
    assert {f"uid={uid}", f"gid={gid}"} <= set(options.split(","))


def test_real_configuration_is_valid_and_keeps_state_on_the_tmpfs(
    services: dict[str, Json], tmp_path: Path
) -> None:
    exporter = services["exporter"]
    passed_through = {entry for entry in exporter["environment"] if "=" not in entry}
    text = (DEPLOY / "exporter" / "config.yml").read_text(encoding="utf-8")
    referenced = set(re.findall(r"\$\{(\w+)\}", text))
    # Every secret the configuration expands reaches the container from the shell.
    assert referenced and referenced <= passed_through
    with pytest.raises(ConfigError, match="M365_CLIENT_SECRET is not set"):
        parse_config(text, env={})
    config = parse_config(text, env={name: "secret-value" for name in referenced})
    assert config.state_file is not None
    assert config.state_file.parent == Path(STATE_DIR)
    assert config.probes and config.tenants


def test_documented_variables_are_the_ones_used() -> None:
    header = COMPOSE_FILE.read_text(encoding="utf-8").split("\nname:")[0]
    for variable in compose_variables(load_yaml(COMPOSE_FILE)):
        assert variable in header, f"{variable} is not explained in the header comment"


# --- Prometheus ------------------------------------------------------------------------


def test_prometheus_uses_the_intervals_the_rules_assume(prometheus_config: Json) -> None:
    assert prometheus_config["global"]["scrape_interval"] == "15s"
    assert prometheus_config["global"]["evaluation_interval"] == "15s"


def test_prometheus_scrapes_the_exporter_as_the_rules_expect(
    prometheus_config: Json, services: dict[str, Json]
) -> None:
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    (static,) = jobs[EXPORTER_JOB]["static_configs"]
    (target,) = static["targets"]
    host, port = host_and_port(target)
    assert host == "exporter"
    assert port == listen_port(exporter_args().listen_address)
    for job in jobs.values():
        for config in job["static_configs"]:
            for address in config["targets"]:
                assert host_and_port(address)[0] in SERVICES | {"localhost"}


def test_prometheus_loads_exactly_the_repository_rule_files(
    prometheus_config: Json, services: dict[str, Json]
) -> None:
    loaded: set[Path] = set()
    for pattern in prometheus_config["rule_files"]:
        host = host_path_of(services["prometheus"], pattern)
        loaded.update(host.parent.glob(host.name))
    assert loaded == set(RULE_DIR.glob("*.yml"))


def test_prometheus_sends_alerts_to_alertmanager(
    prometheus_config: Json, services: dict[str, Json]
) -> None:
    (manager,) = prometheus_config["alerting"]["alertmanagers"]
    (target,) = manager["static_configs"][0]["targets"]
    host, port = host_and_port(target)
    assert host == "alertmanager"
    assert port in [p.container_port for p in published_ports(services["alertmanager"])]


def test_promtool_accepts_the_prometheus_config(
    prometheus_config: Json, services: dict[str, Json], tmp_path: Path
) -> None:
    promtool = require_tool("promtool")
    local = dict(prometheus_config)
    local["rule_files"] = [
        str(host_path_of(services["prometheus"], pattern)) for pattern in local["rule_files"]
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(local), encoding="utf-8")
    done = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The glob found the rule files and promtool checked each of them.
    assert f"{len(list(RULE_DIR.glob('*.yml')))} rule files found" in done.stdout


# --- Alertmanager ----------------------------------------------------------------------


def alertmanager_config_path(services: dict[str, Json]) -> Path:
    return host_path_of(services["alertmanager"], config_flag(services["alertmanager"]))


def test_amtool_accepts_the_alertmanager_config(services: dict[str, Json]) -> None:
    amtool = require_tool("amtool")
    done = subprocess.run(
        [amtool, "check-config", str(alertmanager_config_path(services))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def alert_names() -> set[str]:
    return {
        rule["alert"]
        for path in RULE_DIR.glob("*.yml")
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_alertmanager_names_only_existing_alerts(services: dict[str, Json]) -> None:
    text = alertmanager_config_path(services).read_text(encoding="utf-8")
    named: set[str] = set()
    for op, value in re.findall(r'alertname\s*(=~|=)\s*"([^"]*)"', text):
        named.update(value.split("|") if op == "=~" else [value])
    assert named, "the inhibit rule names the alerts it concerns"
    assert named <= alert_names()


def test_alertmanager_routes_by_labels_the_alerts_have(services: dict[str, Json]) -> None:
    config = load_yaml(alertmanager_config_path(services))
    receivers = {receiver["name"] for receiver in config["receivers"]}
    assert config["route"]["receiver"] in receivers
    assert {"alertname", "tenant"} <= set(config["route"]["group_by"])


# --- Grafana ---------------------------------------------------------------------------


def provisioning_files(services: dict[str, Json], kind: str) -> list[Path]:
    root = f"/etc/grafana/provisioning/{kind}/"
    files = [m.host_path() for m in mounts(services["grafana"]) if m.target.startswith(root)]
    assert files, f"no {kind} provisioning mounted"
    return files


def test_grafana_data_source_is_the_compose_prometheus(
    services: dict[str, Json], prometheus_config: Json
) -> None:
    (path,) = provisioning_files(services, "datasources")
    provisioning = load_yaml(path)
    assert provisioning["apiVersion"] == 1
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"]
    assert source["isDefault"] is True
    host, port = host_and_port(source["url"])
    assert host == "prometheus"
    assert port in [p.container_port for p in published_ports(services["prometheus"])]
    # $__rate_interval is only right when Grafana knows the scrape interval.
    assert source["jsonData"]["timeInterval"] == prometheus_config["global"]["scrape_interval"]


def test_grafana_provisions_every_repository_dashboard(services: dict[str, Json]) -> None:
    (path,) = provisioning_files(services, "dashboards")
    assert path == REPO / "dashboards" / "provisioning" / "dashboards.yml"
    provisioning = load_yaml(path)
    assert provisioning["apiVersion"] == 1
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    mounted = host_path_of(services["grafana"], provider["options"]["path"])
    dashboards = sorted((REPO / "dashboards").glob("*.json"))
    assert dashboards and sorted(mounted.glob("*.json")) == dashboards
    for dashboard in dashboards:
        variables = json.loads(dashboard.read_text(encoding="utf-8"))["templating"]["list"]
        assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in variables)


def test_grafana_home_dashboard_exists(services: dict[str, Json]) -> None:
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path_of(services["grafana"], home).is_file()


def test_deployment_yaml_has_no_duplicate_keys() -> None:
    # PyYAML, like Compose and kubectl, silently keeps the last of two equal keys.
    class Strict(yaml.SafeLoader):
        pass

    def no_duplicates(loader: Strict, node: yaml.MappingNode) -> dict[Any, Any]:
        keys = [loader.construct_object(key) for key, _ in node.value]
        assert len(keys) == len(set(keys)), f"duplicate key at line {node.start_mark.line + 1}"
        return loader.construct_mapping(node)

    Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, no_duplicates)
    paths = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=Strict))
