"""One worker per identity: a second kueue_worker with the same name and data
directory on the same host refuses to start instead of reaping the first
one's jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cluster import Cluster, _env


def test_a_second_worker_with_the_same_identity_refuses_to_start(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    first = cluster.start_worker("w1")
    cluster.wait_workers("w1")
    job = cluster.kueue("cmd", "sleep", "30", cwd=tmp_path).stdout.strip()
    config = cluster.root / "worker-w1.toml"
    second = cluster.run_worker_again("w1")
    assert second.returncode == 1
    assert f"a kueue_worker named 'w1' already runs on this host (pid {first.pid})" in second.stderr
    # The first one and its job are untouched.
    assert first.poll() is None
    shown = json.loads(cluster.kueue("show", job, "--json").stdout)
    assert shown.get("job", shown)["state"] in ("JOB_STATE_OFFERED", "JOB_STATE_RUNNING")
    # Under another name, with the same config and data directory, it starts.
    cluster.workers["w1b"] = subprocess.Popen(
        [sys.executable, "-m", "kueue_worker", "--config", str(config), "--name", "w1b"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,
    )
    cluster.wait_workers("w1", "w1b")
