"""Start time and resident memory of `m365-smtp-exporter run` (and `demo`), against a baseline.

The Microsoft 365 emulator runs in another process (SMTP with STARTTLS, token endpoint,
Graph). For each case the exporter is started as its own process, `python -m
m365_smtp_exporter run` (or `demo`), and measured from outside:

- start: from spawning the process until `/-/healthy` answers;
- first probe: until `/metrics` carries a probe result;
- RSS: VmRSS of the process when it is `--age` seconds old (the first probe done; the same
  moment for every variant, since the demo's traffic grows it), and its peak (VmHWM);
- import: a separate `python -c "import m365_smtp_exporter.app"`, its wall time and maxrss.

Cases: one probe without a tenant (Basic auth), one probe with one tenant (XOAUTH2, message
trace on: the Graph SDK is needed), and the demo (emulator, traffic and exporter in one
process). `--baseline SRC` runs the same cases with another checkout's `src` first on
PYTHONPATH (e.g. main's commit in a `git worktree`), alternating with this checkout.

    python bench/bench_startup.py --baseline /tmp/base/src [--runs 3] [--age 15]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
CASES = ("no tenant", "one tenant", "demo")


def serve_emulator(work_dir: str, conn: Connection) -> None:
    asyncio.run(_serve_emulator(Path(work_dir), conn))


async def _serve_emulator(work_dir: Path, conn: Connection) -> None:
    # the bench's own emulator process; the exporter under test never imports it
    from m365_emulator.service import Emulator
    from m365_smtp_exporter.demo import write_demo_config

    emulator = Emulator(smtp_port=0, http_port=0, dns_port=0, tls_dir=work_dir / "tls")
    await emulator.start()
    conn.send(str(write_demo_config(emulator, work_dir)))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await emulator.stop()


def case_configs(demo_config: Path, directory: Path) -> dict[str, Path]:
    """One probe without a tenant, one probe with one tenant, from the demo's endpoints."""
    demo: dict[str, Any] = yaml.safe_load(demo_config.read_text())
    probes = {probe["name"]: probe for probe in demo["probes"]}
    basic = dict(probes["campaign-mailbox"], name="submission-basic", interval="10s")
    basic.pop("tenant")
    oauth = dict(probes["submission"], interval="10s")
    oauth.pop("delivery")
    tenant = dict(demo["tenants"]["contoso"])
    tenant.pop("service_health")
    configs = {
        "no tenant": {"probes": [basic]},
        "one tenant": {"tenants": {"contoso": tenant}, "probes": [oauth]},
    }
    paths = {}
    for name, config in configs.items():
        path = directory / f"{name.replace(' ', '-')}.yml"
        path.write_text(yaml.safe_dump(config))
        paths[name] = path
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def run_case(case: str, src: Path, config: Path | None, age: float) -> dict[str, float]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(src))
    listen = ["--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warning"]
    if case == "demo":
        command = ["demo", *listen]
        command += ["--emulator.smtp-port", "0", "--emulator.http-port", "0"]
        command += ["--emulator.dns-port", "0"]
    else:
        command = ["run", "--config.file", str(config), *listen]
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "m365_smtp_exporter", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        alive = _until(process, lambda: get(f"{base}/-/healthy") is not None, 60)
        healthy_at = time.perf_counter() - started
        alive = alive and _until(process, lambda: _has_probe_result(get(f"{base}/metrics")), 60)
        probed_at = time.perf_counter() - started
        if alive:
            time.sleep(max(0.0, started + age - time.perf_counter()))
            memory = memory_kb(process.pid)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    if not alive:
        raise RuntimeError(f"{case}: the exporter exited: {stderr.decode()[-2000:]}")
    return {
        "start_s": healthy_at,
        "first_probe_s": probed_at,
        "rss_mb": memory["VmRSS"] / 1024,
        "peak_mb": memory["VmHWM"] / 1024,
    }


def _has_probe_result(text: str | None) -> bool:
    return text is not None and "\nm365_smtp_probe_success{" in text


def _until(process: subprocess.Popen[bytes], ready: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.02)
    raise TimeoutError("the exporter did not get there in time")


IMPORT_PROBE = (
    "import resource, sys, time\n"
    "t = time.perf_counter()\n"
    "import m365_smtp_exporter.app\n"
    "took = time.perf_counter() - t\n"
    "heavy = sorted(m for m in ('msgraph', 'azure.identity', 'kiota_http', 'httpx', 'msal')"
    " if m in sys.modules)\n"
    "print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, ','.join(heavy))\n"
)


def import_cost(src: Path) -> tuple[float, float, str]:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        env=dict(os.environ, PYTHONPATH=str(src)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), out[2] if len(out) > 2 else "-"


def spread(values: list[float], digits: int = 1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"[{min(values):.{digits}f}-{max(values):.{digits}f}]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another checkout's src directory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--age", type=float, default=15.0, help="seconds; RSS taken then")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    args = parser.parse_args()
    variants = {"after": SRC}
    if args.baseline is not None:
        variants = {"before": args.baseline, "after": SRC}
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    imports: dict[str, dict[str, list[float]]] = {}
    heavy: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as work_dir:
        parent, child = multiprocessing.Pipe()
        emulator = multiprocessing.get_context("spawn").Process(
            target=serve_emulator, args=(work_dir, child)
        )
        emulator.start()
        try:
            configs = case_configs(Path(parent.recv()), Path(work_dir))
            for _ in range(args.runs):
                for variant, src in variants.items():
                    took, maxrss, loaded = import_cost(src)
                    imports.setdefault(variant, {}).setdefault("s", []).append(took)
                    imports[variant].setdefault("mb", []).append(maxrss)
                    heavy[variant] = loaded
                    for case in args.cases:
                        figures = run_case(case, src, configs.get(case), args.age)
                        for key, value in figures.items():
                            results.setdefault((case, variant), {}).setdefault(key, []).append(
                                value
                            )
        finally:
            parent.send("stop")
            emulator.join(timeout=20)
    print(f"{args.runs} runs each, alternating; median [min-max]; load: {os.getloadavg()}")
    print(f"{'':>22} {'import app s':>18} {'import maxrss MB':>18}  heavy modules loaded")
    for variant in variants:
        print(
            f"{variant:>22} {spread(imports[variant]['s'], 2):>18} "
            f"{spread(imports[variant]['mb']):>18}  {heavy[variant]}"
        )
    print(f"{'':>22} {'healthy after s':>18} {'first probe s':>18} {'RSS MB':>20} {'peak MB':>20}")
    for case in args.cases:
        for variant in variants:
            r = results[(case, variant)]
            print(
                f"{case + ' ' + variant:>22} {spread(r['start_s'], 2):>18} "
                f"{spread(r['first_probe_s'], 2):>18} {spread(r['rss_mb']):>20} "
                f"{spread(r['peak_mb']):>20}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
