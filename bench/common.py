"""What the benchmarks share: a local cluster, timing, and the result rows.

Every benchmark returns a dict with its raw figures and a list of rows, one
per measured figure, that run_all.py prints as one table:

    {"item": "1 throughput", "measure": "kueue, 2 slots", "value": 812.0,
     "unit": "jobs/s", "baseline": "plain pool of 2", "ratio": 0.51,
     "target": ">= 0.6", "met": False}

Absolute times on a shared 2-core machine are noisy, so every target is a
ratio to a baseline measured in the same run, baseline and subject taking
turns where they can.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.cluster import Cluster, _env, wait_for  # noqa: E402 - after the path is set

RESULTS = REPO / "bench" / "results"

__all__ = ["REPO", "RESULTS", "Cluster", "Row", "env", "kueue_argv", "log", "machine", "wait_for"]


@dataclass
class Row:
    item: str
    measure: str
    # None: not measured (a peer not installed); `note` says why.
    value: float | None
    unit: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def env() -> dict[str, str]:
    """The environment for our programs: this checkout first on the path, and
    bytecode caching on (an installed kueue has its .pyc files; without them
    every fresh process would measure the compiler)."""
    e = _env()
    e.pop("PYTHONDONTWRITEBYTECODE", None)
    return e


def machine() -> dict[str, Any]:
    import grpc

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
        "load_before": os.getloadavg()[0],
    }


def report(results: dict[str, Any], rows: Callable[[dict[str, Any]], Sequence[Any]], output: Path) -> None:
    """Add the machine and the table rows to results, write them as JSON, print the table."""
    import json

    from bench.table import render

    results["machine"] = machine()
    results["rows"] = [r.as_dict() for r in rows(results)]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results["rows"]))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median_s": statistics.median(samples),
        "p95_s": percentile(samples, 95),
        "min_s": min(samples),
        "max_s": max(samples),
    }


def timed(argv: Sequence[str], *, cwd: Path, input: bytes | None = None) -> float:
    """Wall time of one run of argv (which must succeed)."""
    start = time.perf_counter()
    result = subprocess.run(
        argv,
        env=env(),
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)[:200]} failed ({result.returncode}): {result.stderr.decode()[-800:]}"
        )
    return elapsed


def interleaved(subjects: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each subject once per round, in turn, so a burst of load from the
    rest of the machine falls on all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, run in subjects.items():
            samples[name].append(run())
    return samples


def kueue_argv(cluster: Cluster) -> list[str]:
    return [sys.executable, "-m", "kueue_client", "--config", str(cluster.client_config)]


@contextlib.contextmanager
def local_cluster(
    root: Path,
    *,
    slots: int = 2,
    workers: int = 1,
    ephemeral: bool = False,
    start_workers: bool = True,
    worker_settings: dict[str, Any] | None = None,
    **server_settings: Any,
) -> Iterator[Cluster]:
    """A server and `workers` workers with `slots` job slots each on
    127.0.0.1; jobs asking for no cpus and RAM by default, so the limiter
    measured is the slot count, however small the machine."""
    settings: dict[str, Any] = {"job_offer_timeout_seconds": 60, "worker_timeout_seconds": 60}
    settings.update(server_settings)
    cluster = Cluster(root, **settings)
    try:
        cluster.start_server(*(("--ephemeral-store",) if ephemeral else ()))
        names = [f"bench{i}" for i in range(workers)] if start_workers else []
        own = {"worker_max_parallel_jobs": slots, **(worker_settings or {})}
        for name in names:
            cluster.start_worker(name, **own)
        if names:
            # A worker of several processes registers as NAME, NAME/2, ...
            processes = range(2, own.get("worker_processes", 1) + 1)
            cluster.wait_workers(*names, *(f"{n}/{i}" for n in names for i in processes), timeout=60)
        cluster.write_config(
            cluster.client_config,
            port=cluster.port,
            client_settings={"job_default_cpus": 0, "job_default_ram_mb": 0},
        )
        yield cluster
    finally:
        cluster.close()


def which(program: str) -> str | None:
    return shutil.which(program)


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def rss_bytes(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def ratio(value: float, baseline: float) -> float | None:
    return value / baseline if baseline else None
