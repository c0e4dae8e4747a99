"""The Dockerfile: multi-stage, non-root, read-only-root ready, health-checked, and its
commands accepted by the exporter's own command line."""

from __future__ import annotations

import shlex
import tomllib

import pytest

from m365_smtp_exporter.cli import build_parser
from tests.deploy.manifests import (
    DOCKERFILE,
    REPO,
    Instruction,
    dockerfile_instructions,
    env_pairs,
    exec_form,
    flag_value,
    listen_port,
)

STATE_DIR = "/var/lib/m365-smtp-exporter"


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions()


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(instruction.stage for instruction in instructions)
    return [instruction for instruction in instructions if instruction.stage == last]


def one(instructions: list[Instruction], keyword: str) -> str:
    found = [i.arguments for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def runtime_user(instructions: list[Instruction]) -> int:
    return int(one(final_stage(instructions), "USER").split(":")[0])


def test_builds_in_one_stage_and_runs_from_a_slim_other(instructions: list[Instruction]) -> None:
    stages = [i.arguments.split() for i in instructions if i.keyword == "FROM"]
    assert len(stages) == 2
    (base, as_keyword, build_name), (runtime,) = stages
    assert as_keyword.upper() == "AS"
    args = dict(i.arguments.split("=", 1) for i in instructions if i.keyword == "ARG")
    for image in (base, runtime):
        resolved = args.get(image.strip("${}"), image)
        assert resolved.startswith("python:3.") and "-slim" in resolved
    # The runtime stage takes only the built virtual environment, no sources or tools.
    copies = [i.arguments for i in final_stage(instructions) if i.keyword == "COPY"]
    assert copies == [f"--from={build_name} /opt/venv /opt/venv"]


def test_build_stage_copies_only_what_exists(instructions: list[Instruction]) -> None:
    build = [i for i in instructions if i.stage == 0 and i.keyword == "COPY"]
    assert build
    for instruction in build:
        *sources, _destination = instruction.arguments.split()
        for source in sources:
            assert (REPO / source).exists(), source


def test_runs_as_a_non_root_user_that_owns_the_state_dir(instructions: list[Instruction]) -> None:
    uid = runtime_user(instructions)
    assert uid != 0
    runs = " ".join(i.arguments for i in final_stage(instructions) if i.keyword == "RUN")
    assert f"--uid {uid}" in runs
    assert f"-o {uid}" in runs and STATE_DIR in runs


def test_writes_only_under_the_state_dir(instructions: list[Instruction]) -> None:
    env: dict[str, str] = {}
    for arguments in (i.arguments for i in final_stage(instructions) if i.keyword == "ENV"):
        env.update(env_pairs(arguments))
    # Temporary files (the demo's configuration and certificates) go to the one writable
    # mount, and nothing writes bytecode next to the read-only sources.
    assert env["TMPDIR"] == STATE_DIR
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert one(final_stage(instructions), "WORKDIR") == STATE_DIR


def test_healthcheck_asks_the_liveness_endpoint(instructions: list[Instruction]) -> None:
    healthcheck = one(final_stage(instructions), "HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")  # the inline script at least parses
    exposed = int(one(final_stage(instructions), "EXPOSE"))
    assert f"http://127.0.0.1:{exposed}/-/healthy" in argv[2]


def test_entrypoint_is_the_installed_command(instructions: list[Instruction]) -> None:
    entrypoint = exec_form(one(final_stage(instructions), "ENTRYPOINT"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert entrypoint == ["m365-smtp-exporter"]
    assert scripts["m365-smtp-exporter"] == "m365_smtp_exporter.cli:main"


def test_default_command_runs_the_exporter_on_the_exposed_port(
    instructions: list[Instruction],
) -> None:
    cmd = exec_form(one(final_stage(instructions), "CMD"))
    args = build_parser().parse_args(cmd)
    assert args.command == "run"
    assert str(args.config_file).startswith("/etc/m365-smtp-exporter/")
    exposed = int(one(final_stage(instructions), "EXPOSE"))
    assert listen_port(args.listen_address) == exposed


def documented_commands() -> list[list[str]]:
    """The shell commands in the Dockerfile's header comment, continuation lines joined."""
    commands: list[list[str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if ":" in text.split(" ")[0]:
            text = text.split(":", 1)[1].strip()  # "Build:  docker build ..."
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        if pending or text.startswith("docker "):
            commands.append(shlex.split(pending + text))
        pending = ""
    return commands


def test_header_documents_build_and_run() -> None:
    commands = documented_commands()
    assert ["docker", "build", "-t", "m365-smtp-exporter", "."] in commands
    runs = [command for command in commands if command[:2] == ["docker", "run"]]
    assert {tuple(command[-3:]) for command in runs} >= {("demo", "--web.listen-address", ":9587")}
    assert len(runs) == 2


def test_documented_runs_work_with_a_read_only_root(instructions: list[Instruction]) -> None:
    uid = runtime_user(instructions)
    cmd = exec_form(one(final_stage(instructions), "CMD"))
    for command in (c for c in documented_commands() if c[:2] == ["docker", "run"]):
        assert "--read-only" in command
        tmpfs = flag_value(command, "--tmpfs")
        assert tmpfs is not None
        target, _, options = tmpfs.partition(":")
        assert target == STATE_DIR
        assert f"uid={uid}" in options.split(",")
        # Arguments after the image replace CMD.
        image_at = len(command) - 1 - command[::-1].index("m365-smtp-exporter")
        argv = command[image_at + 1 :] or cmd
        args = build_parser().parse_args(argv)
        assert args.command in ("demo", "run")
        if args.command == "run":
            volume = flag_value(command, "-v")
            assert volume is not None and volume.split(":")[1] == str(args.config_file)
