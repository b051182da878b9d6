"""The store's two commit paths (inline for a few rows, the writer thread for
the rest) on a real SQLite file: order kept between them, WAL kept small."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kueue.v1 import common_pb2
from kueue_server import convert
from kueue_server.model import JobRecord, Outcome, PastAttempt, Shape, State
from kueue_server.store import CHECKPOINT_EVERY, Batch, OutputWrite, Store, StoreError


def make_job(job_id: int) -> JobRecord:
    spec = common_pb2.JobSpec(command=["true"], cwd="/tmp")
    return JobRecord(job_id, 1, spec, {"I": str(job_id)}, Shape.of(spec.resources), issued_at=time.time())


def stored_state(path: Path, job_id: int) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    finally:
        db.close()


def test_a_small_batch_never_overtakes_a_queued_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path, 1 << 20)
        store.start(asyncio.get_running_loop())
        job = make_job(1)
        await store.write(Batch(specs=[(1, job.spec.SerializeToString())], jobs=[convert.job_row(job)]))
        # The first goes to the writer thread (it has output); the second,
        # a later state of the same row, is small but must wait its turn.
        job.state = State.RUNNING
        first = Batch(jobs=[convert.job_row(job)], outputs=[OutputWrite(1, 1, 1, 0, b"x" * 100_000)])
        job.state = State.SUCCEEDED
        second = Batch(jobs=[convert.job_row(job)])
        await asyncio.gather(store.write(first), store.write(second))
        store.close()

    asyncio.run(scenario())
    assert stored_state(tmp_path / "kueue.sqlite3", 1) == State.SUCCEEDED


def test_the_wal_is_checkpointed_though_commits_are_inline(tmp_path: Path) -> None:
    commits = 8 * CHECKPOINT_EVERY

    async def scenario() -> None:
        store = Store(tmp_path, 1 << 20)
        store.start(asyncio.get_running_loop())
        jobs = [make_job(i) for i in range(1, 201)]
        await store.write(
            Batch(specs=[(1, jobs[0].spec.SerializeToString())], jobs=[convert.job_row(j) for j in jobs])
        )
        for n in range(commits):
            job = jobs[n % len(jobs)]
            job.attempt += 1
            await store.write(Batch(jobs=[convert.job_row(job)]))
        # A batch for the writer thread runs after the checkpoints queued before it.
        await store.write(Batch(gc_specs=True))
        # Frames in the WAL since it last started over: each commit appends at
        # least one, so without checkpoints there would be more than commits.
        db = sqlite3.connect(tmp_path / "kueue.sqlite3")
        _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        db.close()
        store.close()
        assert frames < commits / 2

    asyncio.run(scenario())
    db = sqlite3.connect(tmp_path / "kueue.sqlite3")
    assert db.execute("SELECT COUNT(*), SUM(attempt) FROM jobs").fetchone() == (200, commits)
    db.close()


def stored_rows(path: Path) -> list[tuple[object, ...]]:
    """Every column of every job row, with the type SQLite holds it as."""
    db = sqlite3.connect(path)
    try:
        names = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
        typed = ", ".join(f"{n}, typeof({n})" for n in names)
        return db.execute(f"SELECT {typed} FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize("state", [State.PENDING, State.CANCELED])
@pytest.mark.parametrize("extra_env", [{"KUEUE_ARRAY_ID": "7"}, None])
def test_a_job_as_submitted_is_stored_as_its_full_row_would_be(
    tmp_path: Path, extra_env: object, state: State
) -> None:
    """A row whose tail is as submitted, written as its first columns plus
    the store's literal defaults, is the very row job_row makes (values and
    SQLite types), and it loads back the same; its state is written either
    way (a job canceled while queued)."""
    rows = {}
    job = make_job(1)
    job.extra_env = extra_env  # type: ignore[assignment]
    job.state = state
    full = convert.job_row(job)
    assert full[convert.NEW_JOB_COLUMNS :] == convert.SUBMITTED_TAIL
    for way in ("new", "full"):
        if way == "new":
            batch = Batch(
                specs=[(1, job.spec.SerializeToString())], new_jobs=[full[: convert.NEW_JOB_COLUMNS]]
            )
        else:
            batch = Batch(specs=[(1, job.spec.SerializeToString())], jobs=[full])
        directory = tmp_path / way

        async def scenario(directory: Path = directory, batch: Batch = batch) -> None:
            store = Store(directory, 1 << 20)
            store.start(asyncio.get_running_loop())
            await store.write(batch)
            store.close()

        asyncio.run(scenario())
        rows[way] = stored_rows(directory / "kueue.sqlite3")
        reopened = Store(directory, 1 << 20)
        [loaded] = reopened.load().jobs
        reopened.close()
        assert convert.job_row(loaded) == full
    assert rows["new"] == rows["full"]


@pytest.mark.parametrize(
    "touch",
    [
        lambda j: setattr(j, "offered_at", 1.0),
        lambda j: setattr(j, "started_at", 1.0),
        lambda j: setattr(j, "finished_at", 1.0),
        lambda j: setattr(j, "attempt", 1),
        lambda j: setattr(j, "worker_id", "w"),
        lambda j: setattr(j, "worker_name", "w"),
        lambda j: setattr(j, "exit_code", 0),
        lambda j: setattr(j, "signal", 9),
        lambda j: setattr(j, "run_time", 0.5),
        lambda j: setattr(j, "peak_memory", 1),
        lambda j: setattr(j, "comment", "held"),
        lambda j: setattr(j, "stdout_bytes", 1),
        lambda j: setattr(j, "stderr_bytes", 1),
        lambda j: setattr(j, "output_truncated", True),
        lambda j: setattr(j, "kill_requested", True),
        lambda j: setattr(
            j, "past_attempts", [PastAttempt(1, "w", "w", 1.0, 2.0, 3.0, Outcome.WORKER_LOST, "")]
        ),
    ],
)
def test_a_job_touched_after_its_submission_gets_its_full_row(touch: object) -> None:
    """Any column past the first ones that differs from a new job's sends the
    job to the full row: the literal defaults would lose it."""
    job = make_job(1)
    touch(job)  # type: ignore[operator]
    assert convert.job_row(job)[convert.NEW_JOB_COLUMNS :] != convert.SUBMITTED_TAIL


def test_the_literal_defaults_are_a_new_jobs_row() -> None:
    """SUBMITTED_TAIL is what job_row makes of a job just created."""
    assert convert.job_row(make_job(1))[convert.NEW_JOB_COLUMNS :] == convert.SUBMITTED_TAIL


@given(st.dictionaries(st.text(), st.text(), min_size=1, max_size=5))
def test_a_stored_env_reads_back_as_json_dumps_wrote_it(env: dict[str, str]) -> None:
    job = make_job(1)
    job.extra_env = env
    text = convert.job_row(job)[2]
    assert text == json.dumps(env)
    assert json.loads(text) == env


def test_a_store_of_an_older_server_gains_the_new_worker_columns_and_keeps_its_workers(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / "kueue.sqlite3")
    # The workers table as the first servers made it, with one worker in it.
    db.executescript(
        "CREATE TABLE workers (id TEXT PRIMARY KEY, name TEXT NOT NULL, system BLOB);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "INSERT INTO workers VALUES ('old', 'w-old', NULL);"
    )
    db.commit()
    db.close()

    async def scenario() -> None:
        store = Store(tmp_path, 1 << 20)
        assert [(w.id, w.name, w.drained_by_operator) for w in store.load().workers] == [
            ("old", "w-old", False)
        ]
        store.start(asyncio.get_running_loop())
        await store.write(Batch(workers=[("new", "w-new", b"", True, ""), ("p2", "w/2", b"", False, "w")]))
        store.close()

    asyncio.run(scenario())
    store = Store(tmp_path, 1 << 20)
    workers = {
        w.id: (w.drained_by_operator, w.machine.key if w.machine else None) for w in store.load().workers
    }
    store.close()
    assert workers == {"old": (False, None), "new": (True, None), "p2": (False, "w")}


def test_a_store_that_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "in-the-way").mkdir()
    (tmp_path / "in-the-way" / "kueue.sqlite3").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "kueue.sqlite3").write_bytes(b"not a database, " * 1000)
    (tmp_path / "a-file").write_text("")
    for data_dir, reason in (
        (tmp_path / "in-the-way", "unable to open database file"),
        (tmp_path / "garbage", "file is not a database"),
        (tmp_path / "a-file", f"{tmp_path / 'a-file'} is not a directory"),
    ):
        with pytest.raises(StoreError) as caught:
            Store(data_dir, 1 << 20)
        message = str(caught.value)
        assert message.startswith(f"cannot open the store {data_dir / 'kueue.sqlite3'}: {reason}"), message
        assert "server_settings.data_dir" in message and "\n" not in message


def test_ids_of_removed_jobs_are_not_given_out_again_and_orphan_output_goes(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path, 1 << 20)
        store.start(asyncio.get_running_loop())
        jobs = [make_job(i) for i in (1, 2, 3)]
        await store.write(
            Batch(
                specs=[(1, jobs[0].spec.SerializeToString())],
                jobs=[convert.job_row(j) for j in jobs],
                outputs=[OutputWrite(3, 1, 1, 0, b"old output of 3")],
            )
        )
        await store.write(Batch(deleted_jobs=[2, 3]))  # kueue clean
        store.close()

    asyncio.run(scenario())
    # As if the server died between the commit and the removal of the files,
    # and output of a job whose row was deleted by hand.
    for job_id in (3, 7):
        (tmp_path / "output" / str(job_id)).mkdir(parents=True, exist_ok=True)
        (tmp_path / "output" / str(job_id) / "leftover").write_bytes(b"x")
    store = Store(tmp_path, 1 << 20)
    loaded = store.load()
    store.close()
    assert [j.id for j in loaded.jobs] == [1]
    assert loaded.next_job_id == 4  # not 2: 2 and 3 were given out before
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == []


def test_a_second_store_on_one_data_dir_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = Store(tmp_path, 1 << 20)
    with pytest.raises(StoreError) as caught:
        Store(tmp_path, 1 << 20)
    message = str(caught.value)
    assert message.startswith("another kueue_server (pid "), message
    assert f"uses the store in {tmp_path}; stop it first" in message
    first.close()
    Store(tmp_path, 1 << 20).close()


def test_a_damaged_store_is_one_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path, 1 << 20)
    store.close()
    db = sqlite3.connect(tmp_path / "kueue.sqlite3")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    # Garbage over the jobs table's page (the third; the schema and meta
    # stay whole): the file opens, reading the jobs fails.
    path = tmp_path / "kueue.sqlite3"
    db = sqlite3.connect(path)
    (jobs_page,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    with open(path, "r+b") as f:
        f.seek((jobs_page - 1) * page_size)
        f.write(b"\xa5" * page_size)
    store = Store(tmp_path, 1 << 20)
    with pytest.raises(StoreError) as caught:
        store.load()
    store.close()
    message = str(caught.value)
    assert message.startswith(f"the store {path} is damaged ("), message
    assert "restore it from a backup" in message and "\n" not in message
