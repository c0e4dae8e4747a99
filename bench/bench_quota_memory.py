"""Memory and speed of the quota engine on a day of trace rows, against a naive baseline.

Feeds N rows (default 1,000,000) from M senders (default 10,000) spread over 24 h, arriving
up to 10 minutes late and out of order, in batches with an advancing clock, as the trace
puller would. Then keeps the same rows as a plain list of tuples and recounts them by brute
force, checks both give the same figures, and prints a table.

    python bench/bench_quota_memory.py [--rows N] [--senders M] [--tracemalloc]

Exits with status 1 when the process's peak resident memory after the engine phase is over
the 200 MB budget, or when the engine and the recount disagree.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import os
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from m365_smtp_exporter.quota import (
    LimitName,
    QuotaEngine,
    QuotaLimits,
    QuotaRow,
    SenderSelection,
    select_series,
)

BUDGET_MB = 200.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, minute aligned
DAY = 86_400.0
MAX_LATENESS = 600.0
OUR_DOMAINS = ("contoso.com", "fabrikam.com", "northwind.example")
STATUSES = ("delivered", "delivered", "delivered", "failed", "pending", "filteredAsSpam")
HEAVY_SENDERS = 100  # a fifth of the traffic comes from these, so some approach their limits


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class Clock:
    now: float = START

    def __call__(self) -> float:
        return self.now


def batches(
    rows: int, senders: int, seed: int, batch_size: int
) -> Iterator[tuple[float, list[QuotaRow]]]:
    """(arrival clock, rows) in arrival order: received time plus up to 10 min lateness."""
    rng = random.Random(seed)
    sender_names = [f"user{i}@{OUR_DOMAINS[i % len(OUR_DOMAINS)]}" for i in range(senders)]
    rate = rows / (DAY - MAX_LATENESS) / 2.5  # messages per second, 2.5 recipients each
    arriving: list[tuple[float, int, QuotaRow]] = []
    batch: list[QuotaRow] = []
    received = START
    made = 0
    while made < rows or arriving:
        if made < rows:
            received = min(received + rng.expovariate(rate), START + DAY - MAX_LATENESS - 1)
            heavy = rng.random() < 0.2
            sender = sender_names[rng.randrange(HEAVY_SENDERS if heavy else senders)]
            message_id = f"<{made:08x}.{rng.getrandbits(32):08x}@{sender.partition('@')[2]}>"
            for _ in range(min(rng.randint(1, 4), rows - made)):
                if rng.random() < 0.3:
                    recipient = f"r{rng.randrange(50_000)}@partner{rng.randrange(500)}.example"
                else:
                    recipient = sender_names[rng.randrange(senders)]
                row = QuotaRow(sender, recipient, message_id, received, rng.choice(STATUSES))
                heapq.heappush(arriving, (received + rng.uniform(0, MAX_LATENESS), made, row))
                made += 1
        while arriving and (made >= rows or arriving[0][0] <= received):
            batch.append(heapq.heappop(arriving)[2])
            if len(batch) == batch_size:
                yield received, batch
                batch = []
    if batch:
        yield START + DAY - 1, batch


def limits() -> QuotaLimits:
    return QuotaLimits(
        internal_domains=frozenset(OUR_DOMAINS),
        licenses=10_000,
        spam_external_per_hour=500,
        spam_internal_per_hour=1000,
        spam_recipients_per_day=2000,
    )


def brute_force(
    rows: list[tuple[str, str, str, float, str]], now: float, lookback: int
) -> tuple[dict[str, int], int, dict[str, int]]:
    """Recipients per sender and tenant external recipients over 24 h, and each sender's
    busiest minute in the lookback, recounted from the raw rows (all senders are ours)."""
    now_bucket = int(now // 60)
    day_cutoff, minute_cutoff = now_bucket - 1440, now_bucket - lookback // 60
    recipients: Counter[str] = Counter()
    external = 0
    messages: defaultdict[tuple[str, int], set[str]] = defaultdict(set)
    for sender, recipient, message_id, received, _status in rows:
        bucket = int(received // 60)
        if bucket < day_cutoff:
            continue
        recipients[sender] += 1
        external += recipient.rpartition("@")[2] not in OUR_DOMAINS
        if bucket >= minute_cutoff:
            messages[sender, bucket].add(message_id)
    peaks: Counter[str] = Counter()
    for (sender, _bucket), ids in messages.items():
        peaks[sender] = max(peaks[sender], len(ids))
    return dict(recipients), external, dict(peaks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--senders", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace the engine's Python allocations"
    )
    args = parser.parse_args()

    gc.collect()
    rss_start = rss_mb()
    clock = Clock()
    engine = QuotaEngine(limits(), clock)
    if args.tracemalloc:
        tracemalloc.start()
    ingest_seconds = 0.0
    wall = time.perf_counter()
    for arrival, batch in batches(args.rows, args.senders, args.seed, args.batch):
        clock.now = arrival
        started = time.perf_counter()
        engine.add_rows(batch)
        ingest_seconds += time.perf_counter() - started
    wall = time.perf_counter() - wall
    traced_mb = tracemalloc.get_traced_memory()[0] / 2**20 if args.tracemalloc else None
    tracemalloc.stop()
    now = START + DAY - 1
    started = time.perf_counter()
    snapshot = engine.snapshot(now)
    snapshot_seconds = time.perf_counter() - started
    started = time.perf_counter()
    series = select_series(snapshot, SenderSelection(top_n=50, hash_senders=True))
    select_seconds = time.perf_counter() - started
    gc.collect()
    rss_engine = rss_mb()
    peak_engine = peak_rss_mb()

    naive: list[tuple[str, str, str, float, str]] = []
    naive_ingest_seconds = 0.0
    for _arrival, batch in batches(args.rows, args.senders, args.seed, args.batch):
        started = time.perf_counter()
        naive.extend(batch)
        naive_ingest_seconds += time.perf_counter() - started
    gc.collect()
    rss_naive = rss_mb()
    started = time.perf_counter()
    recipients, external, peaks = brute_force(
        naive, now, engine.limits.message_rate_lookback_seconds
    )
    recount_seconds = time.perf_counter() - started

    agree = (
        {s: f[0].used for s, f in snapshot.senders.items() if f[0].used} == recipients
        and snapshot.tenant[0].used == external
        and {
            s: snapshot.figure(s, LimitName.MESSAGES_PER_MINUTE).used
            for s in snapshot.senders
            if snapshot.figure(s, LimitName.MESSAGES_PER_MINUTE).used
        }
        == peaks
    )
    stats = snapshot.stats
    print(
        f"rows {stats.rows_received:,} (counted {stats.rows_counted:,}), senders {args.senders:,}"
    )
    print(f"senders with usage {len(snapshot.senders):,}, exported series {len(series):,}")
    recovering = sum(f.recovery_seconds > 0 for f in snapshot.all_figures())
    print(f"figures above the recovery threshold: {recovering:,}")
    busiest = max(snapshot.senders.values(), key=lambda f: f[0].used)[0]
    print(
        f"busiest sender {busiest.used:,}/{busiest.limit:,} recipients,"
        f" recovery {busiest.recovery_seconds:,.0f} s; tenant external"
        f" {snapshot.tenant[0].used:,}/{snapshot.tenant[0].limit:,}"
    )
    print()
    print(f"{'approach':<34}{'resident MB':>12}{'ingest rows/s':>15}{'query s':>10}")
    print(
        f"{'quota engine (add_rows)':<34}{rss_engine - rss_start:>12.1f}"
        f"{stats.rows_received / ingest_seconds:>15,.0f}{snapshot_seconds:>10.3f}"
    )
    print(f"{'  select_series (top 50, hashed)':<34}{'':>12}{'':>15}{select_seconds:>10.3f}")
    print(
        f"{'naive list of row tuples (append)':<34}{rss_naive - rss_engine:>12.1f}"
        f"{args.rows / naive_ingest_seconds:>15,.0f}{recount_seconds:>10.3f}"
    )
    print()
    print("resident MB: growth of the process RSS over the phase;")
    print("query s: engine snapshot of every sender / brute-force recount of the list")
    print()
    print(f"process RSS: start {rss_start:.1f} MB, after engine {rss_engine:.1f} MB,")
    print(f"  peak after engine phase (ru_maxrss) {peak_engine:.1f} MB,", end=" ")
    print(f"peak at the end {peak_rss_mb():.1f} MB")
    if traced_mb is not None:
        print(f"tracemalloc: engine retains {traced_mb:.1f} MB of Python allocations")
    print(f"engine ingest wall time incl. row generation {wall:.1f} s")
    print(f"engine and brute-force recount agree: {'yes' if agree else 'NO'}")
    if peak_engine > BUDGET_MB:
        print(f"over budget: {peak_engine:.1f} MB > {BUDGET_MB:.0f} MB", file=sys.stderr)
        return 1
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
