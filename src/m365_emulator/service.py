"""The whole emulator in one object: SMTP submission, Graph + token endpoint, control API.

SMTP and HTTPS share one generated CA, so a client trusts both with a single `ca_file`.
The token endpoint must be https because azure-identity refuses plain-http authorities.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import structlog
from aiohttp import web

from m365_emulator.certs import server_ssl_context
from m365_emulator.control import control_routes
from m365_emulator.dns.server import HOST as DNS_HOST
from m365_emulator.dns.server import DnsServer
from m365_emulator.dns.zones import demo_zones
from m365_emulator.graph.api import GraphSettings, create_graph_app
from m365_emulator.graph.faults import GraphFaults, GraphTraffic, graph_control_routes
from m365_emulator.graph.health import HealthEndpoints, ServiceHealth, health_control_routes
from m365_emulator.graph.sendmail import SendMailEndpoint
from m365_emulator.paths_control import paths_control_routes
from m365_emulator.smtp.delivery import DeliveryBehaviour
from m365_emulator.smtp.hve import HveAccount, HveRules, hve_listener
from m365_emulator.smtp.mx import DirectSendRules, mx_listener
from m365_emulator.smtp.server import SmtpEmulator, SmtpSettings
from m365_emulator.state import Clock, EmulatorState
from m365_emulator.world import (
    CONTOSO_CLIENT_ID,
    DEMO_PASSWORD,
    WorldConfig,
    default_world,
    populate,
)

# The demo's High Volume Email account, with the contoso app granted (Add-HVEAppAccess).
DEMO_HVE_ACCOUNT = "hve-probe@contoso.com"

log = structlog.get_logger(__name__)


class Emulator:
    def __init__(
        self,
        world: WorldConfig | None = None,
        *,
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        http_port: int = 0,
        dns_port: int = 0,
        mx_port: int = 0,
        hve_port: int = 0,
        tls_dir: Path | None = None,
        delivery: DeliveryBehaviour | None = None,
        graph_settings: GraphSettings | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.world = world or default_world()
        self.host = host
        self.state = EmulatorState(clock)
        populate(self.state, self.world)
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if tls_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="m365-emulator-")
            tls_dir = Path(self._tempdir.name)
        self.tls_dir = tls_dir
        self.smtp = SmtpEmulator(
            self.state,
            settings=SmtpSettings(host=host, port=smtp_port),
            delivery=delivery,
            tls_dir=tls_dir / "smtp",
        )
        # The other send paths: tenant MX (direct send), High Volume Email, Graph sendMail,
        # and Microsoft's service health; all deliver through the submission server's agent.
        smtp_tls = tls_dir / "smtp"
        context = lambda: server_ssl_context(smtp_tls / "server.pem", smtp_tls / "server.key")  # noqa: E731
        self.mx_rules = DirectSendRules()
        self.mx = mx_listener(
            self.state, self.smtp.delivery, host=host, port=mx_port, tls_context=context,
            rules=self.mx_rules,
        )  # fmt: skip
        self.hve_rules = HveRules()
        self.hve_rules.add(HveAccount(DEMO_HVE_ACCOUNT, DEMO_PASSWORD, {CONTOSO_CLIENT_ID}))
        self.hve = hve_listener(
            self.state, self.smtp.delivery, host=host, port=hve_port, tls_context=context,
            rules=self.hve_rules,
        )  # fmt: skip
        self.sendmail = SendMailEndpoint(self.state, self.smtp.delivery, self.smtp.ledger)
        self.health = ServiceHealth(self.state.clock)
        self.graph_faults = GraphFaults()
        self.graph_traffic = GraphTraffic()
        self._graph_settings = graph_settings
        self._http_port = http_port
        self._dns_port = dns_port
        # Sending-domain records (SPF, DKIM, DMARC) of the emulated tenants.
        self.dns = DnsServer(demo_zones())
        self._runner: web.AppRunner | None = None

    @property
    def smtp_port(self) -> int:
        return self.smtp.port

    @property
    def mx_port(self) -> int:
        return self.mx.port

    @property
    def hve_port(self) -> int:
        return self.hve.port

    @property
    def http_port(self) -> int:
        return self._http_port

    @property
    def dns_port(self) -> int:
        return self.dns.port

    @property
    def http_url(self) -> str:
        return f"https://{self.host}:{self._http_port}"

    @property
    def graph_base_url(self) -> str:
        return f"{self.http_url}/v1.0"

    @property
    def authority(self) -> str:
        """What azure-identity takes as `authority` (host:port, https implied)."""
        return f"{self.host}:{self._http_port}"

    async def start(self) -> None:
        await self.dns.start(self._dns_port)
        await self.smtp.start()
        await self.mx.start()
        await self.hve.start()
        # HTTPS serves the SMTP side's current certificate (same CA). The context is built
        # once, so a later "certificate close to expiry" fault on SMTP leaves HTTPS alone.
        smtp_tls = self.tls_dir / "smtp"
        https_context = server_ssl_context(smtp_tls / "server.pem", smtp_tls / "server.key")
        app = create_graph_app(
            self.state,
            self.graph_faults,
            public_base_url=lambda: self.http_url,
            traffic=self.graph_traffic,
            settings=self._graph_settings,
        )
        app.add_routes(self.sendmail.routes())
        health = HealthEndpoints(self.state, self.health, public_base_url=lambda: self.http_url)
        app.add_routes(health.routes())
        app.add_routes(health_control_routes(self.health))
        app.add_routes(
            paths_control_routes(
                mx=self.mx,
                mx_rules=self.mx_rules,
                hve=self.hve,
                hve_rules=self.hve_rules,
                sendmail=self.sendmail.rules,
            )
        )
        app.add_routes(control_routes(self.smtp))
        app.add_routes(graph_control_routes(self.graph_faults, self.graph_traffic))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._http_port, ssl_context=https_context)
        await site.start()
        self._http_port = int(self._runner.addresses[0][1])
        log.info(
            "emulator listening",
            smtp=f"{self.host}:{self.smtp_port}",
            mx=f"{self.host}:{self.mx_port}",
            hve=f"{self.host}:{self.hve_port}",
            dns=f"{DNS_HOST}:{self.dns_port}",
            https=self.http_url,
            ca_file=str(self.ca_file),
        )

    @property
    def ca_file(self) -> Path:
        """The CA that signed the SMTP and HTTPS certificates, for clients to trust."""
        return self.smtp.ca_file

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.mx.stop()
        await self.hve.stop()
        await self.smtp.stop()
        await self.dns.stop()
        # let cancelled delivery tasks finish unwinding before the loop closes
        await asyncio.sleep(0)
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
