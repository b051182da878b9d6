"""`kueue run` holds a fast job to the pace of a slow reader, as a pipe would:
nothing is dropped, the job blocks instead, and it goes on once the reader
is gone. Real server, worker and client processes on loopback."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, _env, wait_for, worker_behind_relay
from tests.test_e2e_run import Collector, wait_state

MIB = 1024 * 1024
BLOCK = 256 * 1024
# What the job may have written beyond what the test has read, at most: the
# server's window (4 MiB) past the client's acknowledgement, one read by the
# worker beyond it (1 MiB), the job's pipe (1 MiB) and the client's stdout
# pipe. Without pacing the job runs to its end at once.
SLACK = 8 * MIB

# Writes `total` bytes (block i: sha256(i) repeated) to stdout, recording
# after each block how much it has written, then exits with 3.
JOB = f"""
import hashlib, os, sys
progress, total = sys.argv[1], int(sys.argv[2])
with open(progress + ".id", "w") as f:
    f.write(os.environ["KUEUE_JOB_ID"])
written = i = 0
while written < total:
    view = memoryview(hashlib.sha256(str(i).encode()).digest() * ({BLOCK} // 32))
    while view:
        view = view[os.write(1, view):]
    written += {BLOCK}
    i += 1
    with open(progress + ".tmp", "w") as f:
        f.write(str(written))
    os.replace(progress + ".tmp", progress)
sys.exit(3)
"""


def expected_digest(total: int) -> str:
    h = hashlib.sha256()
    for i in range(total // BLOCK):
        h.update(hashlib.sha256(str(i).encode()).digest() * (BLOCK // 32))
    return h.hexdigest()


class PacedJob:
    """`kueue run` of JOB, its stdout a pipe the test reads when it likes."""

    def __init__(self, cluster: Cluster, tmp_path: Path, total: int) -> None:
        script = tmp_path / "job.py"
        script.write_text(JOB)
        self.progress_file = tmp_path / "progress"
        self.total = total
        self.proc = subprocess.Popen(
            [
                *cluster.kueue_argv("run"),
                sys.executable,
                str(script),
                str(self.progress_file),
                str(total),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=_env(),
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.fd = self.proc.stdout.fileno()
        self.err = Collector(self.proc.stderr)
        self.read = 0
        self.digest = hashlib.sha256()

    def progress(self) -> int:
        try:
            return int(self.progress_file.read_text() or 0)
        except FileNotFoundError:
            return 0

    def job_id(self) -> int:
        return int(wait_for(lambda: Path(f"{self.progress_file}.id").read_text(), 60, "the job to start"))

    def wait_ahead(self, target: int) -> None:
        """Until the job has written `target` bytes (or all), which the window allows."""
        target = min(self.total, target)
        wait_for(lambda: self.progress() >= target, 60, f"the job to write {target} bytes")

    def check_bound(self) -> None:
        written = self.progress()
        assert written <= self.read + SLACK, f"the job wrote {written} bytes while {self.read} were read"

    def read_some(self, amount: int, deadline: float) -> bool:
        """Read about `amount` bytes of stdout; False at its end."""
        goal = self.read + amount
        while self.read < goal:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no output within the deadline ({self.read} bytes read)"
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return False
            self.digest.update(chunk)
            self.read += len(chunk)
            self.check_bound()
        return True

    def read_slowly(self, step: int, deadline: float, between: Callable[[int], None] | None = None) -> None:
        """Read `step` bytes at a time, each time first letting the job run
        as far ahead as it is let."""
        rounds = 0
        while True:
            self.wait_ahead(self.read + 2 * MIB)
            self.check_bound()
            if between is not None:
                between(rounds)
            rounds += 1
            if not self.read_some(step, deadline):
                return

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def small_cap(tmp_path: Path) -> Iterator[Cluster]:
    # A small output cap: bytes dropped for a slow client could not even be
    # refilled from the captured files.
    cluster = Cluster(tmp_path / "c", job_output_cap_mb=1)
    try:
        cluster.start_server()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        yield cluster
    finally:
        cluster.close()
        print(cluster.logs())


@pytest.fixture
def big_cap(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "c", job_output_cap_mb=64)
    try:
        cluster.start_server()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        yield cluster
    finally:
        cluster.close()
        print(cluster.logs())


def read_all_slowly_and_check(
    job: PacedJob, total: int, between: Callable[[int], None] | None = None
) -> None:
    """Read the job's output a MiB at a time to its end: every byte, in order,
    none dropped, and the job's own exit code (3)."""
    try:
        job.read_slowly(MIB, time.monotonic() + 300, between=between)
        code = job.proc.wait(60)
    finally:
        job.kill()
    err = job.err.finish().decode(errors="replace")
    assert code == 3, err
    assert "dropped" not in err
    assert job.read == total
    assert job.digest.hexdigest() == expected_digest(total)


def test_slow_reader_gets_every_byte_and_the_job_waits_for_it(small_cap: Cluster, tmp_path: Path) -> None:
    total = 24 * MIB  # far more than the output cap, and than the window
    read_all_slowly_and_check(PacedJob(small_cap, tmp_path, total), total)


def test_client_killed_while_the_job_is_held_the_job_runs_to_its_end(
    big_cap: Cluster, tmp_path: Path
) -> None:
    total = 24 * MIB
    job = PacedJob(big_cap, tmp_path, total)
    try:
        job.wait_ahead(2 * MIB)
        job.check_bound()  # held: nothing has been read
        job.proc.send_signal(signal.SIGKILL)
        job.proc.wait(30)
    finally:
        job.kill()
    job_id = job.job_id()
    wait_for(lambda: job.progress() == total, 120, "the job to write everything once its client is gone")
    assert wait_state(big_cap, job_id, "JOB_STATE_FAILED")["exit_code"] == 3
    log = subprocess.run(big_cap.kueue_argv("log", str(job_id)), capture_output=True, env=_env(), timeout=120)
    assert log.returncode == 0, log.stderr
    assert len(log.stdout) == total
    assert hashlib.sha256(log.stdout).hexdigest() == expected_digest(total)


def test_server_restarted_while_the_job_is_held_the_job_runs_to_its_end(
    big_cap: Cluster, tmp_path: Path
) -> None:
    total = 24 * MIB
    job = PacedJob(big_cap, tmp_path, total)
    try:
        job.wait_ahead(2 * MIB)
        job_id = job.job_id()
        job.check_bound()
        big_cap.stop_server(signal.SIGKILL)
        # Blocked on its full stdout, as a local program would be, kueue run
        # notices the loss once its reader takes what it has.
        deadline = time.monotonic() + 120
        while job.read_some(MIB, deadline):
            pass
        assert job.proc.wait(60) == 255
    finally:
        job.kill()
    assert job.progress() < total  # still held when the server went
    # The new server knows of no client: the worker must let the job go on.
    big_cap.start_server()
    wait_for(lambda: job.progress() == total, 120, "the job to write everything after the restart")
    assert wait_state(big_cap, job_id, "JOB_STATE_FAILED")["exit_code"] == 3
    log = subprocess.run(big_cap.kueue_argv("log", str(job_id)), capture_output=True, env=_env(), timeout=120)
    assert log.returncode == 0, log.stderr
    assert hashlib.sha256(log.stdout).hexdigest() == expected_digest(total)


def test_worker_reconnects_while_paced_nothing_lost_or_repeated(tmp_path: Path) -> None:
    with worker_behind_relay(tmp_path / "c", "w1", job_output_cap_mb=1) as (cluster, relay):
        try:
            total = 16 * MIB
            job = PacedJob(cluster, tmp_path, total)

            def cut_once(rounds: int) -> None:
                # Mid-run, the job held at the window: the worker's stream breaks
                # and comes back; the pace must survive (and the job not stall).
                if rounds == 4:
                    relay.cut()
                    relay.heal()
                    wait_for(
                        lambda: "1 attempts reported" in cluster.server_log(), 60, "the worker to reconnect"
                    )

            read_all_slowly_and_check(job, total, between=cut_once)
        finally:
            print(cluster.logs())
