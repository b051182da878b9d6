#!/usr/bin/env python3
"""Item 4: a queue of 100 000 jobs.

- submit time of `kueue cmd --array 1-100000 true` (a fresh process, one call);
- the server's resident memory with the queue (target under 300 MB), beside
  its memory when empty;
- `kueue ls -n 40` (what a terminal of 44 lines shows; `kueue ls` piped
  prints every job) as a fresh process: target under 0.5 s; beside the same
  with 1 000 queued and `python -c "import grpc"`;
- dispatch rate: fake workers (bench/fake_workers.py: the real protocol,
  jobs finished at once) take K jobs from the head of a queue of 100 000,
  and from one of 1 000 on a second server, in turns: target ratio >= 0.9.

  python bench/queue_scale.py [--quick] [--jobs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    RESULTS,
    Cluster,
    Row,
    interleaved,
    kueue_argv,
    local_cluster,
    log,
    report,
    rss_bytes,
    timed,
)
from bench.fake_workers import FakeFleet
from bench.sizes import sizes

SMALL_QUEUE = 1000
DISPATCH_SLOTS = 8
MB = 1024 * 1024


async def _take(cluster: Cluster, count: int) -> float:
    """Jobs per second a fake worker with DISPATCH_SLOTS slots is given and finishes, for `count` jobs."""
    fleet = FakeFleet(f"127.0.0.1:{cluster.port}", cluster.secret, 1, slots=DISPATCH_SLOTS, run_jobs=False)
    await fleet.start()
    start = time.perf_counter()
    try:
        await fleet.wait_acked(count, timeout=300)
        return count / (fleet.counters.ack_times[count - 1] - start)
    finally:
        fleet.drain()
        await fleet.stop()


def dispatch_rate(cluster: Cluster, count: int) -> float:
    return asyncio.run(_take(cluster, count))


def measure(work: Path, *, jobs: int, take: int, rounds: int, ls_runs: int) -> dict[str, Any]:
    import sys as _sys

    from kueue_client.spec import array_instances, job_spec

    with (
        local_cluster(work / "big", start_workers=False) as big,
        local_cluster(work / "small", start_workers=False) as small,
    ):
        assert big.server is not None and small.server is not None
        rss_empty = rss_bytes(big.server.pid)
        log(f"queue scale: submitting {jobs} jobs in one call")
        submit_s = timed([*kueue_argv(big), "cmd", "--array", f"1-{jobs}", "true"], cwd=work)
        time.sleep(1.0)  # let the commit's garbage settle before reading RSS
        rss_full = rss_bytes(big.server.pid)
        with small.client() as client:
            spec = job_spec(["true"], cpus=0, ram_mb=0, cwd=str(work))
            client.submit(spec, array_instances(f"1-{SMALL_QUEUE}"))
        log(f"queue scale: kueue ls, {ls_runs} runs each")
        ls = interleaved(
            {
                "grpc_floor": lambda: timed([_sys.executable, "-c", "import grpc"], cwd=work),
                "ls_small": lambda: timed([*kueue_argv(small), "ls", "-n", "40"], cwd=work),
                "ls_big": lambda: timed([*kueue_argv(big), "ls", "-n", "40"], cwd=work),
            },
            ls_runs,
        )
        log(f"queue scale: dispatch of {take} jobs, {rounds} rounds")
        rates: dict[str, list[float]] = {"small": [], "big": []}
        with small.client() as client:
            for _ in range(rounds):
                rates["big"].append(dispatch_rate(big, take))
                if client.list_jobs(states=["pending"], limit=1).matching < take:
                    client.submit(spec, array_instances(f"1-{SMALL_QUEUE}"))
                rates["small"].append(dispatch_rate(small, take))
        pending_big = big.client().list_jobs(states=["pending"], limit=1).matching
    return {
        "benchmark": "queue_scale",
        "jobs": jobs,
        "small_queue": SMALL_QUEUE,
        "submit_s": submit_s,
        "server_rss_empty_mb": rss_empty / MB,
        "server_rss_full_mb": rss_full / MB,
        "ls_s": {k: statistics.median(v) for k, v in ls.items()},
        "ls_samples_s": ls,
        "dispatch_take": take,
        "dispatch_slots": DISPATCH_SLOTS,
        "dispatch_jobs_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "dispatch_samples": rates,
        "pending_left_in_big_queue": pending_big,
    }


def rows(r: dict[str, Any]) -> list[Row]:
    item = "4 queue scale"
    n = r["jobs"]
    ls = r["ls_s"]
    d = r["dispatch_jobs_per_s"]
    dr = d["big"] / d["small"]
    return [
        Row(
            item,
            f"submit {n:,} jobs (kueue cmd --array)",
            r["submit_s"],
            "s",
            note=f"{n / r['submit_s']:,.0f} jobs/s",
        ),
        Row(
            item,
            f"server RSS with {n:,} queued",
            r["server_rss_full_mb"],
            "MB",
            "< 300 MB",
            None,
            "< 300",
            r["server_rss_full_mb"] < 300,
        ),
        Row(item, "server RSS, empty", r["server_rss_empty_mb"], "MB"),
        Row(
            item,
            f"kueue ls -n 40, {n:,} queued",
            ls["ls_big"],
            "s",
            "import grpc",
            ls["ls_big"] / ls["grpc_floor"],
            "< 0.5 s",
            ls["ls_big"] < 0.5,
        ),
        Row(
            item,
            f"kueue ls -n 40, {r['small_queue']:,} queued",
            ls["ls_small"],
            "s",
            "import grpc",
            ls["ls_small"] / ls["grpc_floor"],
        ),
        Row(
            item,
            f"dispatch, {n:,} queued",
            d["big"],
            "jobs/s",
            f"{r['small_queue']:,} queued",
            dr,
            ">= 0.9",
            dr >= 0.9,
        ),
        Row(
            item,
            f"dispatch, {r['small_queue']:,} queued",
            d["small"],
            "jobs/s",
            note=f"fake worker, {r['dispatch_slots']} slots",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--jobs", type=int, help="queued jobs (default 100000; quick: 3000)")
    parser.add_argument("--output", type=Path, default=RESULTS / "queue_scale.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kueue-bench-", ignore_cleanup_errors=True) as tmp:
        results = measure(Path(tmp), **sizes("queue_scale", args.quick, jobs=args.jobs))
    report(results, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
