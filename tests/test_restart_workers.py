"""kueue_restart_workers: which hosts lack a worker, and starting one there
over a real ssh connection to a real sshd on 127.0.0.1."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kueue.v1 import common_pb2
from kueue_client.restart_workers import missing_hosts, remote_script
from tests.cluster import REPO, Cluster, _env, wait_for
from tests.sshd import Sshd, require_ssh_tools


def worker(name: str, hostname: str = "", connected: bool = True) -> common_pb2.Worker:
    return common_pb2.Worker(name=name, connected=connected, system=common_pb2.SystemInfo(hostname=hostname))


def test_missing_hosts_match_worker_names_and_host_names() -> None:
    workers = [
        worker("lab01"),
        worker("gpu", hostname="lab02.example.org"),
        worker("LAB03.example.org"),
        worker("lab04", connected=False),
        worker("10.0.0.5"),
    ]
    hosts = ["lab01", "lab02", "lab03", "lab04", "lab05", "10.0.0.5", "10.0.0.6"]
    assert missing_hosts(hosts, workers) == ["lab04", "lab05", "10.0.0.6"]
    # An address is never shortened to its first label.
    assert missing_hosts(["10.0.0.7"], [worker("10")]) == ["10.0.0.7"]
    assert missing_hosts(["lab01"], []) == ["lab01"]


def test_remote_script_quotes_the_worker_command() -> None:
    script = remote_script("~/venv/bin/kueue_worker --name 'it''s'")
    assert "sh -c 'exec ~/venv/bin/kueue_worker --name '" in script
    # It is valid POSIX shell.
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def restart(cluster: Cluster, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kueue_client.restart_workers", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=180,
    )


def connected_names(cluster: Cluster) -> list[str]:
    out = cluster.kueue("workers", "--json", check=False)
    if out.returncode != 0:
        return []
    return [w.get("name", "") for w in json.loads(out.stdout).get("workers", []) if w.get("connected")]


def workers_running(config: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "kueue_worker" in cmdline and str(config) in cmdline:
            found.append(proc)
    return found


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    path = require_ssh_tools()
    server = Sshd(tmp_path / "sshd", path, accept_env="XDG_STATE_HOME")
    try:
        yield server
    finally:
        server.close()
        print("----- sshd log -----\n" + server.log_text()[-5000:])


def test_starts_a_worker_over_ssh_where_none_is_connected(
    cluster: Cluster, sshd: Sshd, tmp_path: Path
) -> None:
    cluster.start_server()
    host = socket.gethostname()
    state = tmp_path / "remote-state"
    worker_config = cluster.write_config(
        tmp_path / "remote-worker.toml",
        port=cluster.port,
        server_settings={"data_dir": str(tmp_path / "remote-worker-data")},
    )
    worker_command = shlex.join(
        ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "kueue_worker", "--config", str(worker_config)]
    )
    options = [*sshd.client_options(), "-o", f"SetEnv=XDG_STATE_HOME={state}"]
    config = cluster.write_config(
        tmp_path / "restart.toml",
        port=cluster.port,
        restart_workers={
            "ssh_user": getpass.getuser(),
            "hostnames": host,
            "sleep_minutes_before_recheck": 1,
            "ssh_port": sshd.port,
            "ssh_options": shlex.join(options),
            "worker_command": worker_command,
        },
    )
    try:
        assert connected_names(cluster) == []
        first = restart(cluster, config, "--once")
        assert first.returncode == 0, first.stderr
        assert f"{host}: started kueue_worker (pid" in first.stderr
        wait_for(lambda: connected_names(cluster) == [host], 60, f"the worker on {host} to connect")
        (started,) = workers_running(worker_config)
        # It outlived the ssh session, detached from it, and logs where it said.
        assert started.ppid() != os.getpid()
        assert os.getsid(started.pid) == started.pid
        (log,) = (state / "kueue").glob("kueue_worker-*.log")
        wait_for(lambda: "registered with the server" in log.read_text(), 30, "the worker's log")

        # A second round finds the worker and starts nothing.
        again = restart(cluster, config, "--once")
        assert again.returncode == 0, again.stderr
        assert "every host runs a connected worker" in again.stderr
        assert [p.pid for p in workers_running(worker_config)] == [started.pid]

        # Once the worker dies, the next round starts a new one.
        started.kill()
        started.wait(timeout=30)
        wait_for(lambda: connected_names(cluster) == [], 60, "the server to see the worker gone")
        third = restart(cluster, config, "--once")
        assert third.returncode == 0, third.stderr
        wait_for(lambda: connected_names(cluster) == [host], 60, "the new worker to connect")
        (restarted,) = workers_running(worker_config)
        assert restarted.pid != started.pid

        # A job runs on it.
        done = cluster.kueue("cmd", "--wait", "true", cwd=tmp_path)
        assert done.stdout.split()[-1] == "0"
    finally:
        for proc in workers_running(worker_config):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(workers_running(worker_config), timeout=10)


def test_a_failed_start_is_reported_with_ssh_s_reason(cluster: Cluster, tmp_path: Path) -> None:
    require_ssh_tools()
    cluster.start_server()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        config = cluster.write_config(
            tmp_path / "restart.toml",
            port=cluster.port,
            restart_workers={
                "hostnames": "lab-unreachable",
                "ssh_port": closed,
                "ssh_options": "-F /dev/null -o HostName=127.0.0.1",
            },
        )
        result = restart(cluster, config, "--once")
    assert result.returncode == 1
    assert "lab-unreachable: could not start a worker: ssh failed:" in result.stderr
    assert "refused" in result.stderr


def test_bad_settings_are_one_line_and_exit_2(cluster: Cluster, tmp_path: Path) -> None:
    config = cluster.write_config(tmp_path / "restart.toml", port=1, restart_workers={"hostnames": ""})
    result = restart(cluster, config, "--once")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kueue_restart_workers: restart_workers.hostnames in {config} is empty; "
        "list the hosts that should run a worker"
    ]
    config = cluster.write_config(
        tmp_path / "restart.toml",
        port=1,
        restart_workers={"hostnames": "a", "sleep_minutes_before_recheck": 0},
    )
    result = restart(cluster, config, "--once")
    assert result.returncode == 2
    assert "sleep_minutes_before_recheck" in result.stderr


def test_server_unreachable_starts_nothing(cluster: Cluster, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        config = cluster.write_config(
            tmp_path / "restart.toml",
            port=closed,
            restart_workers={"hostnames": "lab01", "ssh_options": "-o ConnectTimeout=1"},
        )
        result = restart(cluster, config, "--once")
    assert result.returncode == 1
    assert "cannot ask the server which workers are connected" in result.stderr
    assert "starting none" in result.stderr
    assert "lab01:" not in result.stderr


def _fake_systemctl(bin_dir: Path, calls: Path, start_status: int) -> None:
    """A systemctl that knows the unit, records its arguments and starts it
    with start_status: the remote script's systemd branch without systemd."""
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(calls))}\n'
        'case "$2" in\n'
        "  cat) exit 0 ;;\n"
        f"  start) exit {start_status} ;;\n"
        "esac\n"
        "exit 3\n"
    )
    script.chmod(0o755)


@pytest.mark.parametrize("start_status", [0, 1])
def test_remote_script_starts_the_systemd_user_unit_where_there_is_one(
    tmp_path: Path, start_status: int
) -> None:
    calls = tmp_path / "calls"
    _fake_systemctl(tmp_path / "bin", calls, start_status)
    never = tmp_path / "never-started"
    done = subprocess.run(
        ["sh", "-s"],
        input=remote_script(f"touch {shlex.quote(str(never))}"),
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"},
        timeout=60,
    )
    assert calls.read_text().splitlines()[:2] == [
        "--user cat kueue-worker.service",
        "--user start kueue-worker.service",
    ]
    if start_status == 0:
        assert (done.returncode, done.stdout.strip()) == (
            0,
            "started kueue-worker.service (systemd user unit)",
        )
    else:
        assert done.returncode == 1
        assert "systemctl --user start kueue-worker.service failed" in done.stderr
    # The unit is the worker: no second one started beside it.
    assert not never.exists()
