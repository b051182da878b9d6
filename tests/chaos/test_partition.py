"""A worker cut off from the server longer than the timeout: its job runs
elsewhere; when it comes back, its stale attempt is killed and its late
result ignored (fencing by attempt number). Cut off loudly (connections
reset) or silently (nothing goes through, connections stay open: the server
learns only from the missing heartbeats)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil
import pytest

from tests.cluster import Cluster, wait_for, worker_behind_relay


def show(cluster: Cluster, job_id: str) -> dict:
    return json.loads(cluster.kueue("show", job_id, "--json").stdout)["job"]


@pytest.mark.parametrize("silent", [False, True], ids=["cut", "silent"])
def test_partitioned_worker_is_fenced_off(tmp_path: Path, silent: bool) -> None:
    marks = tmp_path / "marks"
    with worker_behind_relay(tmp_path / "c", "far", worker_timeout_seconds=3) as (cluster, relay):
        script = (
            f'echo "$KUEUE_WORKER $KUEUE_ATTEMPT $$" >> {marks}; '
            'if [ "$KUEUE_WORKER" = far ]; then while :; do sleep 0.1; done; fi; echo finished'
        )
        (job_id,) = cluster.kueue("cmd", script, cwd=tmp_path).stdout.split()
        wait_for(lambda: marks.exists() and "far 1" in marks.read_text(), 30, "the job to start on 'far'")
        stale_pid = int(marks.read_text().split()[2])

        if silent:
            relay.pause()
        else:
            relay.cut()
        cluster.start_worker("near")
        job = wait_for(
            lambda: (j := show(cluster, job_id))["state"] == "JOB_STATE_SUCCEEDED" and j,
            60,
            "the job to be requeued after the timeout and finish on 'near'",
        )
        assert job["worker_name"] == "near" and job["attempt"] == 2
        if silent:
            # No stream ended: the server gave 'far' up for its missing heartbeats alone.
            log = cluster.server_log()
            lost, ended = log.find("worker far lost (silent for"), log.find("worker far disconnected")
            assert lost >= 0 and (ended == -1 or lost < ended), log[-5000:]
        # The cut-off attempt is still running: nobody could tell it to stop.
        assert psutil.pid_exists(stale_pid)

        if silent:
            relay.resume()
        else:
            relay.heal()

        def stale_gone() -> bool:
            try:
                return psutil.Process(stale_pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(stale_gone, 60, "the stale attempt to be killed when 'far' reconnects")
        cluster.wait_workers("far", "near")
        job = show(cluster, job_id)
        assert job["state"] == "JOB_STATE_SUCCEEDED"
        assert job["worker_name"] == "near" and job["attempt"] == 2 and job.get("exit_code", 0) == 0
        assert cluster.kueue("log", job_id).stdout == "finished\n"
        # Each attempt started once: the stale one on 'far', the current one on 'near'.
        lines = marks.read_text().splitlines()
        assert len(lines) == 2 and lines[0] == f"far 1 {stale_pid}" and lines[1].startswith("near 2 ")
        print(cluster.logs())


def test_a_worker_back_from_a_partition_never_runs_two_attempts_of_a_job_at_once(tmp_path: Path) -> None:
    # One worker, stopped past its timeout and resumed: the server gives the
    # job's next attempt to the same worker, which must end the stale one first.
    cluster = Cluster(tmp_path / "c", worker_timeout_seconds=3)
    marks = tmp_path / "marks"
    try:
        cluster.start_server()
        worker = cluster.start_worker("w1")
        cluster.wait_workers("w1")
        script = (
            f'echo "start $KUEUE_ATTEMPT" >> {marks}; '
            'if [ "$KUEUE_ATTEMPT" = 1 ]; then '
            f'trap "echo end 1 >> {marks}; exit 0" TERM; while :; do sleep 0.05; done; fi'
        )
        (job_id,) = cluster.kueue("cmd", script, cwd=tmp_path).stdout.split()
        wait_for(lambda: marks.exists() and "start 1" in marks.read_text(), 30, "attempt 1 to start")
        worker.send_signal(signal.SIGSTOP)  # the worker only: its job runs on in its own session
        try:
            wait_for(lambda: "worker w1 lost" in cluster.server_log(), 60, "the server to give w1 up")
        finally:
            worker.send_signal(signal.SIGCONT)
        job = wait_for(
            lambda: (j := show(cluster, job_id))["state"] == "JOB_STATE_SUCCEEDED" and j,
            60,
            "attempt 2 to run and finish on w1",
        )
        assert job["worker_name"] == "w1" and job["attempt"] == 2
        assert marks.read_text().splitlines() == ["start 1", "end 1", "start 2"]
    finally:
        cluster.close()
        print(cluster.logs())
