"""kueue_worker --drain-timeout: a SIGTERM drains, and jobs still running when
the time is up are stopped and handed back (what the systemd unit relies on
to stop within its TimeoutStopSec)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil

from tests.cluster import Cluster, wait_for


def job(cluster: Cluster, job_id: str) -> dict:
    return json.loads(cluster.kueue("show", job_id, "--json").stdout)["job"]


def test_jobs_still_running_at_the_drain_timeout_are_handed_back(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    worker = cluster.start_worker("w1", "--drain-timeout", "1")
    cluster.wait_workers("w1")
    pid_file = tmp_path / "pid"
    (job_id,) = cluster.kueue("cmd", f"echo $$ > {pid_file}; exec sleep 1000", cwd=tmp_path).stdout.split()
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "the job to run")
    pid = int(pid_file.read_text())
    worker.send_signal(signal.SIGTERM)
    # One signal is enough: it drains, gives up after a second, and leaves.
    assert worker.wait(timeout=60) == 0
    wait_for(lambda: job(cluster, job_id)["state"] == "JOB_STATE_PENDING", 30, "the job to be queued again")
    # The job's process went with the worker.
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    log = cluster.worker_log("w1")
    assert "drain timeout (1 s) while draining: stopping the remaining 1 job(s)" in log
    # One SIGTERM, logged once: the stop after the drain does not read as a second.
    assert log.count("SIGTERM received") == 1, log
    assert "drain over: stopping the jobs still running (if any), then leaving" in log


def test_bad_drain_timeout_is_one_line_and_exit_2(cluster: Cluster) -> None:
    cluster.start_server()
    worker = cluster.start_worker("w1", "--drain-timeout", "soon")
    assert worker.wait(timeout=60) == 2
    assert "--drain-timeout: not a number of seconds: 'soon'" in cluster.worker_log("w1")
