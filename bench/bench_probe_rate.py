"""Full send probes per second in one process, against bare aiosmtplib on the same server.

An aiosmtpd server with STARTTLS (a trustme CA) runs in another process. This process sends
`--probes` mails, `--concurrency` at a time, (a) with `run_probe` (the exporter's probe:
config, TLS context, message, transcript, result) and (b) with bare aiosmtplib
(`SMTP(...).sendmail`, one TLS context built once, a fixed message), alternating, `--runs`
times each. It prints probes per second (wall), CPU per probe and the median duration of
one probe (wall around the call; for `run_probe` also the duration it reports, which is what
the exporter publishes), median [min-max] over runs. The probe's TLS context comes from the
shared cache (built once per configuration), as in the exporter. `--profile` profiles one
more round of probes and prints what SSL context building costs per probe (it should be 0:
one context per TLS configuration) and the functions with the most own time.

    python bench/bench_probe_rate.py [--probes 600] [--concurrency 8] [--runs 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import pstats
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiosmtplib
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session

from m365_smtp_exporter.config import ProbeConfig
from m365_smtp_exporter.smtp.probe import run_probe

MESSAGE = b"From: probe@contoso.test\r\nTo: inbox@contoso.test\r\nSubject: bench\r\n\r\nhello\r\n"


class Accept:
    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        return "250 2.0.0 OK"


def serve(ca_dir: str, conn: Connection) -> None:
    asyncio.run(_serve(ca_dir, conn))


async def _serve(ca_dir: str, conn: Connection) -> None:
    ca = trustme.CA()
    ca_file = Path(ca_dir) / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Accept(), hostname="localhost", tls_context=context, loop=loop),
        "127.0.0.1",
        0,
    )
    conn.send((server.sockets[0].getsockname()[1], str(ca_file)))
    await loop.run_in_executor(None, conn.recv)
    server.close()


async def timed(count: int, concurrency: int, send: object) -> tuple[float, float, list[float]]:
    assert callable(send)
    durations: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            started = time.perf_counter()
            await send()
            durations.append(time.perf_counter() - started)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu, durations


async def measure(port: int, ca_file: str, args: argparse.Namespace) -> dict[str, list[float]]:
    config = ProbeConfig.model_validate(
        {
            "name": "bench",
            "host": "127.0.0.1",
            "port": port,
            "tls": "starttls",
            "ca_file": ca_file,
            "auth": {"mechanism": "none"},
            "mail_from": "probe@contoso.test",
            "rcpt_to": ["inbox@contoso.test"],
            "timeout": 10.0,
        }
    )
    bare_context = ssl.create_default_context(cafile=ca_file)
    failures = 0
    reported: list[float] = []

    async def probe() -> None:
        nonlocal failures
        result = await run_probe(config)
        failures += not result.success
        reported.append(result.duration)

    async def bare() -> None:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, start_tls=True, tls_context=bare_context
        )
        async with client:
            await client.sendmail("probe@contoso.test", ["inbox@contoso.test"], MESSAGE)

    await timed(20, 4, probe)  # warm-up: imports, the shared TLS context
    await timed(20, 4, bare)
    results: dict[str, list[float]] = {}
    for _ in range(args.runs):
        for name, send in (("probe", probe), ("bare", bare)):
            reported.clear()
            wall, cpu, durations = await timed(args.probes, args.concurrency, send)
            if name == "probe":
                results.setdefault("probe_reported", []).append(statistics.median(reported))
            results.setdefault(f"{name}_rate", []).append(args.probes / wall)
            results.setdefault(f"{name}_cpu", []).append(cpu / args.probes)
            results.setdefault(f"{name}_duration", []).append(statistics.median(durations))
    results["failures"] = [float(failures)]
    if args.profile:
        profile(await profiled(args.probes, args.concurrency, probe), args.probes)
    return results


async def profiled(count: int, concurrency: int, send: object) -> cProfile.Profile:
    profiler = cProfile.Profile()
    profiler.enable()
    await timed(count, concurrency, send)
    profiler.disable()
    return profiler


SSL_CONTEXT_WORK = ("load_verify_locations", "create_default_context", "build_ssl_context")


def profile(profiler: cProfile.Profile, count: int) -> None:
    stats = pstats.Stats(profiler)
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(own for _, _, own, _, _ in table.values())
    print(f"\nprofile of {count} more probes: {total / count * 1000:.2f} ms own time per probe")
    for name in SSL_CONTEXT_WORK:
        calls = sum(c for (_, _, fn), (c, _, _, _, _) in table.items() if fn.endswith(name))
        cum = sum(t for (_, _, fn), (_, _, _, t, _) in table.items() if fn.endswith(name))
        print(f"  {name}: {calls} calls, {cum / count * 1000:.3f} ms per probe")
    print("  most own time:")
    top = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:8]
    for (path, line, fn), (_, _, own, _, _) in top:
        where = f"{Path(path).name}:{line}({fn})" if line else fn
        print(f"    {own / total * 100:5.1f} %  {where}")


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{med * scale:,.{digits}f} [{low * scale:,.{digits}f}-{high * scale:,.{digits}f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as ca_dir:
        parent, child = multiprocessing.Pipe()
        server = multiprocessing.get_context("spawn").Process(target=serve, args=(ca_dir, child))
        server.start()
        port, ca_file = parent.recv()
        try:
            r = asyncio.run(measure(port, ca_file, args))
        finally:
            parent.send("stop")
            server.join(timeout=10)
    print(
        f"{args.probes} probes x {args.runs} runs, {args.concurrency} at a time, STARTTLS, "
        "server in another process: median [min-max]"
    )
    print(f"{'':>24} {'probes/s (wall)':>24} {'CPU ms/probe':>20} {'median duration ms':>22}")
    for name, label in (("probe", "run_probe, wall"), ("bare", "bare aiosmtplib, wall")):
        print(
            f"{label:>24} {spread(r[f'{name}_rate']):>24} "
            f"{spread(r[f'{name}_cpu'], 1000, 2):>20} "
            f"{spread(r[f'{name}_duration'], 1000, 1):>22}"
        )
    reported = spread(r["probe_reported"], 1000, 1)
    print(f"{'run_probe, reported':>24} {'':>24} {'':>20} {reported:>22}")
    gap = [p - b for p, b in zip(r["probe_reported"], r["bare_duration"], strict=True)]
    print(f"{'reported - bare':>24} {'':>24} {'':>20} {spread(gap, 1000, 2):>22}")
    print(f"probe failures: {int(r['failures'][0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
