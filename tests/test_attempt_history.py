"""A job's attempt history: kept by the scheduling core, stored, and shown by GetJob."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from kueue.v1 import common_pb2
from kueue_server import convert
from kueue_server.model import MAX_PAST_ATTEMPTS, Amount, Outcome, State
from kueue_server.scheduler import Limits, Scheduler
from kueue_server.store import Batch, Store

Out = common_pb2.AttemptOutcome


def make(**limits: float) -> Scheduler:
    return Scheduler(Limits(**limits))  # type: ignore[arg-type]


def connect(s: Scheduler, wid: str, now: float = 0.0, running: list[tuple[int, int]] | None = None) -> None:
    s.connect_worker(wid, f"name-{wid}", Amount(4, 4, 8000), common_pb2.SystemInfo(), "", running or [], now)


def submit(s: Scheduler, now: float = 0.0) -> int:
    spec = common_pb2.JobSpec(command=["true"], cwd="/tmp", resources=common_pb2.Resources(slots=1, cpus=1))
    (job,) = s.submit(1, spec, [None], now)
    return job.id


def offer(s: Scheduler, now: float) -> tuple[str, int]:
    s.dispatch(now)
    (a,) = s.take_effects().assign
    return a.worker_id, a.job.attempt


def attempts(s: Scheduler, job_id: int) -> list[common_pb2.Attempt]:
    return list(convert.job_message(s.jobs[job_id], include_attempts=True).attempts)


def test_a_job_that_ran_once_has_one_finished_attempt() -> None:
    s = make()
    connect(s, "w1")
    job_id = submit(s)
    assert attempts(s, job_id) == []  # pending, never offered
    wid, attempt = offer(s, 1.0)
    (active,) = attempts(s, job_id)
    assert (active.number, active.outcome, active.worker_name) == (1, Out.ATTEMPT_OUTCOME_ACTIVE, "name-w1")
    assert active.offered_at.seconds == 1 and not active.HasField("ended_at")
    s.started(wid, job_id, attempt, 2.0)
    s.finished(wid, job_id, attempt, 3, 0, 5.0, 0, "", 7.0)
    (done,) = attempts(s, job_id)
    assert done.outcome == Out.ATTEMPT_OUTCOME_FINISHED
    assert (done.started_at.seconds, done.ended_at.seconds) == (2, 7)
    # The list views do not carry the history.
    assert not convert.job_message(s.jobs[job_id]).attempts


def test_worker_crash_and_rejection_show_in_the_history() -> None:
    s = make(worker_timeout=10.0)
    connect(s, "w1")
    job_id = submit(s)
    wid, attempt = offer(s, 1.0)
    s.started(wid, job_id, attempt, 2.0)
    # The worker crashed and came back without the attempt.
    connect(s, "w1", now=3.0)
    assert s.jobs[job_id].state is State.PENDING
    (lost,) = attempts(s, job_id)  # queued again: no current attempt
    assert lost.outcome == Out.ATTEMPT_OUTCOME_WORKER_LOST
    assert "restarted without attempt 1" in lost.reason
    assert (lost.started_at.seconds, lost.ended_at.seconds) == (2, 3)
    # The next offer is rejected, the third one times out with its worker.
    wid, attempt = offer(s, 4.0)
    s.assignment_reply(wid, job_id, attempt, False, "no directory /tmp", False, 5.0)
    connect(s, "w2", now=5.0)
    wid, attempt = offer(s, 6.0)
    assert wid == "w2"
    s.started(wid, job_id, attempt, 6.5)
    s.heartbeat("w1", common_pb2.SystemInfo(), Amount(), 20.0)
    s.tick(20.0)
    history = attempts(s, job_id)
    assert [(a.number, a.outcome) for a in history] == [
        (1, Out.ATTEMPT_OUTCOME_WORKER_LOST),
        (2, Out.ATTEMPT_OUTCOME_REJECTED),
        (3, Out.ATTEMPT_OUTCOME_WORKER_LOST),
    ]
    assert history[1].reason == "no directory /tmp" and not history[1].HasField("started_at")
    assert "silent for" in history[2].reason and history[2].worker_name == "name-w2"


def test_offer_timeout_shutdown_and_cancel_outcomes() -> None:
    s = make(offer_timeout=5.0)
    connect(s, "w1")
    job_id = submit(s)
    offer(s, 0.0)
    s.tick(6.0)
    wid, attempt = offer(s, 7.0)
    s.started(wid, job_id, attempt, 7.5)
    s.worker_leaving(wid, 8.0)
    connect(s, "w1", now=9.0)
    offer(s, 9.0)
    s.cancel(job_id, False, 10.0)
    assert [a.outcome for a in attempts(s, job_id)] == [
        Out.ATTEMPT_OUTCOME_UNANSWERED,
        Out.ATTEMPT_OUTCOME_WORKER_STOPPED,
        Out.ATTEMPT_OUTCOME_CANCELED,
    ]
    assert attempts(s, job_id)[-1].ended_at.seconds == 10


def test_history_is_bounded() -> None:
    s = make()
    connect(s, "w1")
    job_id = submit(s)
    for i in range(MAX_PAST_ATTEMPTS + 15):
        wid, attempt = offer(s, float(10 * i))
        s.assignment_reply(wid, job_id, attempt, False, "busy", True, float(10 * i + 1))
    past = s.jobs[job_id].past_attempts
    assert past is not None and len(past) == MAX_PAST_ATTEMPTS
    assert past[-1].number == MAX_PAST_ATTEMPTS + 15 and past[0].number == 16


def test_history_survives_the_store(tmp_path: Path) -> None:
    s = make()
    connect(s, "w1")
    job_id = submit(s)
    offer(s, 1.0)
    connect(s, "w1", now=2.0)  # lost
    offer(s, 3.0)
    before = attempts(s, job_id)

    async def write() -> None:
        store = Store(tmp_path, 1 << 20)
        store.start(asyncio.get_running_loop())
        job = s.jobs[job_id]
        await store.write(Batch(specs=[(1, job.spec.SerializeToString())], jobs=[convert.job_row(job)]))
        store.close()

    asyncio.run(write())
    store = Store(tmp_path, 1 << 20)
    (loaded,) = store.load().jobs
    store.close()
    fresh = make()
    fresh.load([loaded], [], now=4.0)
    assert attempts(fresh, job_id) == before
    assert [a.outcome for a in before] == [Out.ATTEMPT_OUTCOME_WORKER_LOST, Out.ATTEMPT_OUTCOME_ACTIVE]
    assert loaded.past_attempts is not None and loaded.past_attempts[0].outcome is Outcome.WORKER_LOST


def test_a_store_from_before_the_history_is_upgraded_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "kueue.sqlite3")
    db.executescript(
        """
        CREATE TABLE specs (id INTEGER PRIMARY KEY, spec BLOB NOT NULL);
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY, spec_id INTEGER NOT NULL, extra_env TEXT, state INTEGER NOT NULL,
            issued_at REAL, offered_at REAL, started_at REAL, finished_at REAL, attempt INTEGER,
            worker_id TEXT, worker_name TEXT, exit_code INTEGER, signal INTEGER, run_time REAL,
            peak_memory INTEGER, comment TEXT, stdout_bytes INTEGER, stderr_bytes INTEGER,
            output_truncated INTEGER, kill_requested INTEGER);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema', '1');
        """
    )
    spec = common_pb2.JobSpec(command=["true"], cwd="/tmp", resources=common_pb2.Resources(slots=1))
    db.execute("INSERT INTO specs VALUES (1, ?)", (spec.SerializeToString(),))
    db.execute(
        "INSERT INTO jobs VALUES (7, 1, NULL, 4, 1.0, 2.0, 3.0, 4.0, 2, 'w', 'w', 0, 0, 1.0, 0, '', 0, 0, 0, 0)"
    )
    db.commit()
    db.close()
    store = Store(tmp_path, 1 << 20)
    (job,) = store.load().jobs
    store.close()
    assert job.id == 7 and job.state is State.SUCCEEDED and job.past_attempts is None
    assert job.start_failure == 0  # NULL in a row from before the column
    (last,) = convert.attempt_messages(job)  # what came before attempt 2 is unknown
    assert (last.number, last.outcome) == (2, Out.ATTEMPT_OUTCOME_FINISHED)
