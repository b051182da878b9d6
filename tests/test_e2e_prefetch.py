"""Prefetch and work stealing end to end: a busy worker holds jobs for its next
free slot; an idle worker takes them back; a draining worker hands them back.
Real server, real workers, real jobs."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.cluster import Cluster, wait_for

# A job that waits (bounded: 60 s) for a file named go in its directory, then
# records that it ran, and where.
GATED = (
    "for i in $(seq 1 1200); do [ -e go ] && break; sleep 0.05; done; [ -e go ] || exit 9; "
    'echo "$KUEUE_JOB_ID $KUEUE_WORKER" >> ran.txt'
)


def jobs(cluster: Cluster) -> dict[int, dict]:
    out = json.loads(cluster.kueue("ls", "--json", "-n", "100").stdout)
    rows = out["jobs"] if isinstance(out, dict) else out
    return {int(j["id"]): j for j in rows}


def submit_gated(cluster: Cluster, work: Path, n: int) -> list[int]:
    out = cluster.kueue("cmd", "--array", f"1-{n}", "sh", "-c", GATED, cwd=work).stdout.split()
    first = int(out[0])
    return list(range(first, first + n)) if len(out) == 1 else [int(x) for x in out]


def held_by(cluster: Cluster, worker: str, job_ids: list[int]) -> list[int]:
    """Jobs offered to `worker` and not started: held for its next free slot."""
    listed = jobs(cluster)
    return [
        j
        for j in job_ids
        if listed[j]["state"] == "JOB_STATE_OFFERED" and listed[j].get("worker_name") == worker
    ]


def ran(work: Path) -> list[tuple[int, str]]:
    path = work / "ran.txt"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(int(a), b) for a, b in (line.split() for line in lines if line)]


def one_slot_holding(
    cluster: Cluster, tmp_path: Path, name: str, jobs_held: int
) -> tuple[subprocess.Popen[bytes], Path, list[int], list[int]]:
    """A server and a worker with one slot that holds `jobs_held` gated jobs
    behind the one it runs: (the worker, the jobs' directory, all ids, held ids)."""
    cluster.start_server()
    worker = cluster.start_worker(name, worker_max_parallel_jobs=1, prefetch_jobs=jobs_held)
    cluster.wait_workers(name)
    work = tmp_path / "work"
    work.mkdir()
    ids = submit_gated(cluster, work, jobs_held + 1)
    wait_for(lambda: len(held_by(cluster, name, ids)) == jobs_held, 60, f"{name} to hold {jobs_held} jobs")
    return worker, work, ids, held_by(cluster, name, ids)


def test_an_idle_worker_takes_back_the_jobs_a_busy_one_holds(cluster: Cluster, tmp_path: Path) -> None:
    # One runs, two are held by the busy worker for its only slot.
    _, work, ids, held = one_slot_holding(cluster, tmp_path, "busy", 2)
    cluster.start_worker("idle", worker_max_parallel_jobs=2, prefetch_jobs=0)
    wait_for(
        lambda: all(jobs(cluster)[j]["state"] == "JOB_STATE_RUNNING" for j in ids),
        60,
        "the held jobs to be taken back and started on the idle worker",
    )
    listed = jobs(cluster)
    assert {listed[j].get("worker_name") for j in held} == {"idle"}
    (work / "go").touch()
    wait_for(lambda: len(ran(work)) == 3, 60, "all three jobs to finish")
    assert cluster.kueue("wait", *map(str, ids)).returncode == 0
    # Each ran exactly once, the held ones on the idle worker.
    assert sorted(j for j, _ in ran(work)) == ids
    assert {w for j, w in ran(work) if j in held} == {"idle"}
    # The history says what happened.
    show = cluster.kueue("show", str(held[0])).stdout
    assert "handed back by busy" in show


def test_a_draining_worker_hands_back_what_it_holds(cluster: Cluster, tmp_path: Path) -> None:
    busy, work, ids, held = one_slot_holding(cluster, tmp_path, "busy", 2)
    running = [j for j in ids if j not in held]
    busy.send_signal(signal.SIGTERM)  # on_sigterm = drain: finish what runs, hand back the rest
    wait_for(
        lambda: all(jobs(cluster)[j]["state"] == "JOB_STATE_PENDING" for j in held),
        60,
        "the held jobs to be handed back",
    )
    assert jobs(cluster)[running[0]]["state"] == "JOB_STATE_RUNNING"
    cluster.start_worker("other", worker_max_parallel_jobs=2)
    (work / "go").touch()
    wait_for(lambda: len(ran(work)) == 3, 60, "all three jobs to finish")
    assert sorted(j for j, _ in ran(work)) == ids
    assert dict(ran(work))[running[0]] == "busy"
    assert {w for j, w in ran(work) if j in held} == {"other"}


def test_held_jobs_start_in_order_as_slots_free(cluster: Cluster, tmp_path: Path) -> None:
    _, work, ids, held = one_slot_holding(cluster, tmp_path, "w1", 3)
    assert all(jobs(cluster)[j].get("held") for j in held)
    table = cluster.kueue("ls", env={"COLUMNS": "200"}).stdout
    assert table.count("waiting for a slot on w1") == 3, table
    (work / "go").touch()
    wait_for(lambda: len(ran(work)) == 4, 60, "all four jobs to finish")
    # One slot: they ran one after the other, in the order they were queued.
    assert [j for j, _ in ran(work)] == ids
    listed = jobs(cluster)
    assert all(listed[j]["state"] == "JOB_STATE_SUCCEEDED" for j in ids)
    # Nobody else was there: no job was handed back or offered twice.
    assert all(int(listed[j].get("attempt", 1)) == 1 for j in ids)
