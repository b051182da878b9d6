#!/usr/bin/env python3
"""What live views (`kueue ls --watch`, `kueue top`) cost the server.

Starts its own kueue_server on 127.0.0.1 (temporary config and data), keeps
100 000 jobs queued, and lets fake workers in this process take jobs as fast
as the server hands them out: each accepts an offer and reports it finished
at once, so the rate of finished jobs is the server's dispatch rate (offer,
commit, finish, commit, acknowledge). That rate and the server's CPU time per
job are measured in alternating phases:

  none      no watcher
  3 live    three WatchList readers in another process, reading everything:
            the newest 50 jobs (`ls --watch`), the running ones (`ls -w -r`,
            which changes with every job) and the newest 30 with the workers
            (`top`)
  3 stalled the same three streams opened and never read (transport stalled)

Each watcher phase is compared with the mean of the baseline phases around
it: a ratio of 1.00 means the watchers cost nothing measurable.

Also timed, in CPU time of this process: drawing one screen of `kueue top` (20 workers,
a window of 1000 jobs of which the screen shows what fits) and of
`kueue ls --watch`, on a 200x60 terminal.

Prints a table and writes JSON (default bench/results/live_view_cost.json).

    python bench/live_view_cost.py           # full run (about 3 minutes on 2 cores)
    python bench/live_view_cost.py --quick   # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
import psutil  # noqa: E402

from kueue import auth  # noqa: E402
from kueue.rpc import CHANNEL_OPTIONS  # noqa: E402
from kueue.v1 import common_pb2, worker_service_pb2_grpc  # noqa: E402
from kueue.v1 import job_service_pb2 as jpb  # noqa: E402
from kueue.v1 import worker_service_pb2 as wpb  # noqa: E402
from tests.cluster import Cluster, _env, wait_for  # noqa: E402

DEFAULT_OUTPUT = REPO / "bench" / "results" / "live_view_cost.json"
WATCH_LIST = "/kueue.v1.JobService/WatchList"
CONNECT = "/kueue.v1.WorkerService/Connect"
SUBMIT_BATCH = 10_000
TOP_UP_ROUNDS = 20
FAKE_WORKERS = 4
SLOTS_PER_WORKER = 25
# The three live views of a phase: (what, request).
VIEWS = [
    ("ls --watch", jpb.WatchListRequest(limit=50)),
    ("ls --watch --running", jpb.WatchListRequest(limit=50, states=[common_pb2.JOB_STATE_RUNNING])),
    ("top", jpb.WatchListRequest(limit=30, include_workers=True)),
]


# ---------------------------------------------------------------- fake workers


class FakeWorkers:
    """Workers that finish every job the moment it is offered, on a loop of
    their own in a thread; `finished` counts acknowledged finishes."""

    def __init__(self, address: str, secret: str, count: int, slots: int) -> None:
        self.address, self.secret, self.count, self.slots = address, secret, count, slots
        self.finished = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("fake workers did not register")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        registered = [asyncio.Event() for _ in range(self.count)]
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            tasks = [asyncio.create_task(self._worker(stub, i, registered[i])) for i in range(self.count)]
            for event in registered:
                await event.wait()
            self._ready.set()
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self, stub: Any, index: int, registered: asyncio.Event) -> None:
        outbox: asyncio.Queue[wpb.ConnectRequest] = asyncio.Queue()
        outbox.put_nowait(
            wpb.ConnectRequest(
                register=wpb.Register(
                    worker_id=f"bench-worker-{index}",
                    name=f"bench{index:02}",
                    system=common_pb2.SystemInfo(hostname=f"bench{index:02}", cpu_cores=64),
                    capacity=common_pb2.Resources(slots=self.slots, cpus=10_000, ram_mb=1 << 30),
                    version="bench",
                )
            )
        )

        async def requests() -> AsyncIterator[wpb.ConnectRequest]:
            while True:
                yield await outbox.get()

        async def heartbeats() -> None:
            while True:
                await asyncio.sleep(5)
                outbox.put_nowait(wpb.ConnectRequest(heartbeat=wpb.Heartbeat()))

        beating = asyncio.create_task(heartbeats())
        call = stub.Connect(requests(), metadata=auth.metadata(self.secret, CONNECT))
        try:
            async for msg in call:
                kind = msg.WhichOneof("msg")
                if kind == "registered":
                    registered.set()
                elif kind == "assign":
                    job, attempt = msg.assign.job_id, msg.assign.attempt
                    outbox.put_nowait(
                        wpb.ConnectRequest(
                            assignment_reply=wpb.AssignmentReply(job_id=job, attempt=attempt, accepted=True)
                        )
                    )
                    outbox.put_nowait(
                        wpb.ConnectRequest(
                            finished=wpb.Finished(
                                job_id=job, attempt=attempt, exit_code=0, run_time_seconds=0.01
                            )
                        )
                    )
                elif kind == "finished_ack":
                    self.finished += 1
        finally:
            beating.cancel()
            call.cancel()


# ---------------------------------------------------------------- watchers


def reader_main(address: str, secret: str) -> int:
    """`--reader`: read the VIEWS streams until SIGTERM, then print what came as JSON."""
    stats = {what: {"messages": 0, "bytes": 0, "jobs": 0} for what, _ in VIEWS}
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    calls = []

    def read(what: str, request: jpb.WatchListRequest) -> None:
        stub = channel.unary_stream(WATCH_LIST, request_serializer=None, response_deserializer=None)
        call = stub(request.SerializeToString(), metadata=auth.metadata(secret, WATCH_LIST))
        calls.append(call)
        try:
            for raw in call:
                msg = jpb.WatchListResponse.FromString(raw)
                s = stats[what]
                s["messages"] += 1
                s["bytes"] += len(raw)
                s["jobs"] += len(msg.jobs)
        except grpc.RpcError:
            pass

    threads = [threading.Thread(target=read, args=view, daemon=True) for view in VIEWS]
    for thread in threads:
        thread.start()
    print("reading", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    for call in calls:
        call.cancel()
    print(json.dumps(stats), flush=True)
    return 0


class Readers:
    """The three live views, read in a process of their own."""

    def __init__(self, address: str, secret: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--reader", address, secret],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "reading":
            raise RuntimeError("the watcher process did not start")

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])


class Stalled:
    """The same three streams, opened and never read; the transport grants
    no window beyond 64 KiB, so they stall on the server's side."""

    def __init__(self, address: str, secret: str) -> None:
        options = [*CHANNEL_OPTIONS, ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)]
        self.channel = grpc.insecure_channel(address, options=options)
        stub = self.channel.unary_stream(WATCH_LIST, request_serializer=None, response_deserializer=None)
        self.calls = [
            stub(request.SerializeToString(), metadata=auth.metadata(secret, WATCH_LIST))
            for _, request in VIEWS
        ]

    def stop(self) -> dict[str, Any]:
        for call in self.calls:
            call.cancel()
        self.channel.close()
        return {}


# ---------------------------------------------------------------- measuring


def top_up(client: Any, queued: int) -> float:
    """Submit jobs until `queued` are pending; returns the seconds it took."""
    from kueue_client import job_spec

    started = time.perf_counter()
    spec = job_spec(["true"])
    # Bounded: the workers drain the queue while we fill it, and with a small
    # queue (--quick) they may keep it just below `queued` for a long time.
    for _ in range(TOP_UP_ROUNDS):
        pending = client.list_jobs(["pending"], limit=1).matching
        if pending >= queued * 0.95:
            break
        client.submit(spec, [{}] * min(SUBMIT_BATCH, queued - pending))
    return time.perf_counter() - started


def phase(
    name: str, workers: FakeWorkers, server: psutil.Process, seconds: float, warmup: float, watchers: Any
) -> dict[str, Any]:
    time.sleep(warmup)
    cpu0, done0, t0 = _cpu(server), workers.finished, time.perf_counter()
    time.sleep(seconds)
    cpu1, done1, t1 = _cpu(server), workers.finished, time.perf_counter()
    read = watchers.stop() if watchers is not None else {}
    jobs = done1 - done0
    return {
        "phase": name,
        "jobs": jobs,
        "seconds": t1 - t0,
        "jobs_per_s": jobs / (t1 - t0),
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_ms_per_job": 1000 * (cpu1 - cpu0) / jobs if jobs else None,
        "watchers": read,
    }


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def measure(work: Path, *, queued: int, seconds: float, warmup: float, rounds: int) -> dict[str, Any]:
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    cluster = Cluster(
        work / "cluster",
        global_max_parallel_jobs=FAKE_WORKERS * SLOTS_PER_WORKER,
        worker_timeout_seconds=300,
        job_offer_timeout_seconds=300,
    )
    cluster.start_server()
    address = f"127.0.0.1:{cluster.port}"
    client = cluster.client()
    workers = FakeWorkers(address, cluster.secret, FAKE_WORKERS, SLOTS_PER_WORKER)
    phases: list[dict[str, Any]] = []
    try:
        log(f"queueing {queued} jobs...")
        submit_s = top_up(client, queued)
        log(f"  {submit_s:.1f} s")
        server = psutil.Process(cluster.server.pid)  # type: ignore[union-attr]
        workers.start()
        plan = ["none"] + ["3 live", "none", "3 stalled", "none"] * rounds
        for name in plan:
            watchers: Any = None
            if name == "3 live":
                watchers = Readers(address, cluster.secret)
            elif name == "3 stalled":
                watchers = Stalled(address, cluster.secret)
            # After the watchers are up: starting the reader process takes
            # long enough on a slow machine for the workers to empty a small
            # queue, and a phase over an empty queue measures nothing.
            top_up(client, queued)
            result = phase(name, workers, server, seconds, warmup, watchers)
            log(f"  {name:10} {result['jobs_per_s']:7.0f} jobs/s")
            phases.append(result)
        wait_for(lambda: cluster.server is not None and cluster.server.poll() is None, 1, "the server alive")
    finally:
        workers.stop()
        client.close()
        cluster.close()
    return {"queued": queued, "submit_seconds_first_fill": submit_s, "phases": phases, **ratios(phases)}


def ratios(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Each watcher phase against the mean of the baselines just before and after it."""
    out: dict[str, list[float]] = {"3 live": [], "3 stalled": []}
    cpu: dict[str, list[float]] = {"3 live": [], "3 stalled": []}
    for i, p in enumerate(phases):
        if p["phase"] == "none" or i == 0 or i + 1 >= len(phases):
            continue
        around = [phases[i - 1], phases[i + 1]]
        base = statistics.fmean(q["jobs_per_s"] for q in around)
        out[p["phase"]].append(p["jobs_per_s"] / base)
        base_cpu = [q["server_cpu_ms_per_job"] for q in around if q["server_cpu_ms_per_job"]]
        if base_cpu and p["server_cpu_ms_per_job"]:
            cpu[p["phase"]].append(p["server_cpu_ms_per_job"] / statistics.fmean(base_cpu))
    return {
        "rate_ratio": {k: statistics.fmean(v) for k, v in out.items() if v},
        "rate_ratios_each": out,
        "cpu_per_job_ratio": {k: statistics.fmean(v) for k, v in cpu.items() if v},
    }


def render_cost(runs: int) -> dict[str, Any]:
    """CPU milliseconds to draw one screen, median of `runs` (rich, to a
    string). CPU time, not wall time: other work on the machine does not
    count."""
    import io

    from rich.console import Console

    from kueue.timestamps import timestamp
    from kueue_client import live_views
    from kueue_client.live_state import Snapshot

    now = time.time()
    spec = common_pb2.JobSpec(command=["python", "sim.py", "--seed", "7"], cwd="/home/user/project/runs")
    jobs = [
        common_pb2.Job(id=i, state=common_pb2.JOB_STATE_RUNNING, spec=spec, worker_name=f"node{i % 20:02}",
                       started_at=timestamp(now - i))
        for i in range(1, 1001)
    ]  # fmt: skip
    workers = [
        common_pb2.Worker(
            id=f"w{i}",
            name=f"node{i:02}",
            connected=True,
            system=common_pb2.SystemInfo(cpu_cores=16, load_1=4, uptime_seconds=99999),
            capacity=common_pb2.Resources(slots=8, cpus=16, ram_mb=64000),
            running_jobs=8,
        )
        for i in range(20)
    ]
    summary = common_pb2.JobSummary(pending=9000, running=160, succeeded=840, average_run_time_seconds=60)
    snap = Snapshot(jobs, summary, 10_000, workers, True, "")
    out: dict[str, Any] = {"terminal": "200x60", "workers": len(workers), "window": len(jobs)}
    for name, screen in (("top", live_views.top_screen), ("ls --watch", live_views.ls_screen)):
        frame = live_views.Frame(f"kueue {name}", "server:11236")
        samples = []
        for _ in range(runs):
            console = Console(
                width=200, height=60, file=io.StringIO(), color_system="truecolor", force_terminal=True
            )
            started = time.process_time()
            console.print(screen(snap, frame, 200, 60, now))
            samples.append(time.process_time() - started)
        out[name] = {"median_ms": 1000 * statistics.median(samples), "max_ms": 1000 * max(samples)}
    return out


def render(results: dict[str, Any]) -> str:
    lines = [
        f"live view cost: {results['queued']} jobs queued, {FAKE_WORKERS} fake workers x "
        f"{SLOTS_PER_WORKER} slots ({results['machine']['cpus']} cpus, Python {results['machine']['python']})",
        "",
        f"{'phase':<10} {'jobs/s':>8} {'server CPU ms/job':>18} {'watcher messages':>17}",
    ]
    for p in results["phases"]:
        messages = sum(w.get("messages", 0) for w in p["watchers"].values()) if p["watchers"] else 0
        cpu = p["server_cpu_ms_per_job"]
        lines.append(
            f"{p['phase']:<10} {p['jobs_per_s']:>8.0f} {'-' if cpu is None else f'{cpu:.2f}':>18} "
            f"{messages if p['phase'] == '3 live' else '-':>17}"
        )
    lines.append("")
    for name, ratio in results["rate_ratio"].items():
        cpu = results["cpu_per_job_ratio"].get(name)
        cpu_text = f", server CPU per job x{cpu:.2f}" if cpu else ""
        lines.append(f"dispatch rate with {name} watchers / without: {ratio:.2f}{cpu_text}")
    r = results["render"]
    lines.append(
        f"drawing one screen ({r['terminal']}, {r['workers']} workers, {r['window']} jobs in the window): "
        f"top {r['top']['median_ms']:.0f} ms, ls --watch {r['ls --watch']['median_ms']:.0f} ms CPU (median)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--queued", type=int, help="jobs kept queued (default 100000; quick: 5000)")
    parser.add_argument("--seconds", type=float, help="length of a phase (default 15; quick: 1)")
    parser.add_argument("--rounds", type=int, help="live/stalled rounds (default 2; quick: 1)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--reader", nargs=2, metavar=("ADDRESS", "SECRET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reader:
        return reader_main(*args.reader)
    queued = args.queued or (5000 if args.quick else 100_000)
    seconds = args.seconds or (1.0 if args.quick else 15.0)
    rounds = args.rounds or (1 if args.quick else 2)
    with tempfile.TemporaryDirectory(prefix="kueue-bench-") as tmp:
        results = {
            "benchmark": "live_view_cost",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": args.quick,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "grpcio": grpc.__version__,
            },
            **measure(
                Path(tmp), queued=queued, seconds=seconds, warmup=0.5 if args.quick else 2.0, rounds=rounds
            ),
            "render": render_cost(5 if args.quick else 50),
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
