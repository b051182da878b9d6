#!/usr/bin/env python3
"""Items 1 and 7: N trivial jobs (`true`) as one array on 2 job slots, from
submit to all finished, beside the peers; and the same with the job database
in memory (kueue_server --ephemeral-store) to show what durability costs.

Subjects, measured in the same run:
  - plain pool: the same N `true` processes started by a Python pool of 2
    threads (subprocess.run): the physical limit of the machine;
  - kueue: a server and one worker with 2 slots on loopback, the array
    submitted in one call through the Python API;
  - kueue, 2 processes: the same worker run as two processes of one slot
    each (worker_settings.worker_processes = 2), where the machine has 2 CPUs;
  - kueue, in-memory store: the same with --ephemeral-store;
  - HyperQueue's LocalCluster (server and worker in this process), a worker
    of 2 cores, one job of N tasks, if `hyperqueue` is importable;
  - GNU parallel -j2 and Task Spooler (tsp -S 2), if installed.

Pool, both kueue variants and HyperQueue take turns for several rounds; the
ratios are the median of the rounds' own ratios (each round runs at one
speed of the machine), the rates the medians. GNU parallel and tsp run once.

    python bench/throughput.py [--quick] [--jobs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, Row, local_cluster, log, report, wait_for, which
from bench.sizes import sizes

SLOTS = 2


def pool_rate(n: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(SLOTS) as pool:
        for result in pool.map(lambda _: subprocess.run(["true"]), range(n)):
            result.check_returncode()
    return n / (time.perf_counter() - start)


def kueue_rate(
    work: Path, n: int, *, ephemeral: bool = False, workers: int = 1, slots: int = SLOTS, processes: int = 1
) -> float:
    """Jobs per second for an array of n `true` on a fresh local cluster,
    whose workers run as `processes` processes each (worker_processes)."""

    root = Path(tempfile.mkdtemp(prefix="cluster-", dir=work))
    settings = {"worker_processes": processes}
    with (
        local_cluster(
            root, slots=slots, workers=workers, ephemeral=ephemeral, worker_settings=settings
        ) as cluster,
        cluster.client() as client,
    ):
        return array_rate(client, n, str(work))


def array_rate(client: Any, n: int, cwd: str, on_done: Callable[[], None] | None = None) -> float:
    """Submit n `true` as one array and wait until all have ended; jobs per
    second. on_done is called once they have, before the listing that finds
    when the last one ended (for CPU figures that leave that listing out)."""
    from kueue_client.spec import array_instances, job_spec

    spec = job_spec(["true"], cpus=0, ram_mb=0, cwd=cwd)
    instances = array_instances(f"1-{n}")
    before = client.list_jobs(limit=1).summary
    done_before = before.succeeded + before.failed + before.canceled
    start = time.time()
    ids = set(client.submit(spec, instances).job_ids)

    def finished() -> bool:
        s = client.list_jobs(limit=1).summary
        if s.failed > before.failed:
            raise RuntimeError(f"{s.failed - before.failed} benchmark jobs failed")
        return s.succeeded + s.failed + s.canceled - done_before >= n

    wait_for(finished, timeout=max(120.0, n / 5), what=f"{n} jobs to finish")
    if on_done is not None:
        on_done()
    # The end is the server's record of the last finish, not the moment this
    # poll (up to 0.2 s apart) noticed it: that delay is a few % of a run.
    jobs = [job for job in client.list_jobs(limit=n + 1000).jobs if job.id in ids]
    if len(jobs) != n:
        raise RuntimeError(f"listed {len(jobs)} of the {n} benchmark jobs")
    end = max(job.finished_at.ToNanoseconds() for job in jobs) / 1e9
    return n / (end - start)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """HyperQueue prints its cluster's details to file descriptor 1: keep our table clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def hyperqueue_rate(work: Path, n: int) -> float | None:
    with stdout_to_stderr():
        return _hyperqueue_rate(work, n)


def _hyperqueue_rate(work: Path, n: int) -> float | None:
    try:
        from hyperqueue import Job, LocalCluster
        from hyperqueue.cluster import WorkerConfig
    except ImportError:
        return None
    server_dir = tempfile.mkdtemp(prefix="hq-", dir=work)
    with LocalCluster(server_dir) as cluster:
        cluster.start_worker(WorkerConfig(cores=SLOTS))
        client = cluster.client()
        job = Job(default_workdir=str(work))
        for _ in range(n):
            job.program(["true"], stdout=None, stderr=None)
        start = time.perf_counter()
        submitted = client.submit(job)
        client.wait_for_jobs([submitted])
        return n / (time.perf_counter() - start)


def parallel_rate(work: Path, n: int) -> float | None:
    if not which("parallel"):
        return None
    start = time.perf_counter()
    subprocess.run(
        ["parallel", "--will-cite", f"-j{SLOTS}", "-N0", "true"],
        input="\n".join(map(str, range(n))) + "\n",
        text=True,
        cwd=work,
        check=True,
        capture_output=True,
    )
    return n / (time.perf_counter() - start)


def tsp_rate(work: Path, n: int) -> float | None:
    if not which("tsp"):
        return None
    env = dict(os.environ, TS_SOCKET=str(work / "tsp.socket"), TMPDIR=str(work))

    def tsp(*args: str) -> str:
        return subprocess.run(["tsp", *args], env=env, check=True, capture_output=True, text=True).stdout

    tsp("-S", str(SLOTS))
    try:
        start = time.perf_counter()
        ids = [tsp("-n", "true").strip() for _ in range(n)]
        subprocess.run(["tsp", "-w", ids[-1]], env=env, capture_output=True)

        def idle() -> bool:
            # Jobs may end out of order: done once nothing runs or waits.
            listing = tsp("-l")
            return "[run=0/" in listing.splitlines()[0] and "queued" not in listing

        wait_for(idle, timeout=120, what="tsp to run every job")
        return n / (time.perf_counter() - start)
    finally:
        subprocess.run(["tsp", "-K"], env=env, capture_output=True)


def measure(work: Path, *, jobs: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"pool": [], "kueue": [], "kueue_processes": [], "kueue_memory": []}
    # worker_processes needs a CPU per process.
    split = (os.cpu_count() or 1) >= SLOTS
    peers: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    hq: list[float] = []

    def peer(name: str, fn: Any) -> float | None:
        log(f"throughput: {name}")
        try:
            rate = fn(work, jobs)
        except Exception as exc:  # a peer failing must not sink our figures
            notes[name] = f"failed: {exc}"[:300]
            return None
        if rate is None:
            notes[name] = "not installed"
        return rate

    for r in range(rounds):
        log(
            f"throughput round {r + 1}/{rounds}: pool, kueue, kueue of {SLOTS} processes, kueue in-memory, "
            f"HyperQueue ({jobs} jobs each)"
        )
        samples["pool"].append(pool_rate(jobs))
        samples["kueue"].append(kueue_rate(work, jobs))
        if split:
            samples["kueue_processes"].append(kueue_rate(work, jobs, processes=SLOTS))
        samples["kueue_memory"].append(kueue_rate(work, jobs, ephemeral=True))
        # HyperQueue is the peer with a target: it takes its turn every round.
        if r == 0 or hq:
            rate = peer("hyperqueue", hyperqueue_rate)
            if rate is not None:
                hq.append(rate)
        if r == 0:
            peers["parallel"] = peer("parallel", parallel_rate)
            peers["tsp"] = peer("tsp", tsp_rate)
    peers["hyperqueue"] = statistics.median(hq) if hq else None
    medians = {name: statistics.median(values) for name, values in samples.items() if values}
    # Each round runs the subjects back to back, so a round's ratio is taken
    # at one speed of the machine; the median of those is the figure (the
    # speed drifts by 10-20% between rounds, and a ratio of medians mixes
    # rounds).
    paired = {
        "kueue_vs_pool": _median_ratio(samples["kueue"], samples["pool"]),
        "kueue_processes_vs_pool": _median_ratio(samples["kueue_processes"], samples["pool"])
        if split
        else None,
        "durable_vs_memory": _median_ratio(samples["kueue"], samples["kueue_memory"]),
        "kueue_vs_hyperqueue": _median_ratio(samples["kueue"], hq) if len(hq) == rounds else None,
    }
    return {
        "benchmark": "throughput",
        "jobs": jobs,
        "slots": SLOTS,
        "rounds": rounds,
        "samples_jobs_per_s": samples,
        "median_jobs_per_s": medians,
        "median_round_ratios": paired,
        "peers_jobs_per_s": peers,
        "hyperqueue_samples_jobs_per_s": hq,
        "peer_notes": notes,
    }


def _median_ratio(values: list[float], baselines: list[float]) -> float:
    return statistics.median(v / b for v, b in zip(values, baselines, strict=True))


def rows(results: dict[str, Any]) -> list[Row]:
    m = results["median_jobs_per_s"]
    peers = results["peers_jobs_per_s"]
    paired = results["median_round_ratios"]
    n = results["jobs"]
    rounds = results["rounds"]
    item = "1 throughput"
    vs_pool = paired["kueue_vs_pool"]
    out = [
        Row(item, f"plain pool of 2, {n} x true", m["pool"], "jobs/s", note="physical limit"),
        Row(
            item,
            "kueue, 1 worker, 2 slots",
            m["kueue"],
            "jobs/s",
            "plain pool",
            vs_pool,
            ">= 0.6",
            vs_pool >= 0.6,
            note=f"median of the ratios of {rounds} rounds; ratio of the medians {m['kueue'] / m['pool']:.3f}",
        ),
    ]
    split = paired.get("kueue_processes_vs_pool")
    if split is not None:
        out.append(
            Row(
                item,
                f"kueue, 1 worker of {SLOTS} processes (worker_processes), 2 slots",
                m["kueue_processes"],
                "jobs/s",
                "plain pool",
                split,
                ">= 0.6",
                split >= 0.6,
                note=f"median of the ratios of {rounds} rounds; CPUs and RAM counted for the whole machine",
            )
        )
    hq = peers.get("hyperqueue")
    if hq:
        vs_hq = paired["kueue_vs_hyperqueue"] or m["kueue"] / hq
        out.append(Row(item, "HyperQueue LocalCluster, 2 cores", hq, "jobs/s", "plain pool", hq / m["pool"]))
        out.append(Row(item, "kueue / HyperQueue", vs_hq, "x", "HyperQueue", vs_hq, ">= 2", vs_hq >= 2))
    else:
        out.append(Row(item, "HyperQueue", None, "jobs/s", note=results["peer_notes"].get("hyperqueue", "")))
    for name, label in (("parallel", "GNU parallel -j2"), ("tsp", "tsp -S 2")):
        rate = peers.get(name)
        if rate:
            out.append(Row(item, label, rate, "jobs/s", "plain pool", rate / m["pool"]))
        else:
            out.append(Row(item, label, None, "jobs/s", note=results["peer_notes"].get(name, "")))
    r = paired["durable_vs_memory"]
    out.append(Row("7 durability", "kueue, in-memory store", m["kueue_memory"], "jobs/s"))
    out.append(
        Row("7 durability", "kueue durable / in-memory", r, "x", "in-memory store", r, "> 0.8", r > 0.8)
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--jobs", type=int, help="jobs per run (default 2000; quick: 40)")
    parser.add_argument(
        "--rounds", type=int, help="rounds of pool/kueue/kueue in-memory (default 9; quick: 1)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kueue-bench-", ignore_cleanup_errors=True) as tmp:
        results = measure(Path(tmp), **sizes("throughput", args.quick, jobs=args.jobs, rounds=args.rounds))
    report(results, rows, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
