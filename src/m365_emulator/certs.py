"""A private CA and the SMTP server's certificate, written as PEM files, and the TLS context."""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from m365_emulator.state import Clock

DEFAULT_NAMES = ("localhost", "127.0.0.1")
_CLOCK_SKEW = timedelta(hours=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "m365-smtp-exporter emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _subject_alt_name(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):  # unique, order kept
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateAuthority:
    """A self-signed CA that issues server certificates (EC P-256: instant to generate)."""

    def __init__(self, now: datetime, valid_days: int = 3650) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = _name("m365-smtp-exporter emulator CA")
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    def issue(
        self, names: Sequence[str], now: datetime, days_left: float
    ) -> tuple[x509.Certificate, bytes]:
        """A server certificate for `names` expiring `days_left` days from `now`, and its key.

        A negative `days_left` gives an already expired certificate.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = now + timedelta(days=days_left)
        not_before = min(now - _CLOCK_SKEW, not_after - timedelta(days=1))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(_subject_alt_name(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return certificate, _key_pem(key)


class TlsMaterial:
    """CA and server certificate as PEM files in `directory`; re-issuable with a new expiry.

    `clock` is real wall time: peers check validity against their own clock.
    """

    def __init__(
        self,
        directory: Path,
        names: Sequence[str] = (),
        *,
        days_valid: float = 365,
        clock: Clock = time.time,
    ) -> None:
        self._clock = clock
        self._names = [*DEFAULT_NAMES, *names]
        self.directory = directory
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        self._ca = CertificateAuthority(self._now())
        self.ca_file.write_bytes(self._ca.certificate.public_bytes(serialization.Encoding.PEM))
        self.not_after = self.reissue(days_valid)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    def reissue(self, days_left: float) -> datetime:
        """Replace the server certificate with one that expires in `days_left` days."""
        certificate, key_pem = self._ca.issue(self._names, self._now(), days_left)
        self.key_file.touch(mode=0o600)
        self.key_file.write_bytes(key_pem)
        self.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self.not_after = certificate.not_valid_after_utc
        return self.not_after

    def server_context(self) -> ssl.SSLContext:
        return server_ssl_context(self.cert_file, self.key_file)


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Server context that refuses TLS below 1.2, as Exchange Online does on port 587."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context
