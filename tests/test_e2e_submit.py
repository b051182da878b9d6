"""End to end: arrays, environment, output capture and its cap, the local cluster."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.cluster import REPO, Cluster, wait_for
from tests.cluster import _env as cluster_env

MB = 1024 * 1024


def ids_of(result: subprocess.CompletedProcess[str]) -> list[int]:
    return [int(x) for x in result.stdout.split()]


def test_array_and_each_line_in_one_call(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    ids = ids_of(
        cluster.kueue("cmd", "--array", "1-9:4", "sh", "-c", 'echo "a=$KUEUE_ARRAY_ID"', cwd=tmp_path)
    )
    lines = tmp_path / "inputs.txt"
    lines.write_text("alpha\n\nbeta gamma\n")
    ids += ids_of(
        cluster.kueue("cmd", "--each-line", str(lines), "sh", "-c", 'echo "e=$KUEUE_ENTRY"', cwd=tmp_path)
    )
    assert len(ids) == 5 and ids == sorted(ids)
    assert cluster.kueue("wait", *map(str, ids)).returncode == 0
    outputs = [cluster.kueue("log", str(i)).stdout.strip() for i in ids]
    assert outputs == ["a=1", "a=5", "a=9", "e=alpha", "e=beta gamma"]


def test_an_array_larger_than_one_call_is_queued_whole(cluster: Cluster, tmp_path: Path) -> None:
    from kueue_client.spec import MAX_JOBS_PER_CALL

    cluster.start_server()  # no worker: the jobs stay queued
    n = MAX_JOBS_PER_CALL + 5
    ids = ids_of(cluster.kueue("cmd", "--array", f"1-{n}", "true", cwd=tmp_path))
    assert ids == list(range(ids[0], ids[0] + n))
    listed = json.loads(cluster.kueue("ls", "--json", "-n", "1").stdout)
    assert int(listed["summary"]["pending"]) == n, listed["summary"]


def test_a_second_server_on_the_same_store_refuses_to_start(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    (first,) = ids_of(cluster.kueue("cmd", "true", cwd=tmp_path))
    # The same config (data dir), another port: as a second host on a shared home.
    config = cluster.write_config(tmp_path / "second.toml", port=0)
    second = subprocess.run(
        [sys.executable, "-m", "kueue_server", "--config", str(config)],
        capture_output=True,
        text=True,
        env=cluster_env(),
        timeout=60,
    )
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert lines[-1].startswith("kueue_server: another kueue_server (pid "), second.stderr
    assert "uses the store in" in lines[-1] and "stop it first" in lines[-1]
    # The first one goes on, its store whole.
    (later,) = ids_of(cluster.kueue("cmd", "true", cwd=tmp_path))
    assert later == first + 1


def test_ids_of_cleaned_jobs_are_not_given_out_again_after_a_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_server()  # no worker: the jobs stay queued until removed
    ids = ids_of(cluster.kueue("cmd", "--array", "1-3", "true", cwd=tmp_path))
    cluster.kueue("rm", *map(str, ids))
    cluster.kueue("clean")
    assert cluster.stop_server() == 0
    cluster.start_server()
    (new,) = ids_of(cluster.kueue("cmd", "true", cwd=tmp_path))
    assert new == ids[-1] + 1


def test_environment_is_carried_unless_no_env(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    show = 'echo "mine=${MY_SETTING:-unset} host=${HOSTNAME:-unset}"'
    env = {"MY_SETTING": "42", "HOSTNAME": "submit-host"}
    (carried,) = ids_of(cluster.kueue("cmd", show, cwd=tmp_path, env=env))
    (plain,) = ids_of(cluster.kueue("cmd", "--no-env", show, cwd=tmp_path, env=env))
    cluster.kueue("wait", str(carried), str(plain))
    # The submitter's variables travel; host-local ones (HOSTNAME) do not.
    assert cluster.kueue("log", str(carried)).stdout.strip() == "mine=42 host=unset"
    assert cluster.kueue("log", str(plain)).stdout.strip().startswith("mine=unset")


def test_output_cap_keeps_the_tail(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", job_output_cap_mb=1)
    try:
        cluster.start_server()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        # 40 000 numbered lines of 100 bytes: 4 MB, four times the cap.
        script = "import sys\nfor i in range(40000): sys.stdout.write(f'{i:07d}' + 'x' * 92 + '\\n')\n"
        (job_id,) = ids_of(cluster.kueue("cmd", sys.executable, "-c", script, cwd=tmp_path))
        cluster.kueue("wait", str(job_id))
        job = json.loads(cluster.kueue("show", str(job_id), "--json").stdout)
        job = job.get("job", job)
        assert job["output_truncated"] is True
        assert int(job["stdout_bytes"]) == 4_000_000
        log = cluster.kueue("log", str(job_id)).stdout
        assert log.endswith("0039999" + "x" * 92 + "\n")
        assert 700_000 <= len(log) <= 1024 * 1024
        assert "tail" in cluster.kueue("show", str(job_id)).stdout
        data = cluster.root / "server-data" / "output" / str(job_id)
        assert sum(f.stat().st_size for f in data.iterdir()) <= 1024 * 1024
    finally:
        cluster.close()


def test_a_job_printing_without_end_fills_neither_disk_nor_memory(tmp_path: Path) -> None:
    import psutil

    cluster = Cluster(tmp_path / "c", job_output_cap_mb=1)
    try:
        cluster.start_server()
        assert cluster.server is not None
        server = psutil.Process(cluster.server.pid)
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        (job_id,) = ids_of(cluster.kueue("cmd", "yes", "a line that never ends", cwd=tmp_path))
        data = cluster.root / "server-data" / "output" / str(job_id)

        def on_disk() -> int:
            total = 0
            for f in data.iterdir():
                # The server drops old segments as it goes: one gone since the listing holds nothing.
                with contextlib.suppress(FileNotFoundError):
                    total += f.stat().st_size
            return total

        rss: list[int] = []

        def stdout_bytes() -> int:
            job = json.loads(cluster.kueue("show", str(job_id), "--json").stdout)
            rss.append(server.memory_info().rss)
            return int(job.get("job", job).get("stdout_bytes", 0))

        # Once the buffers along the way have filled ...
        wait_for(lambda: stdout_bytes() >= 100 * MB, 240, "100 MB of output")
        rss.clear()
        # ... ten times as much output goes through the server ...
        wait_for(lambda: stdout_bytes() >= 1000 * MB, 600, "1000 MB of output")
        # ... which keeps about the cap of it on disk, and holds no more in
        # memory than before (a server that kept up with it by buffering grew
        # by hundreds of megabytes here).
        assert on_disk() <= 1 * MB
        assert max(rss) - rss[0] < 64 * MB, [r // MB for r in rss]
        cluster.kueue("rm", "--kill", str(job_id))
        cluster.kueue("wait", str(job_id), check=False)
        job = json.loads(cluster.kueue("show", str(job_id), "--json").stdout)
        job = job.get("job", job)
        assert (job["state"], job["output_truncated"]) == ("JOB_STATE_CANCELED", True)
        assert cluster.kueue("log", str(job_id)).stdout.endswith("a line that never ends\n")
    finally:
        cluster.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Kueue = Callable[..., "subprocess.CompletedProcess[str]"]


def fresh_home(tmp_path: Path) -> tuple[Path, Kueue]:
    """A home of its own, and `kueue` run there; its first run has written
    the config template, pointed at a free loopback port."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }
    env.pop("KUEUE_CONFIG", None)

    def kueue(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kueue_client", *args],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert kueue("--version").returncode == 0
    config = home / ".config" / "kueue" / "config.toml"
    kueue("ls")  # creates the config (the server is not running yet: fails)
    text = config.read_text()
    assert len(text.split('shared_secret = "')[1].split('"')[0]) == 64
    # Any load at all would leave a load-checking worker no free cpu: the
    # worker of `kueue up` must run the job anyway.
    config.write_text(
        text.replace("server_port = 11236", f"server_port = {_free_port()}")
        .replace('bind_addresses = "0.0.0.0 [::]"', 'bind_addresses = "127.0.0.1"')
        .replace("dynamic_cpu_load_scale_factor = 1.0", "dynamic_cpu_load_scale_factor = 1000000.0")
    )
    assert "dynamic_cpu_load_scale_factor = 1000000.0" in config.read_text()
    return home, kueue


def test_up_says_how_a_server_that_could_not_start_ended(tmp_path: Path) -> None:
    home, kueue = fresh_home(tmp_path)
    data = home / ".local" / "share" / "kueue"
    (data / "kueue.sqlite3").mkdir(parents=True)  # no store can be opened there
    up = kueue("up")
    assert up.returncode != 0
    assert "kueue_server exited during start-up (exit status 1): " in up.stderr, up.stderr
    assert "kueue.sqlite3" in up.stderr and len(up.stderr.strip().splitlines()) == 1, up.stderr
    assert not (data / "local-cluster.json").exists()  # nothing left recorded as running


def test_up_beside_another_users_server_names_a_free_port(tmp_path: Path) -> None:
    # Two researchers on one machine: the second one's config has the same
    # port as the first one's server, and a secret of its own.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, kueue_first = fresh_home(tmp_path / "a")
    second, kueue_second = fresh_home(tmp_path / "b")
    config_first = first / ".config" / "kueue" / "config.toml"
    config_second = second / ".config" / "kueue" / "config.toml"
    port = re.search(r"server_port = (\d+)", config_first.read_text())
    assert port is not None
    text = re.sub(r"server_port = \d+", f"server_port = {port[1]}", config_second.read_text())
    config_second.write_text(text)
    try:
        assert kueue_first("up").returncode == 0
        up = kueue_second("up")
        assert up.returncode == 1, up.stderr
        assert len(up.stderr.strip().splitlines()) == 1, up.stderr
        assert "another kueue server already answers at" in up.stderr, up.stderr
        assert str(config_second) in up.stderr, up.stderr
        free = re.search(r"\(say (\d+), free now\)", up.stderr)
        assert free is not None, up.stderr
        # Taking the advice gives the second one a cluster of its own.
        config_second.write_text(text.replace(f"server_port = {port[1]}", f"server_port = {free[1]}"))
        up = kueue_second("up")
        assert up.returncode == 0, up.stderr
        waited = kueue_second("cmd", "--wait", "true")
        assert waited.returncode == 0 and waited.stdout.split()[-1] == "0", waited
    finally:
        kueue_second("down")
        kueue_first("down")


def test_up_runs_a_first_job_and_down_stops_everything(tmp_path: Path) -> None:
    home, kueue = fresh_home(tmp_path)
    try:
        up = kueue("up")
        assert up.returncode == 0, up.stderr
        # The README's first command.
        ran = kueue("run", "echo", "hello from kueue")
        assert (ran.returncode, ran.stdout) == (0, "hello from kueue\n"), ran.stderr
        waited = kueue("cmd", "--wait", "echo", "hello from kueue")
        assert waited.returncode == 0, waited.stderr
        job_id = waited.stdout.split()[0]
        assert kueue("log", job_id).stdout == "hello from kueue\n"
        assert "already" in kueue("up").stdout + kueue("up").stderr
        # The clock stepped back 30 s since (NTP, a resumed virtual machine):
        # each recorded start time now reads 30 s late, and they are still ours.
        pids = home / ".local" / "share" / "kueue" / "local-cluster.json"
        state = json.loads(pids.read_text())
        for role in ("server", "worker"):
            state[role]["create_time"] += 30.0
        pids.write_text(json.dumps(state))
        assert "already" in kueue("up").stdout
    finally:
        down = kueue("down")
    assert down.returncode == 0, down.stderr
    assert kueue("ls").returncode != 0  # the server is gone
    wait_for(lambda: not pids.exists(), 10, "the pid file to be removed")
