#!/usr/bin/env python3
"""Item 5: 200 workers connected, each sending a heartbeat every second.

The workers are FakeWorkers (bench/fake_workers.py): 200 Connect streams in
this process speaking the real protocol, each with 1 slot, really running
the jobs' commands. Measured:

  - the server's CPU use while they only send heartbeats (percent of one
    core), beside the same with a single such worker;
  - throughput of item 1 (N `true` as one array) spread over the 200 (one
    slot each, so up to 200 run at once), beside the plain pool of 2,
    taking turns. The fake workers share this one process, which spawns
    every job: it, not only the server, bounds this figure.

    python bench/many_workers.py [--quick] [--workers N] [--jobs N]
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

from bench.common import RESULTS, Cluster, Row, cpu_seconds, local_cluster, log, report
from bench.fake_workers import FakeFleet
from bench.sizes import sizes
from bench.throughput import array_rate, pool_rate


async def _idle_cpu(cluster: Cluster, workers: int, seconds: float) -> float:
    assert cluster.server is not None
    fleet = FakeFleet(f"127.0.0.1:{cluster.port}", cluster.secret, workers, slots=1, run_jobs=True)
    await fleet.start()
    try:
        await asyncio.sleep(1.5)  # registration settles
        before = cpu_seconds(cluster.server.pid)
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        return (cpu_seconds(cluster.server.pid) - before) / (time.perf_counter() - start) * 100
    finally:
        await fleet.stop()


async def _spread(
    cluster: Cluster, workers: int, jobs: int, rounds: int, work: Path
) -> dict[str, list[float]]:
    fleet = FakeFleet(f"127.0.0.1:{cluster.port}", cluster.secret, workers, slots=1, run_jobs=True)
    await fleet.start()
    samples: dict[str, list[float]] = {"pool": [], "kueue": []}
    try:
        with cluster.client() as client:
            for _ in range(rounds):
                samples["pool"].append(await asyncio.to_thread(pool_rate, jobs))
                samples["kueue"].append(await asyncio.to_thread(array_rate, client, jobs, str(work)))
        return samples
    finally:
        await fleet.stop()


def measure(work: Path, *, workers: int, jobs: int, rounds: int, idle_seconds: float) -> dict[str, Any]:
    with local_cluster(work / "c", start_workers=False, global_max_parallel_jobs=workers) as cluster:
        log(f"many workers: idle server CPU, 1 then {workers} workers, {idle_seconds:.0f} s each")
        idle_one = asyncio.run(_idle_cpu(cluster, 1, idle_seconds))
        idle_many = asyncio.run(_idle_cpu(cluster, workers, idle_seconds))
        log(f"many workers: {jobs} jobs over {workers} workers, {rounds} rounds beside the plain pool")
        samples = asyncio.run(_spread(cluster, workers, jobs, rounds, work))
        distinct = len({j.worker_name for j in cluster.client().list_jobs(limit=jobs).jobs})
    return {
        "benchmark": "many_workers",
        "workers": workers,
        "heartbeat_seconds": 1.0,
        "idle_server_cpu_percent": {"1": idle_one, str(workers): idle_many},
        "jobs": jobs,
        "samples_jobs_per_s": samples,
        "median_jobs_per_s": {k: statistics.median(v) for k, v in samples.items()},
        "workers_that_ran_jobs_in_last_round": distinct,
    }


def rows(r: dict[str, Any]) -> list[Row]:
    item = "5 many workers"
    n = r["workers"]
    idle = r["idle_server_cpu_percent"]
    m = r["median_jobs_per_s"]
    return [
        Row(
            item,
            f"server CPU, {n} workers idle, heartbeat 1 s",
            idle[str(n)],
            "% core",
            "1 worker",
            idle[str(n)] / max(idle["1"], 0.01),
        ),
        Row(item, "server CPU, 1 worker idle", idle["1"], "% core"),
        Row(
            item,
            f"{r['jobs']} x true over {n} workers x 1 slot",
            m["kueue"],
            "jobs/s",
            "plain pool",
            m["kueue"] / m["pool"],
            note=f"{r['workers_that_ran_jobs_in_last_round']} workers used",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--workers", type=int, help="worker connections (default 200; quick: 5)")
    parser.add_argument("--jobs", type=int, help="jobs per round (default 2000; quick: 20)")
    parser.add_argument("--output", type=Path, default=RESULTS / "many_workers.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kueue-bench-", ignore_cleanup_errors=True) as tmp:
        results = measure(
            Path(tmp), **sizes("many_workers", args.quick, workers=args.workers, jobs=args.jobs)
        )
    report(results, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
