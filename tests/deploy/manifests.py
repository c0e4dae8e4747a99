"""Loading the deployment files: the Dockerfile, the compose project and the kustomize base.

Only the parts of each format the deployment uses are understood: compose's `${VAR}`,
`${VAR:-default}` and `${VAR-default}` interpolation, short-syntax volumes, and Dockerfile
instructions with line continuations.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
KUSTOMIZE_DIR = DEPLOY / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
GENERATOR = REPO / "scripts" / "generate-prometheusrule.py"
RULE_DIR = REPO / "alerts"
EXPORTER_JOB = "m365-smtp-exporter"

Json = dict[str, Any]

_COMPOSE_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_documents(path: Path) -> list[Json]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# --- compose ---------------------------------------------------------------------------


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Resolve compose variables in every string of `node`, as `docker compose` would."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, op, default = match.group("name", "op", "default")
            value = env.get(name)
            if op == ":-" and not value:
                return default
            if op == "-" and value is None:
                return default
            return value or ""

        return _COMPOSE_VARIABLE.sub(replace, node)
    return node


def compose_variables(node: Any) -> set[str]:
    """Names of the variables the compose file interpolates."""
    if isinstance(node, dict):
        return set().union(*(compose_variables(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(compose_variables(value) for value in node))
    if isinstance(node, str):
        return {match.group("name") for match in _COMPOSE_VARIABLE.finditer(node)}
    return set()


def load_compose(env: Mapping[str, str] | None = None) -> Json:
    """The compose project with its variables resolved (unset unless given in `env`)."""
    project: Json = interpolate(load_yaml(COMPOSE_FILE), env or {})
    return project


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))

    def host_path(self, base: Path = DEPLOY) -> Path:
        return (base / self.source).resolve()


def mounts(service: Json) -> list[Mount]:
    """A service's short-syntax volumes: `source:target[:ro]`."""
    found = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"only short-syntax volumes are used: {entry!r}"
        source, target, *options = entry.split(":")
        found.append(Mount(source, target, "ro" in options))
    return found


def host_path_of(service: Json, container_path: str) -> Path:
    """The host path a bind mount of `service` shows at `container_path`."""
    for mount in mounts(service):
        if not mount.is_bind():
            continue
        if container_path == mount.target:
            return mount.host_path()
        if container_path.startswith(mount.target.rstrip("/") + "/"):
            return mount.host_path() / container_path[len(mount.target) :].lstrip("/")
    raise AssertionError(f"no bind mount covers {container_path}")


@dataclass(frozen=True)
class PublishedPort:
    host_ip: str
    host_port: int
    container_port: int


def published_ports(service: Json) -> list[PublishedPort]:
    """Short-syntax `ip:host:container` port mappings."""
    found = []
    for entry in service.get("ports", []):
        host_ip, host_port, container_port = str(entry).split(":")
        found.append(PublishedPort(host_ip, int(host_port), int(container_port)))
    return found


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in an argument list."""
    for index, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
    return None


def listen_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# --- Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # index of the FROM it belongs to


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, arguments.strip(), stage))
    return instructions


def exec_form(arguments: str) -> list[str]:
    """A JSON-array instruction argument (ENTRYPOINT, CMD)."""
    loaded = yaml.safe_load(arguments)
    assert isinstance(loaded, list), f"not exec form: {arguments}"
    return [str(item) for item in loaded]


def env_pairs(arguments: str) -> dict[str, str]:
    """`ENV A=1 B=2` as a mapping."""
    return dict(item.split("=", 1) for item in shlex.split(arguments))


# --- kustomize -------------------------------------------------------------------------


def kustomization() -> Json:
    data: Json = load_yaml(KUSTOMIZE_DIR / "kustomization.yaml")
    return data


def kustomize_resources() -> list[Json]:
    """Every object of the kustomization's resources, as written (before kustomize)."""
    objects: list[Json] = []
    for name in kustomization()["resources"]:
        objects.extend(load_yaml_documents(KUSTOMIZE_DIR / name))
    return objects


def only(objects: list[Json], kind: str) -> Json:
    matching = [obj for obj in objects if obj.get("kind") == kind]
    assert len(matching) == 1, f"expected one {kind}, found {len(matching)}"
    return matching[0]
