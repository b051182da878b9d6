"""Draining: by an operator (kueue drain/undrain) and by a worker on SIGTERM."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil

from tests.cluster import Cluster, wait_for


def state(cluster: Cluster, job_id: str) -> str:
    return json.loads(cluster.kueue("show", job_id, "--json").stdout)["job"]["state"]


def draining(cluster: Cluster, name: str) -> bool:
    workers = json.loads(cluster.kueue("workers", "--json").stdout)["workers"]
    return any(w["name"] == name and w.get("draining", False) for w in workers)


def test_drain_and_undrain_by_an_operator(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    assert "drained" in cluster.kueue("drain", "w1").stdout
    assert draining(cluster, "w1")
    (job_id,) = cluster.kueue("cmd", "echo", "later", cwd=tmp_path).stdout.split()
    # Nothing is offered to a drained worker: the job stays pending while it is.
    assert state(cluster, job_id) == "JOB_STATE_PENDING"
    assert "no worker" in cluster.kueue("cmd", "true", cwd=tmp_path).stderr
    # The drain outlives a crash of the server: nothing is offered after it either.
    cluster.stop_server(signal.SIGKILL)
    cluster.start_server()
    cluster.wait_workers("w1")
    assert draining(cluster, "w1")
    (after,) = cluster.kueue("cmd", "echo", "after", cwd=tmp_path).stdout.split()
    assert state(cluster, job_id) == state(cluster, after) == "JOB_STATE_PENDING"
    cluster.kueue("undrain", "w1")
    wait_for(lambda: state(cluster, after) == "JOB_STATE_SUCCEEDED", 30, "the job to run after undrain")
    wait_for(lambda: state(cluster, job_id) == "JOB_STATE_SUCCEEDED", 30, "the job to run after undrain")
    unknown = cluster.kueue("drain", "nope", check=False)
    assert unknown.returncode != 0 and "no worker" in unknown.stderr


def test_sigterm_drains_the_worker_by_default(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    worker = cluster.start_worker("w1")
    cluster.wait_workers("w1")
    flag = tmp_path / "go"
    (running,) = cluster.kueue(
        "cmd", f"while [ ! -e {flag} ]; do sleep 0.05; done; echo drained-ok", cwd=tmp_path
    ).stdout.split()
    wait_for(lambda: state(cluster, running) == "JOB_STATE_RUNNING", 30, "the job to run")
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: draining(cluster, "w1"), 30, "the worker to say it is draining")
    (waiting,) = cluster.kueue("cmd", "echo", "not here", cwd=tmp_path).stdout.split()
    assert worker.poll() is None and state(cluster, running) == "JOB_STATE_RUNNING"
    flag.touch()
    assert worker.wait(timeout=60) == 0
    job = json.loads(cluster.kueue("show", running, "--json").stdout)["job"]
    assert job["state"] == "JOB_STATE_SUCCEEDED" and job["attempt"] == 1
    assert cluster.kueue("log", running).stdout == "drained-ok\n"
    # The job submitted while draining was never taken.
    assert state(cluster, waiting) == "JOB_STATE_PENDING"


def test_second_sigterm_while_draining_hands_the_jobs_back(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    worker = cluster.start_worker("w1")
    cluster.wait_workers("w1")
    pid_file = tmp_path / "pid"
    (job_id,) = cluster.kueue("cmd", f"echo $$ > {pid_file}; exec sleep 1000", cwd=tmp_path).stdout.split()
    wait_for(lambda: state(cluster, job_id) == "JOB_STATE_RUNNING", 30, "the job to run")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the job's pid")
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: draining(cluster, "w1"), 30, "the worker to drain")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    # Stopped and queued again at once (not failed, not after the timeout).
    wait_for(lambda: state(cluster, job_id) == "JOB_STATE_PENDING", 30, "the job to be queued again")
    # Its process is gone too, not left behind unrecorded.
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
