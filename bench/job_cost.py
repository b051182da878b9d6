#!/usr/bin/env python3
"""CPU milliseconds per job spent by the server and by the worker, and the
jobs per second, for an array of N `true` on 1 worker with S slots.

A profiling aid for item 1 (throughput): CPU time per job is far steadier
than wall-clock rates on a shared machine, so a change to the per-job path
shows up here even when the rates swing. With --profile DIR it also records
py-spy profiles (raw folded stacks) of both processes; --wall samples
every thread all the time, which shows where a saturated loop waits.

    python bench/job_cost.py [--jobs N] [--slots S] [--profile DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, local_cluster, which
from bench.throughput import array_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--prefetch", type=int, help="worker_settings.prefetch_jobs (default: the config's)")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of server and worker here")
    parser.add_argument(
        "--wall",
        action="store_true",
        help="profile wall time (every thread, waits included) instead of time holding the GIL",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kueue-job-cost-") as tmp:
        work = Path(tmp)
        worker_settings = {} if args.prefetch is None else {"prefetch_jobs": args.prefetch}
        with (
            local_cluster(work / "cluster", slots=args.slots, worker_settings=worker_settings) as cluster,
            cluster.client() as client,
        ):
            assert cluster.server is not None
            pids = {"server": cluster.server.pid, "worker": next(iter(cluster.workers.values())).pid}
            spies: list[subprocess.Popen[bytes]] = []
            if args.profile is not None:
                if which("py-spy") is None:
                    print("py-spy is not installed: pip install py-spy", file=sys.stderr)
                    return 2
                args.profile.mkdir(parents=True, exist_ok=True)
                for name, pid in pids.items():
                    out = args.profile / f"{name}.txt"
                    cmd = ["py-spy", "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "200"]
                    if not args.wall:
                        cmd.append("--gil")
                    spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                time.sleep(1.0)  # py-spy attaches
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            busy_before = machine_busy()
            waited_before = run_queue_wait(pids["worker"])
            after: dict[str, float] = {}
            busy_after: list[tuple[float, float]] = []
            waited_after: list[float | None] = []

            def done() -> None:
                after.update({n: cpu_seconds(p) for n, p in pids.items()})
                busy_after.append(machine_busy())
                waited_after.append(run_queue_wait(pids["worker"]))

            rate = array_rate(client, args.jobs, str(work), on_done=done)
            for spy in spies:
                spy.send_signal(2)
            for spy in spies:
                spy.wait(timeout=60)
    per_job = {name: 1000 * (after[name] - before[name]) / args.jobs for name in pids}
    busy = busy_after[0][0] - busy_before[0]
    idle = 100 * (1 - busy / max(busy_after[0][1] - busy_before[1], 1e-9))
    waited = ""
    if waited_before is not None and waited_after[0] is not None:
        waited = (
            f"; worker's loop waiting for a CPU {1000 * (waited_after[0] - waited_before) / args.jobs:.2f} ms"
        )
    print(
        f"{args.jobs} jobs, {args.slots} slots: {rate:.0f} jobs/s; CPU per job: "
        f"server {per_job['server']:.2f} ms, worker {per_job['worker']:.2f} ms, "
        f"whole machine {1000 * busy / args.jobs:.2f} ms; machine idle {idle:.0f}%{waited}"
    )
    return 0


def run_queue_wait(pid: int) -> float | None:
    """Seconds the process's main thread (the worker's loop) has spent ready
    to run but waiting for a CPU (/proc/PID/schedstat; None where there is none)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def machine_busy() -> tuple[float, float]:
    """CPU seconds the machine spent busy and in all, summed over its CPUs (from /proc/stat)."""
    import psutil

    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), total


if __name__ == "__main__":
    sys.exit(main())
