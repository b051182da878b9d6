#!/usr/bin/env python3
"""What one `kueue run` costs on loopback: queue, dispatch, start, stream, exit.

Starts its own kueue_server and one kueue_worker on 127.0.0.1 (temporary
config and data), then measures:

  a) `kueue run true`, N times one after the other: median and p95 wall time
     per call, beside a local `true` (process spawn) and `python -c "import
     grpc"` (the floor of any Python gRPC client), and `kueue cmd --wait true`;
  b) `seq N | xargs -P P -I{} kueue run sh -c 'echo {}'` (kueue as a
     parallelism limiter) against the same with plain `sh -c`;
  c) output latency: a job prints time stamps; how late each line arrives.

Prints a table and writes JSON (default bench/results/run_overhead.json).

    python bench/run_overhead.py            # full run (a few minutes on 2 cores)
    python bench/run_overhead.py --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from tests.cluster import Cluster, _env  # noqa: E402 - after the path is set

DEFAULT_OUTPUT = REPO / "bench" / "results" / "run_overhead.json"
# Job prints a time stamp this often, this many times, for the latency figure.
LATENCY_INTERVAL = 0.02
LATENCY_LINES = 50
LATENCY_JOB = (
    "import sys, time\n"
    f"for _ in range({LATENCY_LINES}):\n"
    "    sys.stdout.write(repr(time.time()) + '\\n'); sys.stdout.flush()\n"
    f"    time.sleep({LATENCY_INTERVAL})\n"
)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(samples: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "median_s": statistics.median(samples),
        "p95_s": percentile(samples, 95),
        "mean_s": statistics.fmean(samples),
        "min_s": min(samples),
        "max_s": max(samples),
    }


def wall_times(argv: Sequence[str], n: int, env: dict[str, str], cwd: Path) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True)
        samples.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(
                f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr.decode()[-500:]}"
            )
    return samples


def cpu_seconds(procs: Sequence[Any]) -> float:
    """User+system CPU of these processes (psutil.Process) and their reaped children."""
    total = 0.0
    for proc in procs:
        t = proc.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def xargs_run(
    command: str, n: int, parallel: int, env: dict[str, str], cwd: Path, cluster_procs: Sequence[Any]
) -> dict[str, float]:
    """Wall time of `seq n | xargs -P parallel -I{} COMMAND`, and the CPU time
    spent by the calls (clients) and by the server and worker meanwhile."""
    pipeline = f"seq {n} | xargs -P {parallel} -I{{}} {command}"
    clients_before, cluster_before = children_cpu_seconds(), cpu_seconds(cluster_procs)
    start = time.perf_counter()
    result = subprocess.run(["sh", "-c", pipeline], env=env, cwd=cwd, capture_output=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{pipeline} failed ({result.returncode}): {result.stderr.decode()[-500:]}")
    lines = result.stdout.decode().split()
    if sorted(int(x) for x in lines) != list(range(1, n + 1)):
        raise SystemExit(f"{pipeline}: expected 1..{n} once each, got {len(lines)} lines")
    return {
        "total_s": elapsed,
        "client_cpu_s": children_cpu_seconds() - clients_before,
        "cluster_cpu_s": cpu_seconds(cluster_procs) - cluster_before,
    }


def output_latency(kueue: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """How long after the job printed a line `kueue run` has written it."""
    proc = subprocess.Popen(
        [*kueue, "run", sys.executable, "-c", LATENCY_JOB],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    delays = []
    for line in proc.stdout:
        delays.append(time.time() - float(line))
    if proc.wait() != 0 or len(delays) != LATENCY_LINES:
        raise SystemExit(f"latency job failed ({proc.returncode}, {len(delays)} lines)")
    # The first line also pays for the start of the job's Python; steady state is the rest.
    return summary(delays[1:])


def start_cluster(root: Path, slots: int) -> Cluster:
    cluster = Cluster(root, job_offer_timeout_seconds=30)
    cluster.start_server()
    cluster.start_worker("bench", worker_max_parallel_jobs=slots)
    cluster.wait_workers("bench")
    # Jobs ask for no cpus and RAM, so `slots` of them fit the worker however
    # small the machine: the limiter measured is the slot count, as with -P.
    cluster.write_config(
        cluster.client_config,
        port=cluster.port,
        client_settings={"job_default_cpus": 0, "job_default_ram_mb": 0},
    )
    return cluster


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--runs", type=int, help="sequential calls per command (default 50; quick: 3)")
    parser.add_argument("--calls", type=int, help="calls through xargs (default 200; quick: 8)")
    parser.add_argument("--parallel", type=int, default=8, help="xargs -P (default 8)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default {DEFAULT_OUTPUT})"
    )
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 50)
    calls = args.calls or (8 if args.quick else 200)
    parallel = args.parallel

    with tempfile.TemporaryDirectory(prefix="kueue-bench-", ignore_cleanup_errors=True) as tmp:
        results = measure(Path(tmp), runs=runs, calls=calls, parallel=parallel)
    results["quick"] = args.quick
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwrote {args.output}")
    return 0


def measure(work: Path, *, runs: int, calls: int, parallel: int) -> dict[str, Any]:
    env = _env()
    # An installed kueue has its bytecode compiled (pip does it); without the
    # cache every call would compile our modules again and measure that.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cluster = start_cluster(work / "cluster", slots=parallel)
    kueue = [sys.executable, "-m", "kueue_client", "--config", str(cluster.client_config)]

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        log(f"sequential: {runs} calls each ...")
        # One untimed call of each first: page cache and .pyc files warm.
        for argv in (["true"], [sys.executable, "-c", "import grpc"], [*kueue, "run", "true"]):
            wall_times(argv, 1, env, work)
        sequential: dict[str, dict[str, Any]] = {}
        commands: list[tuple[str, list[str]]] = [
            ("local true (subprocess)", ["true"]),
            ('python -c "import grpc"', [sys.executable, "-c", "import grpc"]),
            ("kueue run true", [*kueue, "run", "true"]),
            ("kueue cmd --wait true", [*kueue, "cmd", "--wait", "true"]),
        ]
        for label, command in commands:
            sequential[label] = summary(wall_times(command, runs, env, work))

        log(f"xargs: {calls} calls, -P {parallel} ...")
        kueue_cmd = shlex.join([*kueue, "run", "sh", "-c", "echo {}"])
        cluster_procs = [psutil.Process(p.pid) for p in (cluster.server, *cluster.workers.values()) if p]
        plain = xargs_run("sh -c 'echo {}'", calls, parallel, env, work, cluster_procs)
        via_kueue = xargs_run(kueue_cmd, calls, parallel, env, work, cluster_procs)
        xargs = {
            "calls": calls,
            "parallel": parallel,
            "plain_total_s": plain["total_s"],
            "kueue_total_s": via_kueue["total_s"],
            # Wall time one call holds one of the `parallel` slots.
            "plain_per_call_s": plain["total_s"] * parallel / calls,
            "kueue_per_call_s": via_kueue["total_s"] * parallel / calls,
            "overhead_per_call_s": (via_kueue["total_s"] - plain["total_s"]) * parallel / calls,
            "kueue_calls_per_s": calls / via_kueue["total_s"],
            # Where the time goes when the machine has fewer cores than -P.
            "client_cpu_per_call_s": (via_kueue["client_cpu_s"] - plain["client_cpu_s"]) / calls,
            "server_and_worker_cpu_per_call_s": via_kueue["cluster_cpu_s"] / calls,
        }

        log("output latency ...")
        latency = output_latency(kueue, env, work)
    finally:
        cluster.close()

    floor = sequential['python -c "import grpc"']["median_s"]
    return {
        "benchmark": "run_overhead",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "grpcio": _grpc_version(),
        },
        "sequential": sequential,
        "kueue_run_over_grpc_floor_s": sequential["kueue run true"]["median_s"] - floor,
        "xargs": xargs,
        "output_latency": latency,
    }


def _grpc_version() -> str:
    import grpc

    return grpc.__version__


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"kueue run overhead on loopback ({m['cpus']} cpus, Python {m['python']}, grpcio {m['grpcio']})",
        "",
        f"{'sequential, per call':34} {'median':>11} {'p95':>11}",
    ]
    for label, s in results["sequential"].items():
        lines.append(f"{label:34} {ms(s['median_s']):>11} {ms(s['p95_s']):>11}")
    lines.append(f"{'kueue run over the grpc floor':34} {ms(results['kueue_run_over_grpc_floor_s']):>11}")
    x = results["xargs"]
    lines += [
        "",
        f"seq {x['calls']} | xargs -P {x['parallel']} -I{{}} ... sh -c 'echo {{}}'",
        f"{'':34} {'total':>11} {'per call':>11}",
        f"{'plain sh -c':34} {x['plain_total_s']:>9.2f} s {ms(x['plain_per_call_s']):>11}",
        f"{'kueue run sh -c':34} {x['kueue_total_s']:>9.2f} s {ms(x['kueue_per_call_s']):>11}",
        f"{'overhead of kueue run':34} {'':>11} {ms(x['overhead_per_call_s']):>11}",
        f"{'kueue run calls per second':34} {x['kueue_calls_per_s']:>11.1f}",
        f"{'CPU per call: kueue client':34} {ms(x['client_cpu_per_call_s']):>11}",
        f"{'CPU per call: server + worker':34} {ms(x['server_and_worker_cpu_per_call_s']):>11}",
        "",
    ]
    lat = results["output_latency"]
    lines.append(
        f"output latency (job prints -> kueue run writes): median {ms(lat['median_s']).strip()}, "
        f"p95 {ms(lat['p95_s']).strip()}, max {ms(lat['max_s']).strip()}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
