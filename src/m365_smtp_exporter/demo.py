"""`demo` (emulator + traffic + exporter in one process) and `emulator` (the emulator alone).

The only place outside tests where exporter code meets the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import string
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import TextIO

import structlog

from m365_emulator.service import Emulator
from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_emulator.traffic.backfill import BackfillVolumes, backfill
from m365_emulator.traffic.generator import BusyHolds, TrafficGenerator
from m365_emulator.traffic.model import BUSY_MAILBOX, profile_for_world
from m365_emulator.world import (
    CONTOSO_CLIENT_ID,
    CONTOSO_TENANT_ID,
    DEMO_PASSWORD,
    FABRIKAM_CLIENT_ID,
    FABRIKAM_TENANT_ID,
    WorldError,
    default_world,
    load_world,
)
from m365_smtp_exporter.app import Exporter
from m365_smtp_exporter.config import Config, parse_config
from m365_smtp_exporter.logs import Redactor
from m365_smtp_exporter.web_config import WebSecurity

log = structlog.get_logger(__name__)

# The built-in configuration is package data (a YAML file users can read and copy); `demo`
# fills in where the running emulator listens.
DEMO_CONFIG_RESOURCE = "demo.yml"


def demo_config_template() -> string.Template:
    text = resources.files("m365_smtp_exporter").joinpath(DEMO_CONFIG_RESOURCE).read_text("utf-8")
    return string.Template(text)


# Time is compressed in the demo (trace rows appear after 20 s, not 5-10 minutes), and some
# probe mail lands in Junk, fails SPF or is lost, so every panel has something to show.
DEMO_DELIVERY = DeliveryBehaviour(
    delay_seconds=1.0,
    delay_max_seconds=8.0,
    trace_lag_seconds=20.0,
    junk_probability=0.1,
    drop_probability=0.03,
    spf_fail_probability=0.05,
    spam_probability=0.02,
)


def write_demo_config(emulator: Emulator, directory: Path) -> Path:
    """Render the built-in configuration for a running emulator; secrets go to files."""
    secrets = directory / "secrets"
    secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    world = {tenant.name: tenant for tenant in emulator.world.tenants}
    for name in ("contoso", "fabrikam"):
        (secrets / f"{name}-client-secret").write_text(world[name].client_secret.get_secret_value())
    (secrets / "mailbox").write_text(DEMO_PASSWORD)
    text = demo_config_template().substitute(
        contoso_tenant_id=CONTOSO_TENANT_ID,
        contoso_client_id=CONTOSO_CLIENT_ID,
        fabrikam_tenant_id=FABRIKAM_TENANT_ID,
        fabrikam_client_id=FABRIKAM_CLIENT_ID,
        authority=emulator.http_url,
        graph_base_url=emulator.graph_base_url,
        ca_file=emulator.ca_file,
        smtp_port=emulator.smtp_port,
        hve_port=emulator.hve_port,
        mx_port=emulator.mx_port,
        http_port=emulator.http_port,
        dns_port=emulator.dns_port,
        secrets=secrets,
        busy_mailbox=BUSY_MAILBOX,
        work_dir=directory,
    )
    path = directory / "demo-config.yml"
    path.write_text(text)
    return path


def demo_config(path: Path) -> Config:
    return parse_config(path.read_text(), env={}, source=str(path))


class Demo:
    """Emulator, background mail traffic and the exporter, started and stopped together."""

    def __init__(
        self,
        *,
        listen_address: str = ":9587",
        smtp_port: int = 0,
        http_port: int = 0,
        dns_port: int = 0,
        work_dir: Path | None = None,
        redactor: Redactor | None = None,
        traffic: bool = True,
        web_security: WebSecurity | None = None,
        delivery: DeliveryBehaviour = DEMO_DELIVERY,
    ) -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="m365-demo-")
            work_dir = Path(self._tempdir.name)
        self.work_dir = work_dir
        self.emulator = Emulator(
            smtp_port=smtp_port,
            http_port=http_port,
            dns_port=dns_port,
            tls_dir=work_dir / "tls",
            delivery=delivery,
        )
        self._listen_address = listen_address
        self._redactor = redactor
        self._traffic_enabled = traffic
        self._web_security = web_security or WebSecurity()
        self.exporter: Exporter | None = None
        self.config_path: Path | None = None
        self.traffic: TrafficGenerator | None = None
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.emulator.start()
        # Microsoft's side of an outage: an open Exchange Online incident the outage alerts
        # and the NOC dashboard name (resolve it: POST /_emulator/health/issues/<id>/resolve).
        self.emulator.health.open_issue(
            title="Some users can't send email through SMTP AUTH client submission",
            feature="E-Mail and calendar access",
            impact_description="Users may see delays or failures sending email through SMTP.",
        )
        if self._traffic_enabled:
            await self._start_traffic()
        self.config_path = write_demo_config(self.emulator, self.work_dir)
        self.exporter = Exporter(
            demo_config(self.config_path),
            config_path=self.config_path,
            listen_address=self._listen_address,
            redactor=self._redactor,
            middlewares=self._web_security.build_middlewares(),
            ssl_context=self._web_security.ssl_context,
        )
        await self.exporter.start()

    async def _start_traffic(self) -> None:
        rng = random.Random()
        profile = profile_for_world(self.emulator.world)
        # The campaign starts close to its 10,000 recipients so quota rejections show early.
        volumes = BackfillVolumes(campaign_recipients_min=9_600, campaign_recipients_max=9_900)
        summary = backfill(
            self.emulator.state,
            self.emulator.smtp.ledger,
            profile,
            now=time.time(),
            rng=rng,
            volumes=volumes,
        )
        log.info("trace history back-filled", rows=summary.rows, messages=summary.messages)
        self.traffic = TrafficGenerator(
            self.emulator.state,
            self.emulator.host,
            self.emulator.smtp_port,
            self.emulator.ca_file,
            profile=profile,
            rng=rng,
            campaign_rate_per_minute=6.0,
            busy=BusyHolds(every_seconds=40.0, hold_seconds=30.0),
        )
        await self.traffic.start()
        self._pruner = asyncio.create_task(self._prune_trace())

    async def _prune_trace(self) -> None:
        # Live traffic adds ~30,000 rows a day; keep the 25 h the quota window needs.
        while True:
            await asyncio.sleep(600)
            self.emulator.state.prune_trace(time.time() - 25 * 3600)

    async def stop(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self.traffic is not None:
            await self.traffic.stop()
        if self.exporter is not None:
            await self.exporter.stop()
        await self.emulator.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


def _print_endpoints(
    out: TextIO, emulator: Emulator, exporter: Exporter | None, *, demo_world: bool = True
) -> None:
    if exporter is not None:
        port = exporter.bound_port
        base = f"{exporter.scheme}://localhost:{port}"
        print(f"exporter metrics:   {base}/metrics", file=out)
        print(f"exporter console:   {base}/", file=out)
    print(f"emulator SMTP:      {emulator.host}:{emulator.smtp_port} (STARTTLS)", file=out)
    print(f"emulator HVE:       {emulator.host}:{emulator.hve_port} (STARTTLS)", file=out)
    print(f"emulator MX:        {emulator.host}:{emulator.mx_port} (direct send)", file=out)
    print(f"emulator Graph:     {emulator.graph_base_url}", file=out)
    print(f"emulator token:     {emulator.http_url}/<tenant>/oauth2/v2.0/token", file=out)
    print(f"emulator control:   {emulator.http_url}/_emulator/smtp/faults", file=out)
    print(f"                    {emulator.http_url}/_emulator/graph/faults", file=out)
    print(f"                    {emulator.http_url}/_emulator/paths", file=out)
    print(f"                    {emulator.http_url}/_emulator/health/issues", file=out)
    print(f"emulator DNS:       127.0.0.1:{emulator.dns_port} (UDP and TCP)", file=out)
    print(f"emulator CA:        {emulator.ca_file}", file=out)
    if demo_world:  # a world file sets its own passwords
        print("mailbox password:   " + DEMO_PASSWORD + " (every emulated mailbox)", file=out)
    print("press Ctrl-C to stop", file=out, flush=True)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run_demo(
    args: argparse.Namespace, redactor: Redactor, out: TextIO, web_security: WebSecurity
) -> int:
    demo = Demo(
        listen_address=args.listen_address,
        smtp_port=args.emulator_smtp_port,
        http_port=args.emulator_http_port,
        dns_port=args.emulator_dns_port,
        redactor=redactor,
        web_security=web_security,
    )
    try:
        await demo.start()
    except OSError as exc:
        await demo.stop()
        print(f"cannot start the demo: {exc}", file=sys.stderr)
        return 1
    print(f"demo configuration: {demo.config_path}", file=out)
    _print_endpoints(out, demo.emulator, demo.exporter)
    try:
        await _until_signalled()
    finally:
        log.info("shutting down")
        await demo.stop()
    return 0


async def _run_emulator(args: argparse.Namespace, out: TextIO) -> int:
    try:
        world = load_world(args.emulator_world) if args.emulator_world else default_world()
    except WorldError as exc:
        print(f"cannot load the emulator world: {exc}", file=sys.stderr)
        return 2
    emulator = Emulator(
        world,
        smtp_port=args.emulator_smtp_port,
        http_port=args.emulator_http_port,
        dns_port=args.emulator_dns_port,
    )
    try:
        await emulator.start()
    except OSError as exc:
        await emulator.stop()
        print(f"cannot start the emulator: {exc}", file=sys.stderr)
        return 1
    _print_endpoints(out, emulator, None, demo_world=args.emulator_world is None)
    try:
        await _until_signalled()
    finally:
        await emulator.stop()
    return 0


def run_demo_command(
    command: str,
    args: argparse.Namespace,
    redactor: Redactor,
    out: TextIO = sys.stdout,
    web_security: WebSecurity | None = None,
) -> int:
    if command == "emulator":
        return asyncio.run(_run_emulator(args, out))
    return asyncio.run(_run_demo(args, redactor, out, web_security or WebSecurity()))
