"""The store fails (a full disk): clear errors, reads go on, nothing acknowledged is lost."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from tests.cluster import Cluster, wait_for


def test_full_disk_fails_writes_clearly_and_loses_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c")
    work = tmp_path / "work"
    work.mkdir()
    try:
        # Every file the server writes stops growing at 1.5 MB: like a full disk.
        cluster.start_server(file_size_limit=1_500_000)
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        (small,) = cluster.kueue("cmd", "echo", "small", cwd=work).stdout.split()
        cluster.kueue("wait", small)
        big_script = "import sys\nfor i in range(30000): sys.stdout.write(f'{i:07d}' + 'y' * 92 + '\\n')\n"
        (big,) = cluster.kueue("cmd", sys.executable, "-c", big_script, cwd=work).stdout.split()

        accepted: list[str] = []  # submissions made before the store filled up
        tries = iter(range(1000))

        def refused() -> str | None:
            marker = f"try-{next(tries)}"
            result = cluster.kueue("cmd", "echo", marker, cwd=work, check=False)
            if result.returncode == 0:
                accepted.append(marker)
                return None
            refused_markers.append(marker)
            return result.stderr

        refused_markers: list[str] = []

        error = wait_for(refused, 60, "a submission to fail on the full store")
        assert "could not store" in error and len(error.strip().splitlines()) == 1
        # Reads still work and show what was stored before.
        listing = json.loads(cluster.kueue("ls", "--json").stdout)
        states = {job["id"]: job["state"] for job in listing["jobs"]}
        assert states[small] == "JOB_STATE_SUCCEEDED"
        assert cluster.kueue("log", small).stdout == "small\n"
        assert cluster.server is not None and cluster.server.poll() is None

        # Space again: restart without the limit. The worker resends what was
        # not acknowledged; the refused submissions never existed.
        cluster.stop_server(signal.SIGKILL)
        cluster.start_server()
        wait_for(
            lambda: (
                json.loads(cluster.kueue("show", big, "--json").stdout)["job"]["state"]
                == "JOB_STATE_SUCCEEDED"
            ),
            90,
            "the big job to be recorded",
        )
        log = cluster.kueue("log", big).stdout
        assert log.count("\n") == 30000 and log.endswith("0029999" + "y" * 92 + "\n")
        commands = [
            " ".join(j["spec"]["command"]) for j in json.loads(cluster.kueue("ls", "--json").stdout)["jobs"]
        ]
        assert not any("rejected" in c for c in commands)
    finally:
        cluster.close()
        print(cluster.logs())
