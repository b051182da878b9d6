"""Chaos: worker processes are killed with SIGKILL, leaving their jobs
running, and restarted while jobs run.

A restarted worker kills the attempts its previous run left behind before it
registers, and the server queues those jobs again. So a job may run more than
once (a lost attempt is run again: at least once), but never twice at the
same time, never twice as the same attempt, and every job ends with the output
of its last attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import psutil
from google.protobuf.timestamp_pb2 import Timestamp

from kueue.v1 import common_pb2
from kueue_client.api import Client
from kueue_worker import orphans
from tests.cluster import Cluster, wait_for

JOBS = 60
CRASHES = 4
WORKERS = ("w1", "w2")


def test_worker_killed_repeatedly_never_runs_a_job_twice_at_once(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    cluster = Cluster(tmp_path / "c", worker_timeout_seconds=5)
    work = tmp_path / "work"
    work.mkdir()
    ran = work / "ran.txt"
    try:
        cluster.start_server()
        for name in WORKERS:
            # Few slots, so the jobs take long enough for crashes to hit them running.
            cluster.start_worker(name, worker_max_parallel_jobs=2)
        cluster.wait_workers(*WORKERS)
        # A line when an attempt starts and one when it ends; every sixth job
        # runs long enough to be still running when its worker comes back.
        script = (
            'echo "$KUEUE_JOB_ID $KUEUE_ATTEMPT" >> ran.txt; '
            "d=0.$((KUEUE_ARRAY_ID % 5)); [ $((KUEUE_ARRAY_ID % 6)) = 0 ] && d=3; sleep $d; "
            'echo "$KUEUE_JOB_ID $KUEUE_ATTEMPT end" >> ran.txt; echo out-$KUEUE_ARRAY_ID'
        )
        ids = [int(x) for x in cluster.kueue("cmd", "--array", f"1-{JOBS}", script, cwd=work).stdout.split()]
        assert len(ids) == JOBS

        def lines() -> int:
            return sum(1 for line in ran.read_text().splitlines() if "end" not in line) if ran.exists() else 0

        for _ in range(CRASHES):
            target = min(lines() + rng.randint(3, 10), JOBS)
            wait_for(lambda target=target: lines() >= target, 60, "more jobs to start")
            time.sleep(rng.uniform(0, 0.3))  # jitter the crash point, not a synchronisation
            victim = rng.choice(WORKERS)
            # The worker only: its jobs live on in their own sessions, as after a crash.
            cluster.workers[victim].kill()
            cluster.workers[victim].wait(timeout=10)
            cluster.start_worker(victim, worker_max_parallel_jobs=2)
            cluster.wait_workers(*WORKERS, timeout=30)

        client = cluster.client()

        def all_final() -> bool:
            out = cluster.kueue("ls", "--json", "-n", "0", check=False)
            if out.returncode != 0:
                return False
            summary = json.loads(out.stdout)["summary"]
            return int(summary.get("succeeded", 0)) + int(summary.get("failed", 0)) == JOBS

        wait_for(all_final, 90, "every job to finish")

        attempts: dict[int, list[int]] = defaultdict(list)
        events: dict[int, list[str]] = defaultdict(list)
        for line in ran.read_text().splitlines():
            job_id, attempt, *end = line.split()
            events[int(job_id)].append(line)
            if not end:
                attempts[int(job_id)].append(int(attempt))
        assert set(attempts) == set(ids)
        reran = {}
        for index, job_id in enumerate(ids, start=1):
            seen = attempts[job_id]
            # Each attempt at most once, in order.
            assert seen == sorted(set(seen)), f"job {job_id} ran as attempts {seen}"
            # Never two at once: nothing of an attempt after the next one
            # started (an attempt killed at the restart has no end line).
            for before, after in zip(events[job_id], events[job_id][1:], strict=False):
                assert int(before.split()[1]) <= int(after.split()[1]), f"job {job_id}: {events[job_id]}"
            assert events[job_id][-1] == f"{job_id} {seen[-1]} end", f"job {job_id}: {events[job_id]}"
            got = client.get_job(job_id)
            assert got.job.state == common_pb2.JOB_STATE_SUCCEEDED, (job_id, got.job.state)
            assert got.stdout_tail.decode() == f"out-{index}\n", (job_id, got.stdout_tail)
            assert got.job.attempt == seen[-1], (job_id, got.job.attempt, seen)
            # The job's history has every attempt; those that ran before the
            # last one ended with their worker lost.
            history = {a.number: a for a in got.job.attempts}
            assert sorted(history) == list(range(1, seen[-1] + 1)), (job_id, list(got.job.attempts))
            assert history[seen[-1]].outcome == common_pb2.ATTEMPT_OUTCOME_FINISHED
            for number in seen[:-1]:
                assert history[number].outcome == common_pb2.ATTEMPT_OUTCOME_WORKER_LOST, history[number]
                assert history[number].HasField("started_at"), history[number]
            if len(seen) > 1:
                reran[job_id] = seen
        client.close()
        jobs = json.loads(cluster.kueue("ls", "--json", "-n", "0").stdout)["jobs"]
        assert len(jobs) == JOBS
        assert all(job["state"] == "JOB_STATE_SUCCEEDED" for job in jobs), [
            (job["id"], job["state"]) for job in jobs if job["state"] != "JOB_STATE_SUCCEEDED"
        ]
        # The history shows every rerun: the job's final attempt number.
        for job_id, seen in reran.items():
            shown = json.loads(cluster.kueue("show", str(job_id), "--json").stdout)
            attempt = int(shown.get("job", shown)["attempt"])
            assert attempt == seen[-1] > 1, (job_id, attempt, seen)
        killed = sum(
            cluster.worker_log(name).count("from a previous run of this worker killed") for name in WORKERS
        )
        print(f"{len(reran)} job(s) ran again; {killed} attempt(s) of crashed workers killed at restart")
    finally:
        cluster.close()
        print(cluster.logs())


# Fault injection, loaded into one worker process through PYTHONPATH: the
# worker is SIGKILLed in the instant after it spawned its first job, before it
# records the process's pid: the window a loaded machine once hit at random
# ("job 48 ran twice at once").
CRASH_AFTER_SPAWN = """
import os
import signal

from kueue_worker import orphans


def record(self, job_id, attempt, pid, *rest):
    os.kill(os.getpid(), signal.SIGKILL)


orphans.Ledger.record = record
"""


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# Timeouts no test waits out: a job that runs again within the test's own
# bound was given up at once, not after the worker or offer timeout.
NEVER = 600


def with_fault(tmp_path: Path, fault: str) -> tuple[Cluster, Path, str]:
    """A cluster with those timeouts, a working directory, and the PYTHONPATH
    that makes a worker run `fault` (a sitecustomize) as it starts."""
    cluster = Cluster(tmp_path / "c", worker_timeout_seconds=NEVER, job_offer_timeout_seconds=NEVER)
    work = tmp_path / "work"
    work.mkdir()
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(fault)
    return cluster, work, f"{faults}{os.pathsep}{Cluster.env()['PYTHONPATH']}"


def wait_registered_again(client: Client, name: str, before: Timestamp) -> None:
    """Until the worker `name` is connected in a session newer than `before`."""

    def registered_again() -> bool:
        return any(w.name == name and w.connected and w.connected_at != before for w in client.list_workers())

    wait_for(registered_again, 60, "the restarted worker to register")


def test_a_job_spawned_but_not_recorded_is_killed_before_the_worker_registers_again(tmp_path: Path) -> None:
    cluster, work, pythonpath = with_fault(tmp_path, CRASH_AFTER_SPAWN)
    leftovers: list[psutil.Process] = []
    try:
        cluster.start_server()
        worker = cluster.start_worker("w1", env={"PYTHONPATH": pythonpath})
        cluster.wait_workers("w1")
        client = cluster.client()
        [first_session] = [w.connected_at for w in client.list_workers() if w.name == "w1"]
        # The first attempt leaves a process in a session of its own too, as a daemon would.
        script = (
            'if [ "$KUEUE_ATTEMPT" = 1 ]; then echo $$ > main.pid; '
            "setsid sleep 1000 & echo $! > escaped.pid; sleep 1001; fi; "
            'echo "attempt $KUEUE_ATTEMPT"'
        )
        job_id = int(cluster.kueue("cmd", script, cwd=work).stdout.split()[0])
        assert worker.wait(timeout=60) == -signal.SIGKILL, cluster.worker_log("w1")
        pid_files = [work / "main.pid", work / "escaped.pid"]
        wait_for(lambda: all(f.exists() and f.read_text().strip() for f in pid_files), 30, "the job's pids")
        pids = [int(f.read_text()) for f in pid_files]
        leftovers += [psutil.Process(pid) for pid in pids]
        assert not any(gone(pid) for pid in pids)
        # The ledger knows the attempt was being spawned, not its pid.
        ledger = orphans.ledger_path(cluster.root / "worker-w1-data", "w1")
        entries = [json.loads(line) for line in ledger.read_text().splitlines()]
        assert {"spawn": [job_id, 1]} in entries
        assert not any("start" in entry for entry in entries), entries

        cluster.start_worker("w1")
        wait_registered_again(client, "w1", first_session)
        # Nothing of the lost attempt runs any more, or the next one would run beside it.
        assert [pid for pid in pids if not gone(pid)] == [], cluster.worker_log("w1")
        assert f"job {job_id} attempt 1 from a previous run of this worker killed" in cluster.worker_log("w1")
        assert "found by its environment" in cluster.worker_log("w1")

        def finished() -> bool:
            return client.get_job(job_id).job.state == common_pb2.JOB_STATE_SUCCEEDED

        # Given up at once: the timeouts are far beyond this bound.
        wait_for(finished, 60, "the job to run again and succeed")
        got = client.get_job(job_id)
        assert got.job.attempt == 2
        assert got.stdout_tail == b"attempt 2\n"
        lost, last = got.job.attempts
        assert lost.outcome == common_pb2.ATTEMPT_OUTCOME_WORKER_LOST, lost
        assert "crashed while it ran" in lost.reason and lost.HasField("started_at"), lost
        assert last.outcome == common_pb2.ATTEMPT_OUTCOME_FINISHED, last
        client.close()
    finally:
        cluster.close()
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()  # only if the test failed: the pid still names that process
        print(cluster.logs())


# Fault injection as above, a step earlier: the worker is SIGKILLed as it is
# about to note in its ledger that it spawns the attempt it was given. Nothing
# of the attempt exists then, not even on the worker's disk.
CRASH_BEFORE_SPAWN = """
import os
import signal

from kueue_worker import orphans


def spawning(self, job_id, attempt):
    os.kill(os.getpid(), signal.SIGKILL)


orphans.Ledger.spawning = spawning
"""


def test_an_attempt_the_restarted_worker_does_not_report_is_given_up_at_once(tmp_path: Path) -> None:
    cluster, work, pythonpath = with_fault(tmp_path, CRASH_BEFORE_SPAWN)
    try:
        cluster.start_server()
        worker = cluster.start_worker("w1", env={"PYTHONPATH": pythonpath})
        cluster.wait_workers("w1")
        client = cluster.client()
        [first] = [w for w in client.list_workers() if w.name == "w1"]
        job_id = int(
            cluster.kueue(
                "cmd", 'echo "$KUEUE_ATTEMPT" >> ran; echo "attempt $KUEUE_ATTEMPT"', cwd=work
            ).stdout
        )
        assert worker.wait(timeout=60) == -signal.SIGKILL, cluster.worker_log("w1")
        # The server placed attempt 1 on w1 and waits for it to start.
        job = client.get_job(job_id).job
        assert (job.state, job.attempt, job.worker_name) == (common_pb2.JOB_STATE_OFFERED, 1, "w1"), job

        # The same worker (same identity) again, knowing nothing of attempt 1.
        cluster.start_worker("w1")
        wait_registered_again(client, "w1", first.connected_at)
        assert [w.id for w in client.list_workers() if w.name == "w1"] == [first.id]

        def finished() -> bool:
            return client.get_job(job_id).job.state == common_pb2.JOB_STATE_SUCCEEDED

        # Given up at once: the timeouts are far beyond this bound.
        wait_for(finished, 60, "the job to run again and succeed")
        got = client.get_job(job_id)
        assert got.job.attempt == 2 and got.stdout_tail == b"attempt 2\n"
        lost, last = got.job.attempts
        assert lost.outcome == common_pb2.ATTEMPT_OUTCOME_WORKER_LOST, lost
        assert lost.reason == "worker w1 restarted without attempt 1" and not lost.HasField("started_at"), (
            lost
        )
        assert last.outcome == common_pb2.ATTEMPT_OUTCOME_FINISHED, last
        # Attempt 1 never ran.
        assert (work / "ran").read_text() == "2\n"
        client.close()
    finally:
        cluster.close()
        print(cluster.logs())
