"""Output produced while the server is away (killed, or stopped cleanly)
reaches it after it restarts, without gaps or repeats."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from kueue.v1 import common_pb2
from kueue_worker.connection import STOPPING_REASON
from tests.cluster import Cluster, wait_for


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_counter_survives_server_restarts(tmp_path: Path, sig: signal.Signals) -> None:
    """The server goes away twice while a job prints, killed or stopped
    cleanly: the job goes on as the same attempt and all its output arrives."""
    cluster = Cluster(tmp_path / "c")
    try:
        cluster.start_server()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        counter = (
            "import sys, time\n"
            "for i in range(120):\n"
            "    print(i, flush=True); print(f'e{i}', file=sys.stderr, flush=True); time.sleep(0.05)\n"
        )
        (job_id,) = cluster.kueue("cmd", sys.executable, "-c", counter, cwd=tmp_path).stdout.split()

        def printed() -> int:
            out = cluster.kueue("log", job_id, check=False).stdout.split()
            return len(out)

        for stops, threshold in enumerate((15, 50), start=1):
            wait_for(lambda threshold=threshold: printed() >= threshold, 60, f"{threshold} lines of output")
            code = cluster.stop_server(sig)
            if sig == signal.SIGTERM:
                assert code == 0, cluster.server_log()[-5000:]
                # It told the worker it was going: the stream ended with that, not cut.
                wait_for(
                    lambda stops=stops: (
                        cluster.worker_log("w1").count(f"({STOPPING_REASON}); 1 job(s)") == stops
                    ),
                    30,
                    "the worker to be told",
                )
            else:
                assert code == -signal.SIGKILL
            cluster.start_server()
        wait_for(
            lambda: (
                json.loads(cluster.kueue("show", job_id, "--json").stdout)["job"]["state"]
                == "JOB_STATE_SUCCEEDED"
            ),
            90,
            "the job to finish",
        )
        assert cluster.kueue("log", job_id).stdout.split() == [str(i) for i in range(120)]
        assert cluster.kueue("log", "--stderr", job_id).stdout.split() == [f"e{i}" for i in range(120)]
        # The same attempt throughout: nothing was given up or run again.
        job = cluster.client().get_job(int(job_id)).job
        assert job.attempt == 1 and [a.number for a in job.attempts] == [1], list(job.attempts)
        assert job.attempts[0].outcome == common_pb2.ATTEMPT_OUTCOME_FINISHED, job.attempts[0]
    finally:
        cluster.close()
        print(cluster.logs())


def _spool_files(pid: int, spool_dir: Path) -> int:
    """Open spool files of the worker (they are unlinked as soon as created)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(str(spool_dir)) and target.endswith("(deleted)"):
            count += 1
    return count


def test_output_beyond_the_memory_bound_is_spooled_and_delivered(tmp_path: Path) -> None:
    """The server is away while a job writes 8 MB: the worker keeps 1 MB in
    memory and the rest in spool files, and all of it arrives afterwards."""
    cluster = Cluster(tmp_path / "c")
    try:
        cluster.server_settings["job_output_cap_mb"] = 64
        cluster.start_server()
        worker = cluster.start_worker("w1", output_memory_mb=1)
        cluster.wait_workers("w1")
        go, done = tmp_path / "go", tmp_path / "done"
        lines = 900_000
        writer = (
            "import os, sys, time\n"
            f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
            f"sys.stdout.writelines(f'{{i:08d}}\\n' for i in range({lines}))\n"
            "sys.stdout.flush()\n"
            f"open({str(done)!r}, 'w').close()\n"
        )
        (job_id,) = cluster.kueue("cmd", sys.executable, "-c", writer, cwd=tmp_path).stdout.split()
        wait_for(
            lambda: (
                json.loads(cluster.kueue("show", job_id, "--json").stdout)["job"]["state"]
                == "JOB_STATE_RUNNING"
            ),
            60,
            "the job to run",
        )
        cluster.stop_server(signal.SIGKILL)
        go.touch()
        wait_for(done.exists, 120, "the job to write all its output")
        spool_dir = next((cluster.root / "worker-w1-data" / "workers").glob("*.spool"))
        assert _spool_files(worker.pid, spool_dir) > 0, "no spool file open while the server is away"
        cluster.start_server()
        wait_for(
            lambda: (
                json.loads(cluster.kueue("show", job_id, "--json").stdout)["job"]["state"]
                == "JOB_STATE_SUCCEEDED"
            ),
            120,
            "the job to finish",
        )
        out = cluster.kueue("log", job_id).stdout
        assert out == "".join(f"{i:08d}\n" for i in range(lines))
        # Acknowledged, the spool files are gone.
        wait_for(lambda: _spool_files(worker.pid, spool_dir) == 0, 60, "the spool files to be closed")
    finally:
        cluster.close()
        print(cluster.logs())
