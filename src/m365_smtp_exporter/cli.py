"""Command line: run (default), probe NAME, plan, check-config, demo, emulator."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import structlog

from m365_smtp_exporter import __version__
from m365_smtp_exporter.config import DEFAULT_LISTEN_ADDRESS, Config, ConfigError, load_config
from m365_smtp_exporter.logs import LEVELS, Redactor, configure_logging
from m365_smtp_exporter.planner.command import add_plan_flags
from m365_smtp_exporter.probe_spend import probe_spend, spend_warnings
from m365_smtp_exporter.sharding import Shard

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from m365_smtp_exporter.web_config import WebSecurity

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
COMMANDS = ("run", "probe", "plan", "check-config", "demo", "emulator")


def _common_flags(
    parser: argparse.ArgumentParser, *, suppress: bool, exporter: bool = True
) -> None:
    # Sub-commands repeat the flags so they work before or after the command name;
    # SUPPRESS keeps a sub-command's unset flag from hiding the top-level value.
    # `exporter=False` (the emulator alone) leaves out the exporter's own flags.
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    if exporter:
        _exporter_flags(parser, default)
    parser.add_argument("--log.level", dest="log_level", choices=LEVELS, default=default("info"))
    parser.add_argument(
        "--log.format",
        dest="log_format",
        choices=("auto", "json", "logfmt", "console"),
        default=default("auto"),
        help="auto: console on a terminal, JSON otherwise",
    )


def _exporter_flags(parser: argparse.ArgumentParser, default: Callable[[object], object]) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=default(Path("m365-smtp-exporter.yml")),
        help="configuration file (default: m365-smtp-exporter.yml)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=default(DEFAULT_LISTEN_ADDRESS),
        help="address for /metrics, the console and /api/v1 (default: :9587)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        default=default(None),
        help="web configuration file (Prometheus exporter-toolkit format): TLS and basic "
        "authentication (default: none, plain HTTP)",
    )
    parser.add_argument(
        "--shard",
        dest="shard",
        default=default("0/1"),
        help="run only this replica's share i/n of the probes and trace pulls (default 0/1)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        default=default(False),
        help="answer POST /-/reload (off by default; SIGHUP always reloads)",
    )


def _emulator_ports(parser: argparse.ArgumentParser) -> None:
    for name, default, what in (
        ("smtp", 2587, "SMTP submission (STARTTLS)"),
        ("http", 9588, "HTTPS: Graph, token endpoint, control API"),
        ("dns", 2553, "DNS (UDP and TCP) for the sending domains"),
    ):
        parser.add_argument(
            f"--emulator.{name}-port",
            dest=f"emulator_{name}_port",
            type=int,
            default=default,
            help=f"emulator {what} port on 127.0.0.1 (default {default}, 0: any free port)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m365-smtp-exporter",
        description="Prometheus exporter and throttling monitor for Microsoft 365 mail.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common_flags(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run the exporter (default)")
    _common_flags(run, suppress=True)
    probe_help = (
        "run one configured probe now: it sends a real mail through the configured server "
        "(spending the mailbox's sending quota) and shows the SMTP conversation "
        "(exit 0 on success, 1 on failure)"
    )
    probe = commands.add_parser("probe", help=probe_help, description=probe_help)
    _common_flags(probe, suppress=True)
    probe.add_argument("name", help="probe name from the configuration")
    plan = commands.add_parser(
        "plan",
        help="how much a sender can send now and when the rest can go (asks a running"
        " exporter with --exporter.url, otherwise pulls the message trace once)",
    )
    _common_flags(plan, suppress=True)
    add_plan_flags(plan)
    check = commands.add_parser("check-config", help="validate the configuration and exit")
    _common_flags(check, suppress=True)
    demo = commands.add_parser(
        "demo",
        help="run the Microsoft 365 emulator, mail traffic "
        "and the exporter together, with a built-in configuration",
    )
    _common_flags(demo, suppress=True)
    _emulator_ports(demo)
    emulator_help = (
        "run only the Microsoft 365 emulator (SMTP submission, Graph, token endpoint, DNS, "
        "control API; see docs/emulator.md)"
    )
    emulator = commands.add_parser("emulator", help=emulator_help, description=emulator_help)
    _common_flags(emulator, suppress=True, exporter=False)
    _emulator_ports(emulator)
    emulator.add_argument(
        "--emulator.world",
        dest="emulator_world",
        type=Path,
        default=None,
        help="YAML file of tenants and mailboxes (default: built-in demo world)",
    )
    return parser


def _load(path: Path, out: TextIO, env: Mapping[str, str] | None = None) -> Config | None:
    try:
        return load_config(path, env)
    except ConfigError as exc:
        print(f"configuration error in {path}:", file=out)
        for line in exc.errors:
            print(f"  {line}", file=out)
        return None


def _load_web(path: Path | None, out: TextIO) -> WebSecurity | None:
    """No file: plain HTTP, no authentication. None: the file is unusable (and reported)."""
    from m365_smtp_exporter.web_config import WebSecurity, load_web_security

    if path is None:
        return WebSecurity()
    try:
        return load_web_security(path)
    except ConfigError as exc:
        print(f"web configuration error in {path}:", file=out)
        for line in exc.errors:
            print(f"  {line}", file=out)
        return None


def check_config(
    path: Path,
    out: TextIO = sys.stdout,
    env: Mapping[str, str] | None = None,
    web_config_file: Path | None = None,
) -> int:
    config = _load(path, out, env)
    web = _load_web(web_config_file, out)
    if config is None or web is None:
        return EXIT_CONFIG
    errors = _build_errors(config)
    if errors:
        print(f"configuration error in {path}:", file=out)
        for line in errors:
            print(f"  {line}", file=out)
        return EXIT_CONFIG
    print(f"{path}: OK, {len(config.tenants)} tenant(s), {len(config.probes)} probe(s)", file=out)
    for name, tenant in config.tenants.items():
        credential = (
            "certificate"
            if tenant.certificate_file
            else ("client secret" if tenant.client_secret else "no credentials")
        )
        print(f"  tenant {name}: tenant_id {tenant.tenant_id}, {credential}", file=out)
    for probe in config.probes:
        print(
            f"  probe {probe.name}: {probe.target} tls={probe.tls} "
            f"auth={probe.auth.mechanism} every {probe.interval:g}s "
            f"(timeout {probe.timeout:g}s) {probe.mail_from} -> {', '.join(probe.rcpt_to)}",
            file=out,
        )
    _print_probe_spend(config, out)
    if web_config_file is not None:
        print(f"{web_config_file}: OK, {web.config.describe()}", file=out)
    return EXIT_OK


def _print_probe_spend(config: Config, out: TextIO) -> None:
    spends = probe_spend(config.probes, config.tenants)
    if not spends:
        return
    print(
        "  probe mail per sending mailbox (probes send real mail and spend its limits):", file=out
    )
    for spend in spends:
        print(f"    {spend.describe()}", file=out)
    for warning in spend_warnings(spends):
        print(f"  warning: {warning}", file=out)


def log_probe_spend(config: Config) -> None:
    """At start, what the probes spend of each sending mailbox's limits (as check-config)."""
    spends = probe_spend(config.probes, config.tenants)
    for spend in spends:
        log.info(
            "probe quota spend",
            sender=spend.sender,
            recipients_per_day=round(spend.recipients_per_day),
            daily_share=round(spend.daily_share, 4),
            daily_limit=spend.daily_limit,
            messages_per_minute=round(spend.messages_per_minute, 2),
            minute_share=round(spend.minute_share, 4),
            probes=[name for name, _ in spend.probes],
        )
    for warning in spend_warnings(spends):
        log.warning("probe quota spend high", detail=warning)


def _build_errors(config: Config) -> list[str]:
    """What building every subsystem for `config` (as `run` and a reload do) reports."""
    from m365_smtp_exporter.app import ReloadError, validate

    try:
        asyncio.run(validate(config))
    except ReloadError as exc:
        return exc.errors
    return []


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    command = args.command or "run"
    if command == "check-config":
        return check_config(args.config_file, web_config_file=args.web_config_file)
    redactor = configure_logging(args.log_level, args.log_format)
    if command == "probe":
        from m365_smtp_exporter.probe_command import run_probe_command

        config = _load(args.config_file, sys.stderr)
        if config is None:
            return EXIT_CONFIG
        return asyncio.run(run_probe_command(config, args.name, sys.stdout))
    if command == "plan":
        from m365_smtp_exporter.planner.command import run_plan_command

        plan_config = None if args.exporter_url else _load(args.config_file, sys.stderr)
        if plan_config is None and not args.exporter_url:
            return EXIT_CONFIG
        return asyncio.run(run_plan_command(args, plan_config))
    if command in ("demo", "emulator"):
        if importlib.util.find_spec("aiosmtpd") is None:
            print(
                f"`{command}` needs the emulator's dependencies: "
                "pip install 'm365-smtp-exporter[demo]'",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        from m365_smtp_exporter.demo import run_demo_command

        if command == "emulator":
            return run_demo_command(command, args, redactor)
        demo_web = _load_web(args.web_config_file, sys.stderr)
        if demo_web is None:
            return EXIT_CONFIG
        return run_demo_command(command, args, redactor, web_security=demo_web)
    config = _load(args.config_file, sys.stderr)
    web = _load_web(args.web_config_file, sys.stderr)
    if config is None or web is None:
        return EXIT_CONFIG
    return asyncio.run(_serve(config, args, redactor, web))


async def _serve(
    config: Config, args: argparse.Namespace, redactor: Redactor, web: WebSecurity
) -> int:
    from m365_smtp_exporter.app import Exporter, ReloadError

    log_probe_spend(config)
    try:
        shard = Shard.parse(args.shard)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    middlewares, ssl_context = web.build_middlewares(), web.ssl_context
    if args.web_config_file is not None:
        from m365_smtp_exporter.web_config_watch import WebConfigWatcher

        try:  # re-read on change: renewed certificates, rotated passwords
            watcher = WebConfigWatcher(args.web_config_file)
        except ConfigError as exc:
            print(f"web configuration error in {args.web_config_file}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        middlewares, ssl_context = [watcher.middleware()], watcher.ssl_context
    exporter = Exporter(
        config,
        config_path=args.config_file,
        listen_address=args.listen_address,
        redactor=redactor,
        shard=shard,
        middlewares=middlewares,
        ssl_context=ssl_context,
        enable_lifecycle=args.enable_lifecycle,
        # only callers the web config authenticates may read why a reload failed
        reload_details=bool(web.config.basic_auth_users),
    )
    try:
        await exporter.serve_forever()
    except OSError as exc:
        print(f"cannot listen on {args.listen_address}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    except ReloadError as exc:
        print(
            f"configuration error in {args.config_file}: {'; '.join(exc.errors)}", file=sys.stderr
        )
        return EXIT_CONFIG
    return EXIT_OK
