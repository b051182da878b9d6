"""worker_settings.worker_processes: one kueue_worker run as several worker
processes (NAME, NAME/2, ...), each with its share of the machine, started,
stopped and started again by the first (kueue_worker/supervisor.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from kueue_worker import supervisor as supervisor_module
from tests.cluster import Cluster, wait_for

# A job that runs until the file `go` appears in its directory (at most 100 s).
WAIT_FOR_GO = "for i in $(seq 1 2000); do [ -e go ] && exit 0; sleep 0.05; done; exit 1"

pytestmark = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two worker processes need two CPUs")


def workers(cluster: Cluster) -> dict[str, dict]:
    return {w["name"]: w for w in json.loads(cluster.kueue("workers", "--json").stdout)["workers"]}


def jobs(cluster: Cluster) -> list[dict]:
    return json.loads(cluster.kueue("ls", "--json").stdout)["jobs"]


def processes(supervisor: subprocess.Popen[bytes]) -> dict[str, psutil.Process]:
    """The supervisor's worker processes, by their --process argument."""
    found = {}
    for child in psutil.Process(supervisor.pid).children():
        try:
            cmdline = child.cmdline()
        except psutil.Error:  # gone, or a zombie not yet reaped
            continue
        if "--process" in cmdline:
            found[cmdline[cmdline.index("--process") + 1]] = child
    return found


def start_two_processes(cluster: Cluster, slots: int = 2) -> subprocess.Popen[bytes]:
    """A server, and a worker `w` of two processes (w and w/2) with `slots` in all; its supervisor."""
    cluster.start_server()
    supervisor = cluster.start_worker("w", worker_max_parallel_jobs=slots, worker_processes=2)
    cluster.wait_workers("w", "w/2")
    return supervisor


def test_two_processes_register_share_the_machine_run_jobs_and_drain(
    cluster: Cluster, tmp_path: Path
) -> None:
    supervisor = start_two_processes(cluster, slots=4)
    shown = workers(cluster)
    cores = psutil.cpu_count() or 1
    assert shown["w"]["id"] != shown["w/2"]["id"]
    assert [shown[n]["capacity"]["slots"] for n in ("w", "w/2")] == [2, 2]
    # Their own slots; the machine's CPUs, which both count against.
    assert [shown[n]["capacity"]["cpus"] for n in ("w", "w/2")] == [cores, cores]
    assert [shown[n]["machine"] for n in ("w", "w/2")] == ["w", "w"]
    ids = [cluster.kueue("cmd", "-c", "0", WAIT_FOR_GO, cwd=tmp_path).stdout.strip() for _ in range(4)]

    def all_running() -> list[dict] | None:
        listed = [j for j in jobs(cluster) if str(j["id"]) in ids]
        return listed if all(j["state"] == "JOB_STATE_RUNNING" for j in listed) else None

    running = wait_for(all_running, 60, "the 4 jobs to run")
    # Two slots each: the four jobs run two on each process.
    assert sorted(j["worker_name"] for j in running) == ["w", "w", "w/2", "w/2"]

    supervisor.send_signal(signal.SIGTERM)
    wait_for(lambda: all(w["draining"] for w in workers(cluster).values()), 60, "both processes to drain")
    (tmp_path / "go").touch()
    assert supervisor.wait(timeout=60) == 0
    finished = {str(j["id"]): j for j in jobs(cluster)}
    assert all(finished[i]["state"] == "JOB_STATE_SUCCEEDED" for i in ids), finished
    log = cluster.worker_log("w")
    assert "running as 2 worker processes: w, w/2" in log
    assert log.count("SIGTERM received: passing it on to the worker processes") == 1, log
    # Each process logs under its own label, and drained before it stopped.
    for label in ("kueue_worker[1/2]", "kueue_worker[2/2]"):
        assert f"{label} INFO kueue_worker: SIGTERM received: draining: 2 running job(s) finish" in log, log
        assert f"{label} INFO kueue_worker: stopped" in log, log


def test_a_job_may_take_the_whole_machine_and_the_machine_is_counted_whole(
    cluster: Cluster, tmp_path: Path
) -> None:
    start_two_processes(cluster)
    cores = psutil.cpu_count() or 1
    whole = cluster.kueue("cmd", "-c", str(cores), WAIT_FOR_GO, cwd=tmp_path)
    # More than one process's share, but the machine's: no warning that it could never run.
    assert "could ever fit" not in whole.stderr, whole.stderr
    whole_id = whole.stdout.strip()
    one_id = cluster.kueue("cmd", "-c", "1", "true", cwd=tmp_path).stdout.strip()

    def states() -> dict[str, str]:
        return {str(j["id"]): j["state"] for j in jobs(cluster)}

    wait_for(lambda: states()[whole_id] == "JOB_STATE_RUNNING", 60, "the whole-machine job to run")
    # The other process has a free slot, but the machine has no free CPU: the
    # job waits on the server, or held by the process that runs the whole
    # machine's job, for after it.
    listed = {str(j["id"]): j for j in jobs(cluster)}
    one = listed[one_id]
    assert one["state"] in ("JOB_STATE_PENDING", "JOB_STATE_OFFERED"), one
    if one["state"] == "JOB_STATE_OFFERED":
        assert one["worker_name"] == listed[whole_id]["worker_name"], listed
    (tmp_path / "go").touch()
    wait_for(
        lambda: {states()[whole_id], states()[one_id]} == {"JOB_STATE_SUCCEEDED"}, 60, "both jobs to succeed"
    )


def test_a_process_killed_by_a_signal_is_started_again_and_its_job_runs_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    supervisor = start_two_processes(cluster)
    first_id = workers(cluster)["w/2"]["id"]
    registered = cluster.worker_log("w").count(" as w/2, id ")
    marks = tmp_path / "marks"
    ids = [
        cluster.kueue(
            "cmd",
            "-c",
            "0",
            f'echo "$KUEUE_WORKER $KUEUE_ATTEMPT $$" >> {marks}; {WAIT_FOR_GO}',
            cwd=tmp_path,
        ).stdout.strip()
        for _ in range(2)
    ]

    def lines() -> list[list[str]]:
        return [line.split() for line in marks.read_text().splitlines()] if marks.exists() else []

    wait_for(lambda: sorted(m[0] for m in lines()) == ["w", "w/2"], 60, "a job on each process")
    orphan = next(int(m[2]) for m in lines() if m[0] == "w/2")
    # Process 2/2 dies as in a crash: its job goes on running, unwatched.
    old = processes(supervisor)["2/2"]
    old.kill()

    def replaced() -> bool:
        new = processes(supervisor).get("2/2")
        return new is not None and new.pid != old.pid

    wait_for(replaced, 60, "process 2/2 to be started again")
    wait_for(lambda: cluster.worker_log("w").count(" as w/2, id ") > registered, 60, "w/2 to register again")
    back = workers(cluster)["w/2"]
    assert back["id"] == first_id and back["connected"]  # the same worker, back
    assert "worker process w/2 was killed by SIGKILL: starting it again" in cluster.worker_log("w")
    # Started again, it killed the job its crash left behind, which runs a second time.
    wait_for(lambda: ["w/2", "2"] in [m[:2] for m in lines()], 60, "the job's second attempt")
    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
    (tmp_path / "go").touch()
    finished = {str(j["id"]): j for j in wait_for(lambda: done(cluster, ids), 60, "both jobs to succeed")}
    assert sorted(int(finished[i].get("attempt", 1)) for i in ids) == [1, 2], finished
    assert supervisor.poll() is None
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0


def test_started_with_fewer_processes_it_kills_what_a_dropped_one_left_running(
    cluster: Cluster, tmp_path: Path
) -> None:
    supervisor = start_two_processes(cluster)
    marks = tmp_path / "marks"
    for _ in range(2):
        cluster.kueue("cmd", "-c", "0", f'echo "$KUEUE_WORKER $$" >> {marks}; {WAIT_FOR_GO}', cwd=tmp_path)

    def lines() -> list[list[str]]:
        return [line.split() for line in marks.read_text().splitlines()] if marks.exists() else []

    wait_for(lambda: sorted(m[0] for m in lines()) == ["w", "w/2"], 60, "a job on each process")
    orphan = next(int(m[1]) for m in lines() if m[0] == "w/2")
    # The whole worker dies at once, as in a crash: its jobs run on, unwatched.
    children = list(processes(supervisor).values())
    supervisor.kill()
    supervisor.wait(timeout=30)
    for child in children:
        child.kill()
    psutil.wait_procs(children, timeout=30)
    assert psutil.pid_exists(orphan)
    # Started again as one process: no w/2 will run to reap its job, so w does.
    cluster.start_worker("w", worker_max_parallel_jobs=2)

    def gone() -> bool:
        return not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE

    wait_for(gone, 60, "the job w/2 left running to be killed")
    cluster.wait_workers("w")
    log = cluster.worker_log("w")
    # Each process's job: w's by w itself, w/2's by w for it.
    assert log.count("from a previous run of this worker killed") == 2, log
    assert (
        "worker process w/2 is not run any more (1 process(es) now): the 1 job(s) it left running were ended"
    ) in log, log


def done(cluster: Cluster, ids: list[str]) -> list[dict] | None:
    listed = [j for j in jobs(cluster) if str(j["id"]) in ids]
    return listed if all(j["state"] == "JOB_STATE_SUCCEEDED" for j in listed) else None


def test_the_processes_stop_when_the_supervisor_is_killed(cluster: Cluster) -> None:
    supervisor = start_two_processes(cluster)
    children = list(processes(supervisor).values())
    assert len(children) == 2
    supervisor.kill()
    supervisor.wait(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=60)
    assert not alive
    log = cluster.worker_log("w")
    assert log.count("the supervisor of this worker's processes is gone: stopping as on SIGTERM") == 2, log


def test_a_process_that_cannot_start_stops_the_worker(cluster: Cluster) -> None:
    first = start_two_processes(cluster)
    # The same worker again: each of its processes finds its name taken.
    second = cluster.run_worker_again("w")
    assert second.returncode == 1, second.stderr
    assert "a kueue_worker named 'w" in second.stderr
    assert "exited with status 1: stopping the other worker processes" in second.stderr
    # The first one is untouched.
    assert first.poll() is None
    assert len(processes(first)) == 2
    assert all(w["connected"] for w in workers(cluster).values())


def test_more_processes_than_cpus_runs_one_per_cpu_with_a_warning(cluster: Cluster) -> None:
    # A config shared by machines of all sizes: this one runs what it can.
    cluster.start_server()
    cores = psutil.cpu_count() or 1
    worker = cluster.start_worker("w", worker_max_parallel_jobs=cores + 1, worker_processes=cores + 1)
    names = ["w", *(f"w/{i}" for i in range(2, cores + 1))]
    cluster.wait_workers(*names)
    assert sorted(workers(cluster)) == sorted(names)
    assert (
        f"worker_settings.worker_processes is {cores + 1} but this machine has {cores} CPU(s): "
        f"running {cores} worker process(es), one per CPU"
    ) in cluster.worker_log("w")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def test_a_process_killed_again_and_again_stops_the_worker(cluster: Cluster) -> None:
    supervisor = start_two_processes(cluster)
    for n in range(1, supervisor_module.QUICK_DEATHS + 1):
        victim = wait_for(lambda: processes(supervisor).get("2/2"), 60, f"process 2/2, start {n}")
        victim.kill()
        if n < supervisor_module.QUICK_DEATHS:
            wait_for(
                lambda v=victim: processes(supervisor).get("2/2", v).pid != v.pid, 60, "a new process 2/2"
            )
    assert supervisor.wait(timeout=60) == 1
    log = cluster.worker_log("w")
    assert (
        f"worker process w/2 was killed by SIGKILL {supervisor_module.QUICK_DEATHS} times in a row, "
        "each within 60 s of its start: stopping the other worker processes"
    ) in log, log
    assert "kueue_worker[1/2] INFO kueue_worker: stopped" in log, log


def test_one_drain_command_drains_every_process(cluster: Cluster) -> None:
    start_two_processes(cluster)
    # The worker's name stands for all its processes.
    assert cluster.kueue("drain", "w").stdout.splitlines() == [
        "worker w is drained: no new jobs; its 0 running job(s) go on",
        "worker w/2 is drained: no new jobs; its 0 running job(s) go on",
    ]
    assert cluster.kueue("undrain", "w").stdout.splitlines() == [
        "worker w takes new jobs again",
        "worker w/2 takes new jobs again",
    ]
    drained = cluster.kueue("drain", "w", "nope", "w/2", check=False)
    assert drained.returncode == 2, drained
    assert drained.stdout.splitlines() == [
        "worker w is drained: no new jobs; its 0 running job(s) go on",
        "worker w/2 is drained: no new jobs; its 0 running job(s) go on",
    ]
    assert drained.stderr.strip() == "kueue: no worker 'nope'"
    assert all(w["draining"] for w in workers(cluster).values())
    undrained = cluster.kueue("undrain", "w", "w/2")
    assert undrained.stdout.splitlines() == [
        "worker w takes new jobs again",
        "worker w/2 takes new jobs again",
    ]
    assert not any(w.get("draining") for w in workers(cluster).values())
