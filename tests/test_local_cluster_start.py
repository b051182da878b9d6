"""How `kueue up` judges a child it started: alive, or how it ended."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from kueue_client import local_cluster
from kueue_client.errors import KueueError
from kueue_client.local_cluster import Started, _check_alive


def started(proc: subprocess.Popen[bytes], log: Path) -> Started:
    create_time, since_boot = local_cluster.process_start.start_times(psutil.Process(proc.pid))
    return Started(proc.pid, create_time, str(log), list(map(str, proc.args)), since_boot)


def test_a_running_child_that_does_not_look_like_the_server_is_not_reported_as_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server on its way out has lost its command line before it is a zombie:
    # as long as the pid is still our running child, it is looked at again.
    monkeypatch.setattr(local_cluster, "EXIT_SETTLE", 0.05)
    log = tmp_path / "server.log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _check_alive("server", started(proc, log))  # no error raised
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_child_that_ended_is_reported_with_its_exit_status_and_last_log_line(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    log.write_text("kueue_server: cannot open the store\n")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    record = started(proc, log)
    proc.send_signal(signal.SIGKILL)
    with pytest.raises(KueueError) as raised:
        _check_alive("server", record)
    message = str(raised.value)
    assert "kueue_server exited during start-up (killed by signal 9): " in message, message
    assert "cannot open the store" in message
    assert "pid now names another process" not in message


def test_a_child_exiting_with_a_status_is_reported_with_it(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.2); sys.exit(3)"])
    record = started(proc, log)
    with pytest.raises(KueueError) as raised:
        for _ in range(3000):  # bounded: the child ends in moments
            _check_alive("worker", record)
    assert "kueue_worker exited during start-up (exit status 3)" in str(raised.value)
