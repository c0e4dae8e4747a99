"""Runs the SPF, DKIM and DMARC checks of every configured domain and keeps the verdicts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import dns.asyncresolver
import structlog
from prometheus_client.core import Metric

from m365_smtp_exporter.config import DomainChecksConfig
from m365_smtp_exporter.domains.dkim import DkimResult, check_dkim
from m365_smtp_exporter.domains.dmarc import check_dmarc
from m365_smtp_exporter.domains.lookup import DnsLookup, DnsLookupError, make_resolver
from m365_smtp_exporter.domains.metrics import domain_metrics
from m365_smtp_exporter.domains.spf import check_spf
from m365_smtp_exporter.domains.status import Check, DomainStatus

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
# Domains checked at the same time: enough for any real list, gentle on the resolver.
MAX_PARALLEL_DOMAINS = 16


class DomainChecker:
    """Checks the configured domains through DNS; `collect` is its metric source.

    Each check (SPF, DKIM, DMARC) of each domain has its own deadline, `config.timeout`.

    Without an injected `resolver`, the configured nameservers (or the system resolver) are
    used. `on_change` is called after every run. Runs do not overlap: a second caller waits.
    """

    def __init__(
        self,
        config: DomainChecksConfig,
        *,
        resolver: dns.asyncresolver.Resolver | None = None,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._domains = list(dict.fromkeys(_normal(name) for name in config.names))
        self._resolver = resolver
        self._clock = clock
        self._on_change = on_change
        self._statuses: Mapping[str, DomainStatus] = MappingProxyType({})
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(MAX_PARALLEL_DOMAINS)

    @property
    def domains(self) -> list[str]:
        return list(self._domains)

    @property
    def statuses(self) -> Mapping[str, DomainStatus]:
        """The latest status per domain (replaced whole after each run)."""
        return self._statuses

    async def run(self) -> bool:
        """Check every domain concurrently. Never raises; True when every lookup succeeded."""
        async with self._lock:
            lookup = self._lookup()
            found = await asyncio.gather(*(self._check(lookup, d) for d in self._domains))
            self._statuses = MappingProxyType({status.domain: status for status in found})
        if self._on_change is not None:
            self._on_change()
        return all(status.ok for status in found)

    def collect(self) -> Iterator[Metric]:
        return domain_metrics(self._statuses.values())

    def _lookup(self) -> DnsLookup | DnsLookupError:
        if self._resolver is None:
            try:  # built once per checker: resolv.conf is not re-read at every run
                self._resolver = make_resolver(self._config)
            except DnsLookupError as exc:
                return exc
        return DnsLookup(self._resolver)

    async def _check(self, lookup: DnsLookup | DnsLookupError, domain: str) -> DomainStatus:
        async with self._slots:
            spf, dkim, dmarc = await asyncio.gather(
                self._attempt(domain, Check.SPF, lookup, lambda via: check_spf(via, domain)),
                self._attempt(domain, Check.DKIM, lookup, lambda via: self._dkim(via, domain)),
                self._attempt(domain, Check.DMARC, lookup, lambda via: check_dmarc(via, domain)),
            )
        # A check that could not complete keeps the verdict of its last completed run.
        kept = self._statuses.get(domain) or DomainStatus(domain, 0.0, {})
        status = DomainStatus(
            domain,
            self._clock(),
            {
                Check.SPF: spf is not None,
                Check.DKIM: dkim is not None,
                Check.DMARC: dmarc is not None,
            },
            spf=kept.spf if spf is None else spf,
            dkim=kept.dkim if dkim is None else dkim,
            dmarc=kept.dmarc if dmarc is None else dmarc,
        )
        _log_new_problems(status, kept)
        return status

    async def _dkim(self, lookup: DnsLookup, domain: str) -> tuple[DkimResult, ...]:
        selectors = self._config.dkim_selectors
        return tuple(await _all(check_dkim(lookup, domain, s) for s in selectors))

    async def _attempt(
        self,
        domain: str,
        check: Check,
        lookup: DnsLookup | DnsLookupError,
        run: Callable[[DnsLookup], Awaitable[_T]],
    ) -> _T | None:
        """The check's verdict, or None (logged) when it could not be completed."""
        if isinstance(lookup, DnsLookupError):
            _log_failure(domain, check, str(lookup))
            return None
        try:
            async with asyncio.timeout(self._config.timeout):
                return await run(lookup)
        except DnsLookupError as exc:
            _log_failure(domain, check, str(exc))
        except TimeoutError:
            _log_failure(domain, check, f"no answer within {self._config.timeout:g}s")
        except Exception:
            # A bug must not stop the other checks; the check reads as failed.
            log.exception("domain check crashed", domain=domain, check=check.value)
        return None


async def _all(coroutines: Iterable[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


def _log_failure(domain: str, check: Check, error: str) -> None:
    log.warning("domain check failed", domain=domain, check=check.value, error=error)


def _log_new_problems(status: DomainStatus, before: DomainStatus) -> None:
    for check, now, then in (
        (Check.SPF, status.spf, before.spf),
        (Check.DMARC, status.dmarc, before.dmarc),
    ):
        problems = now.problems if now is not None else ()
        if problems and problems != (then.problems if then is not None else ()):
            log.info(
                "domain posture problems",
                domain=status.domain,
                check=check.value,
                problems=list(problems),
            )


def _normal(domain: str) -> str:
    return domain.strip().rstrip(".").lower()
