"""Output produced while the server is away (killed, or stopped cleanly)
reaches it after it restarts, without gaps or repeats."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from tests.cluster import Cluster, wait_for


def test_counter_survives_server_restarts(tmp_path: Path) -> None:
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

        for threshold in (15, 50):
            wait_for(lambda threshold=threshold: printed() >= threshold, 60, f"{threshold} lines of output")
            cluster.stop_server(signal.SIGKILL)
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
    finally:
        cluster.close()
        print(cluster.logs())
