"""Chaos: the server is killed with SIGKILL and restarted while jobs run.

Every job must finish exactly once, with its exit code and its output.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

from tests.cluster import Cluster, wait_for

JOBS = 240
CRASHES = 4


def test_server_killed_repeatedly_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    cluster = Cluster(tmp_path / "c", worker_timeout_seconds=60)
    work = tmp_path / "work"
    work.mkdir()
    try:
        cluster.start_server()
        cluster.start_worker("w1", worker_max_parallel_jobs=6)
        cluster.start_worker("w2", worker_max_parallel_jobs=6)
        cluster.wait_workers("w1", "w2")
        script = (
            'echo "$KUEUE_JOB_ID" >> ran.txt; sleep 0.$((KUEUE_ARRAY_ID % 4)); '
            'echo "out-$KUEUE_ARRAY_ID"; exit $((KUEUE_ARRAY_ID % 3))'
        )
        ids = [int(x) for x in cluster.kueue("cmd", "--array", f"1-{JOBS}", script, cwd=work).stdout.split()]
        assert len(ids) == JOBS
        ran = work / "ran.txt"
        for _ in range(CRASHES):
            before = len(ran.read_text().split()) if ran.exists() else 0
            # Crash at a random moment while jobs are being started and finished.
            target = before + rng.randint(5, 40)
            wait_for(
                lambda target=target: ran.exists() and len(ran.read_text().split()) >= min(target, JOBS),
                120,
                "more jobs to start",
            )
            time.sleep(rng.uniform(0, 0.3))  # jitter the crash point, not a synchronisation
            cluster.stop_server(signal.SIGKILL)
            cluster.start_server()
            try:
                cluster.wait_workers("w1", "w2", timeout=60)
            except AssertionError:
                raise AssertionError("a worker did not reconnect:\n" + cluster.stack_dumps()) from None

        def all_final() -> bool:
            out = cluster.kueue("ls", "--json", "-n", "0", check=False)
            if out.returncode != 0:
                return False
            summary = json.loads(out.stdout)["summary"]
            return int(summary.get("succeeded", 0)) + int(summary.get("failed", 0)) == JOBS

        wait_for(all_final, 240, "every job to finish")
        runs = Counter(int(x) for x in (work / "ran.txt").read_text().split())
        assert set(runs) == set(ids)
        twice = {job_id: n for job_id, n in runs.items() if n != 1}
        assert not twice, f"jobs that ran more than once: {twice}"
        jobs = json.loads(cluster.kueue("ls", "--json", "-n", "0").stdout)["jobs"]
        assert len(jobs) == JOBS
        for index, job in enumerate(sorted(jobs, key=lambda j: int(j["id"])), start=1):
            assert int(job.get("exit_code", 0)) == index % 3, job
            assert job["state"] == ("JOB_STATE_SUCCEEDED" if index % 3 == 0 else "JOB_STATE_FAILED")
            if int(job["attempt"]) > 1:
                # An offer is sent after the commit that holds it, so a SIGKILL in
                # between leaves an offer the worker never got; it reconnects without
                # it and that attempt is given up. Such attempts, never started, are
                # the only ones that may come before the one that ran.
                shown = json.loads(cluster.kueue("show", job["id"], "--json").stdout)["job"]
                earlier = shown["attempts"][:-1]
                assert earlier and not any(a.get("started_at") for a in earlier), shown["attempts"]
        # Every output, each exactly as printed (no listing call carries output: one GetJob each).
        with cluster.client() as client:
            got = {index: client.get_job(job_id) for index, job_id in enumerate(ids, start=1)}
        outputs = {index: (g.stdout_tail, g.stderr_tail) for index, g in got.items()}
        wrong = {index: out for index, out in outputs.items() if out != (f"out-{index}\n".encode(), b"")}
        assert not wrong, f"{len(wrong)} job(s) with wrong output: {dict(list(wrong.items())[:10])}"
    finally:
        cluster.close()
        print(cluster.logs())
