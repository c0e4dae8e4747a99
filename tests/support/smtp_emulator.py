"""Clients of the emulated Exchange Online SMTP endpoint."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import aiosmtplib

from m365_emulator.service import Emulator
from m365_emulator.smtp.server import SmtpEmulator
from m365_emulator.world import DEMO_PASSWORD
from m365_smtp_exporter.config import ProbeConfig

PASSWORD = DEMO_PASSWORD

EmulatorFactory = Callable[..., Coroutine[Any, Any, SmtpEmulator]]


def client_context(emulator: SmtpEmulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emulator.ca_file))


def smtp_client(
    emulator: SmtpEmulator, *, start_tls: bool = True, timeout: float = 10.0
) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=emulator.port,
        start_tls=start_tls,
        tls_context=client_context(emulator),
        local_hostname="probe-host",
        timeout=timeout,
    )


async def connected(emulator: SmtpEmulator) -> aiosmtplib.SMTP:
    """A client past STARTTLS and the EHLO that must follow it."""
    client = smtp_client(emulator)
    await client.connect()
    await client.ehlo()
    return client


async def logged_in(
    emulator: SmtpEmulator, user: str = "probe@contoso.com", password: str = PASSWORD
) -> aiosmtplib.SMTP:
    client = await connected(emulator)
    await client.login(user, password)
    return client


def message(sender: str, recipients: list[str], subject: str = "probe") -> bytes:
    return (
        f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@probe-host>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def probe_config(emulator: Emulator, **overrides: Any) -> ProbeConfig:
    """The exporter's probe aimed at the emulator's submission endpoint (LOGIN as the
    probe mailbox); keyword overrides replace any field."""
    sender = overrides.pop("sender", "probe@contoso.com")
    fields: dict[str, Any] = {
        "name": "p",
        "tenant": None,
        "host": "127.0.0.1",
        "port": emulator.smtp_port,
        "ca_file": emulator.ca_file,
        "auth": {"mechanism": "login", "username": sender, "password": DEMO_PASSWORD},
        "mail_from": sender,
        "rcpt_to": ["probe-inbox@contoso.com"],
        "interval": 60,
        "timeout": 5,
    }
    fields.update(overrides)
    return ProbeConfig.model_validate(fields)
