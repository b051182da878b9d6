"""Recording running attempts and killing them after a crash, with real processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kueue.config import WorkerSettings
from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker import orphans, runner
from kueue_worker.worker import Worker

DEADLINE = 20.0
WORKER_ID = "ab" * 16


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                proc.kill()
        proc.wait(timeout=10)


def job_tree(
    spawned: list[subprocess.Popen[bytes]], job_id: int = 7, attempt: int = 1, script: str | None = None
) -> tuple[subprocess.Popen[bytes], list[int]]:
    """A job like the runner starts one: a shell in its own session with a
    child sleeping in the foreground and one in the background; their pids."""
    env = dict(os.environ, KUEUE_JOB_ID=str(job_id), KUEUE_ATTEMPT=str(attempt))
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script or "sleep 1000 & sleep 1001; wait"],
        env=env,
        start_new_session=True,
    )
    spawned.append(proc)

    def children() -> list[psutil.Process]:
        return psutil.Process(proc.pid).children(recursive=True)

    wait_until(lambda: len(children()) >= 2, "the job's children to start")
    return proc, [proc.pid, *(c.pid for c in children())]


def test_ledger_records_and_forgets_atomically(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    path = orphans.ledger_path(tmp_path, "w1", "host.example.org")
    assert path.name == "host.example.org-w1.attempts.json"
    ledger = orphans.Ledger(path)
    proc, _ = job_tree(spawned)
    ledger.record(7, 1, proc.pid)
    ledger.record(8, 2, proc.pid)
    on_disk = orphans.read(path)
    assert {(r.job_id, r.attempt) for r in on_disk} == {(7, 1), (8, 2)}
    rec = on_disk[0]
    assert rec.pid == proc.pid and rec.pgid == proc.pid
    assert rec.create_time == psutil.Process(proc.pid).create_time()
    ledger.forget(8, 2)
    ledger.forget(8, 2)  # a second end of the same attempt is harmless
    assert [(r.job_id, r.attempt) for r in orphans.read(path)] == [(7, 1)]
    # No temporary file is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_ledger_appends_compacts_and_survives_a_cut_off_last_line(tmp_path: Path) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    ledger = orphans.Ledger(path)
    me = os.getpid()
    ledger.spawning(1, 1)
    ledger.record(1, 1, me)
    # Being spawned when the worker died: known, though its pid is not.
    ledger.spawning(2, 1)
    # Many short jobs: the file is compacted now and then, never grows without bound.
    for n in range(3, 3 + 3 * orphans.COMPACT_LINES):
        ledger.spawning(n, 1)
        ledger.record(n, 1, me)
        ledger.forget(n, 1)
    lines = path.read_text().splitlines()
    assert len(lines) <= orphans.COMPACT_LINES + 6
    on_disk = {r.key: r for r in orphans.read(path)}
    assert sorted(on_disk) == [(1, 1), (2, 1)]
    assert on_disk[(1, 1)].pid == me and on_disk[(2, 1)].pid == 0
    assert [r.key for r in ledger.records()] == [(1, 1)]
    ledger.record(500, 3, me)
    # A worker killed in the middle of an append leaves at most a partial last line.
    with open(path, "ab") as f:
        f.write(b'{"end": [500')
    assert sorted(r.key for r in orphans.read(path)) == [(1, 1), (2, 1), (500, 3)]
    ledger.close()


def test_ledger_of_an_older_worker_is_read(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    proc, pids = job_tree(spawned, 21, 2)
    wall, since_boot = orphans.start_times(psutil.Process(proc.pid))
    rec = orphans.Record(21, 2, proc.pid, wall, proc.pid, since_boot)
    # One JSON object, rewritten at every change, as workers before the append-only ledger kept it.
    old = {"worker": {"pid": 1, "create_time": 0.0}, "attempts": [dataclasses.asdict(rec)]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(old))
    killed = orphans.reap(path, grace_seconds=2.0)
    assert [(r.job_id, r.attempt) for r in killed] == [(21, 2)]
    wait_until(lambda: all(gone(pid) for pid in pids), "every process of the job to end")


def test_restart_kills_the_recorded_tree(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    ledger = orphans.Ledger(path)
    proc, pids = job_tree(spawned, 12, 1)
    ledger.record(12, 1, proc.pid)
    del ledger  # the worker dies; its job runs on
    killed = orphans.reap(path, grace_seconds=2.0)
    assert [(r.job_id, r.attempt) for r in killed] == [(12, 1)]
    proc.wait(timeout=DEADLINE)
    wait_until(lambda: all(gone(pid) for pid in pids), "every process of the job to end")
    assert not path.exists()
    # Nothing is killed twice: the record is gone.
    assert orphans.reap(path, grace_seconds=2.0) == []


def test_restart_kills_a_tree_that_ignores_sigterm(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    proc, pids = job_tree(spawned, script="trap '' TERM; sleep 1000 & sleep 1001; wait")
    orphans.Ledger(path).record(3, 2, proc.pid)
    started = time.monotonic()
    killed = orphans.reap(path, grace_seconds=0.5)
    assert [(r.job_id, r.attempt) for r in killed] == [(3, 2)]
    assert time.monotonic() - started < 0.5 + orphans.SIGKILL_WAIT_SECONDS
    wait_until(lambda: all(gone(pid) for pid in pids), "every process of the job to end")


def test_background_leftovers_of_an_ended_main_process_are_killed(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    proc, pids = job_tree(spawned, 5, 4)
    orphans.Ledger(path).record(5, 4, proc.pid)
    # The shell goes away, its children stay in its group with the job's environment.
    os.kill(proc.pid, 9)
    proc.wait(timeout=DEADLINE)
    killed = orphans.reap(path, grace_seconds=2.0)
    assert [(r.job_id, r.attempt) for r in killed] == [(5, 4)]
    wait_until(lambda: all(gone(pid) for pid in pids[1:]), "the job's leftover children to end")


def marked_job(
    spawned: list[subprocess.Popen[bytes]], job_id: int, attempt: int, worker_id: str, script: str
) -> subprocess.Popen[bytes]:
    """A shell running `script` in a session of its own, with the environment
    the runner gives a job."""
    spec = common_pb2.JobSpec(env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    env = runner.environment(spec, job_id, attempt, "w1", worker_id)
    proc = subprocess.Popen(["/bin/sh", "-c", script], env=env, start_new_session=True)
    spawned.append(proc)
    return proc


@pytest.fixture
def strays() -> Iterator[list[psutil.Process]]:
    """Processes outside the spawned ones' groups, killed at the end if a test failed to."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks first that the pid still names that process


def pids_written(directory: Path, names: list[str], strays: list[psutil.Process]) -> list[int]:
    files = [directory / name for name in names]
    wait_until(lambda: all(f.exists() and f.read_text().strip() for f in files), "the job's pids")
    pids = [int(f.read_text()) for f in files]
    strays += [psutil.Process(pid) for pid in pids]
    return pids


def test_an_attempt_spawned_but_not_recorded_is_found_by_its_environment(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]], strays: list[psutil.Process]
) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    ledger = orphans.Ledger(path)
    ledger.spawning(12, 1)
    ledger.spawning(13, 1)
    ledger.record(13, 1, os.getpid())
    ledger.forget(13, 1)
    del ledger  # the worker dies between the spawn of 12.1 and its record
    sleep = shutil.which("sleep")
    # The job, with a child that cleared its environment (found as a member of
    # the job's session) and one in a session of its own (found by its environment).
    job = marked_job(
        spawned,
        12,
        1,
        WORKER_ID,
        f"env -i {sleep} 1000 & echo $! > {tmp_path}/bare; "
        f"setsid {sleep} 1001 & echo $! > {tmp_path}/escaped; {sleep} 1002",
    )
    job_pids = [job.pid, *pids_written(tmp_path, ["bare", "escaped"], strays)]
    # Not the attempt's: a leftover of attempt 13.1, which ended; 12.1 of
    # another worker (another server's job 12, say).
    ended = marked_job(spawned, 13, 1, WORKER_ID, f"exec {sleep} 1003")
    stranger = marked_job(spawned, 12, 1, "cd" * 16, f"exec {sleep} 1004")
    wait_until(
        lambda: all(psutil.Process(p.pid).environ().get("KUEUE_JOB_ID") for p in (job, ended, stranger)),
        "the processes to start",
    )
    # Without the worker's id, nothing is known of 12.1 but that it was being spawned.
    assert orphans.reap(orphans.ledger_path(tmp_path, "w1"), grace_seconds=0.5) == []
    ledger = orphans.Ledger(path)
    ledger.spawning(12, 1)
    del ledger
    killed = orphans.reap(path, grace_seconds=2.0, worker_id=WORKER_ID)
    assert [r.key for r in killed] == [(12, 1)]
    wait_until(lambda: all(gone(pid) for pid in job_pids), "every process of the attempt to end")
    assert ended.poll() is None and stranger.poll() is None


def test_a_recorded_attempt_loses_its_escaped_processes_too(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]], strays: list[psutil.Process]
) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    sleep = shutil.which("sleep")
    job = marked_job(
        spawned, 5, 2, WORKER_ID, f"setsid {sleep} 1001 & echo $! > {tmp_path}/escaped; {sleep} 1002"
    )
    [escaped] = pids_written(tmp_path, ["escaped"], strays)
    ledger = orphans.Ledger(path)
    ledger.spawning(5, 2)
    ledger.record(5, 2, job.pid)
    del ledger
    killed = orphans.reap(path, grace_seconds=2.0, worker_id=WORKER_ID)
    assert [(r.key, r.pid) for r in killed] == [((5, 2), job.pid)]
    wait_until(lambda: gone(job.pid) and gone(escaped), "the job and its escaped process to end")


def test_leftovers_without_the_environment_go_while_one_with_it_holds_their_session(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]], strays: list[psutil.Process]
) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    sleep = shutil.which("sleep")
    job = marked_job(
        spawned,
        6,
        1,
        WORKER_ID,
        f"env -i {sleep} 1000 & echo $! > {tmp_path}/bare; {sleep} 1001 & echo $! > {tmp_path}/marked",
    )
    bare, marked = pids_written(tmp_path, ["bare", "marked"], strays)
    ledger = orphans.Ledger(path)
    ledger.spawning(6, 1)
    ledger.record(6, 1, job.pid)
    del ledger
    # The main process ends: its children stay in its session, one of them
    # without the job's environment.
    job.wait(timeout=DEADLINE)
    killed = orphans.reap(path, grace_seconds=2.0, worker_id=WORKER_ID)
    assert [r.key for r in killed] == [(6, 1)]
    wait_until(lambda: gone(bare) and gone(marked), "the leftovers to end")


def test_a_reused_pid_is_not_killed(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    # A stranger now holds the recorded pid (and leads a group and session of
    # that id) but was created at another time: not ours.
    stranger, pids = job_tree(spawned, 99, 9)
    wall, since_boot = orphans.start_times(psutil.Process(stranger.pid))
    path.parent.mkdir(parents=True)
    for recorded_wall, recorded_since_boot in (
        (wall - 100.0, since_boot - 100.0),  # an earlier process of that pid
        (wall - 100.0, -1.0),  # recorded without the time since boot
        (wall - 3600.0, since_boot),  # a process of the same pid and age before a reboot
    ):
        record = {
            "job_id": 12,
            "attempt": 1,
            "pid": stranger.pid,
            "create_time": recorded_wall,
            "pgid": stranger.pid,
            "started_since_boot": recorded_since_boot,
        }
        path.write_text(json.dumps({"attempts": [record]}))
        assert orphans.reap(path, grace_seconds=0.5) == []
    assert all(not gone(pid) for pid in pids)
    assert stranger.poll() is None


def test_an_unreadable_ledger_is_ignored(tmp_path: Path) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    path.parent.mkdir(parents=True)
    path.write_text("{half")
    assert orphans.reap(path, grace_seconds=0.5) == []
    assert orphans.reap(tmp_path / "missing.json", grace_seconds=0.5) == []


def test_jobs_of_a_live_worker_of_the_same_name_are_left_alone(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    proc, pids = job_tree(spawned, 12, 1)
    me = psutil.Process()
    other = psutil.Process(proc.pid)  # stands for the other worker, alive
    record = {
        "job_id": 12,
        "attempt": 1,
        "pid": proc.pid,
        "create_time": other.create_time(),
        "pgid": proc.pid,
    }
    owner = {"pid": other.pid, "create_time": other.create_time()}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"worker": owner, "attempts": [record]}))
    assert orphans.reap(path, grace_seconds=0.5) == []
    assert proc.poll() is None and all(not gone(pid) for pid in pids)
    assert path.exists()
    # Written by this very process (a ledger of our own): no obstacle.
    path.write_text(
        json.dumps({"worker": {"pid": me.pid, "create_time": me.create_time()}, "attempts": [record]})
    )
    assert [(r.job_id, r.attempt) for r in orphans.reap(path, grace_seconds=2.0)] == [(12, 1)]


def test_the_worker_records_an_attempt_while_its_process_runs(tmp_path: Path) -> None:
    path = orphans.ledger_path(tmp_path, "w1")
    go = tmp_path / "go"
    spec = common_pb2.JobSpec(
        command=["/bin/sh", "-c", f"while [ ! -e {go} ]; do sleep 0.01; done"],
        cwd=str(tmp_path),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        resources=common_pb2.Resources(slots=1, cpus=1, ram_mb=10),
    )

    async def scenario() -> None:
        worker = Worker(
            WorkerSettings(system_update_interval_seconds=60), "w1", "ab" * 16, orphans.Ledger(path)
        )
        await worker.on_assign(wpb.Assign(job_id=4, attempt=2, spec=spec))
        deadline = time.monotonic() + DEADLINE
        while not worker.processes or worker.processes[(4, 2)].pid is None:
            assert time.monotonic() < deadline, "the job did not start"
            await asyncio.sleep(0.01)
        pid = worker.processes[(4, 2)].pid
        await asyncio.sleep(0)  # the "start" entry goes out at the end of the loop's turn
        [rec] = orphans.read(path)
        assert (rec.job_id, rec.attempt, rec.pid, rec.pgid) == (4, 2, pid, pid)
        # Known before the spawn; the process is marked as this worker's.
        kinds = [next(iter(json.loads(line))) for line in path.read_text().splitlines()]
        assert kinds == ["worker", "spawn", "start"]
        assert psutil.Process(pid).environ()["KUEUE_WORKER_ID"] == "ab" * 16
        psutil_create_time = psutil.Process(pid).create_time()
        go.touch()
        while worker.processes:
            assert time.monotonic() < deadline, "the job did not end"
            await asyncio.sleep(0.01)
        # Kept until the server has the finish: a crash now must still tell
        # it that the attempt ran, and since when.
        [rec] = orphans.previous_attempts(path)
        assert rec.key == (4, 2) and rec.create_time == pytest.approx(psutil_create_time, abs=1.0)
        await worker.handle(wpb.ConnectResponse(finished_ack=wpb.FinishedAck(job_id=4, attempt=2)))
        await asyncio.sleep(0)  # the "end" entry goes out at the end of the loop's turn
        assert orphans.read(path) == []

    try:
        asyncio.run(scenario())
    finally:
        go.touch()  # a failed check must not leave the job looping


@given(
    job_id=st.integers(min_value=0, max_value=2**63 - 1),
    attempt=st.integers(min_value=0, max_value=2**31),
    pid=st.integers(min_value=0, max_value=2**22),
    create_time=st.floats(allow_nan=False, allow_infinity=False),
    since_boot=st.floats(allow_nan=False, allow_infinity=False),
)
def test_a_start_entry_is_the_json_of_its_record(
    job_id: int, attempt: int, pid: int, create_time: float, since_boot: float
) -> None:
    rec = orphans.Record(job_id, attempt, pid, create_time, pid, since_boot)
    line = orphans._start_line(rec)
    assert line == json.dumps({"start": dataclasses.asdict(rec)}) + "\n"
    assert json.loads(line) == {"start": dataclasses.asdict(rec)}


def test_a_recorded_start_time_is_psutils(tmp_path: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    ledger = orphans.Ledger(orphans.ledger_path(tmp_path, "w1"))
    proc, _ = job_tree(spawned)
    ledger.record(7, 1, proc.pid)
    [rec] = orphans.read(ledger.path)
    # As start-up compares them: exactly what it will read of the process.
    assert (rec.create_time, rec.started_since_boot) == orphans.start_times(psutil.Process(proc.pid))
    ledger.close()


def test_start_and_end_entries_wait_for_the_next_write_or_the_end_of_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "ledger"

    def kinds() -> list[str]:
        return [next(iter(json.loads(line))) for line in path.read_text().splitlines()]

    async def scenario() -> None:
        ledger = orphans.Ledger(path)
        ledger.spawning(1, 1)  # before the spawn: written at once
        assert kinds() == ["worker", "spawn"]
        ledger.record(1, 1, os.getpid())
        assert kinds() == ["worker", "spawn"]
        await asyncio.sleep(0)
        assert kinds() == ["worker", "spawn", "start"]
        # An end, then the next spawn in the same turn: one write, in order.
        ledger.forget(1, 1)
        ledger.spawning(2, 1)
        assert kinds() == ["worker", "spawn", "start", "end", "spawn"]
        ledger.record(2, 1, os.getpid())
        ledger.close()  # writes what waits
        assert kinds()[-1] == "start"
        [rec] = orphans.previous_attempts(path)
        assert rec.key == (2, 1)

    asyncio.run(scenario())
    # Without a running loop, at once.
    ledger = orphans.Ledger(path)
    ledger.forget(2, 1)  # not this ledger's: nothing
    ledger.spawning(3, 1)
    ledger.record(3, 1, os.getpid())
    assert kinds()[-2:] == ["spawn", "start"]
