"""The durable copy of the server's state: SQLite in WAL mode.

A writer thread commits batches that do file work (output, removals) or are
large. Batches queued while it commits are merged into its next transaction
(group commit), so many state changes cost one commit. A batch's future
resolves only after its commit, which is what lets the server acknowledge
after durable.

A small batch of rows (a few state changes: the bulk of the traffic) is
committed on the caller's thread when the writer has nothing in hand: such a
commit takes tens of microseconds, while the hop to the thread and back (a
queue, a wake-up, the self-pipe, the GIL changing hands) cost several times
that. WAL checkpoints, which write the database file and sync it, are left to
the writer thread on a connection of its own, so they never stall the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kueue import process_lock
from kueue.v1 import common_pb2
from kueue_server import output_files
from kueue_server.convert import (
    ADDED_JOB_COLUMNS,
    JOB_COLUMNS,
    NEW_JOB_COLUMNS,
    NEW_JOB_DEFAULTS,
    job_from_row,
)
from kueue_server.model import JobRecord, Machine, WorkerRecord

log = logging.getLogger(__name__)

# sqlite3 (3.11) adapts every parameter that is not exactly an int, float,
# str or bytearray: for None that is two failed attribute lookups (about
# 0.8 us), and a job row holds three to five of them. A registered adapter
# answers at once: dict.get returns None for any key, which binds as NULL.
sqlite3.register_adapter(type(None), {}.get)

SCHEMA = """
CREATE TABLE IF NOT EXISTS specs (id INTEGER PRIMARY KEY, spec BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, spec_id INTEGER NOT NULL, extra_env TEXT, state INTEGER NOT NULL,
    issued_at REAL, offered_at REAL, started_at REAL, finished_at REAL, attempt INTEGER,
    worker_id TEXT, worker_name TEXT, exit_code INTEGER, signal INTEGER, run_time REAL,
    peak_memory INTEGER, comment TEXT, stdout_bytes INTEGER, stderr_bytes INTEGER,
    output_truncated INTEGER, kill_requested INTEGER, past_attempts TEXT);
CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, name TEXT NOT NULL, system BLOB);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
SCHEMA_VERSION = "1"
# Added to workers since: an operator's drain (kueue drain) outlives a
# restart; the machine of a worker's process (Register.machine), so that its
# jobs count against its machine before it is back.
ADDED_WORKER_COLUMNS = [("drained", "INTEGER"), ("machine", "TEXT")]
# Largest batch committed on the caller's thread: rows cost ~10 us each, so
# this bounds the stall of the event loop to about a millisecond.
MAX_INLINE_ROWS = 64
# Commits between two WAL checkpoints. SQLite's own default (1000 pages)
# comes to a few hundred of our commits, so the WAL stays as small as before.
CHECKPOINT_EVERY = 256


class StoreError(Exception):
    """The store could not commit; what was acknowledged before is safe."""

    def __init__(self, message: str, *, out_of_space: bool = False) -> None:
        super().__init__(message)
        self.out_of_space = out_of_space


@dataclass
class OutputWrite:
    job_id: int
    attempt: int
    stream: int
    offset: int
    data: bytes


@dataclass
class Batch:
    specs: list[tuple[int, bytes]] = field(default_factory=list)
    jobs: list[tuple[Any, ...]] = field(default_factory=list)
    # Rows of jobs as submitted, their first NEW_JOB_COLUMNS (convert.SUBMITTED_TAIL), written before `jobs`.
    new_jobs: list[tuple[Any, ...]] = field(default_factory=list)
    deleted_jobs: list[int] = field(default_factory=list)
    # id, name, SystemInfo, drained by an operator, machine ("": none)
    workers: list[tuple[str, str, bytes, bool, str]] = field(default_factory=list)
    outputs: list[OutputWrite] = field(default_factory=list)
    # Drop specs no job refers to any more (after cleanups).
    gc_specs: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.specs
            or self.new_jobs
            or self.jobs
            or self.deleted_jobs
            or self.workers
            or self.outputs
            or self.gc_specs
        )


# Asks the writer thread for a WAL checkpoint.
CHECKPOINT = object()
_Item = tuple[Batch, "asyncio.Future[list[int]]"] | object


@dataclass
class Loaded:
    jobs: list[JobRecord]
    workers: list[WorkerRecord]
    next_spec_id: int
    # No job id below this is given out again: ids of jobs removed since
    # (kueue clean) stay unused, whatever outlives them (output files, a
    # client's `kueue log -f`).
    next_job_id: int = 1


class Store:
    def __init__(self, data_dir: Path, output_cap_bytes: int, *, in_memory: bool = False) -> None:
        """in_memory keeps the database in memory (nothing survives a restart):
        only for measuring what durability costs (kueue_server --ephemeral-store)."""
        self.path = data_dir / "kueue.sqlite3"
        self.output_root = data_dir / "output"
        self._in_memory = in_memory
        self._lock_fd = _lock_data_dir(data_dir)
        try:
            self._db = self._open(data_dir)
        except (sqlite3.Error, OSError) as exc:
            self._unlock()
            raise _cannot_open(data_dir, exc) from None
        self.outputs = output_files.OutputFiles(self.output_root, output_cap_bytes)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Held while the connection is in use: the writer thread and inline
        # commits (and close()) never use it at the same time.
        self._lock = threading.Lock()
        # Batches handed to the writer thread and not yet settled (event loop
        # only): while any are, later batches queue behind them to keep order.
        self._queued = 0
        self._commits = 0
        self._checkpointer: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_failure_log = -1e9
        # Told how long each commit took and whether it succeeded (from the
        # writer thread, or the caller's for an inline commit).
        self.on_commit: Callable[[float, bool], None] | None = None

    def _open(self, data_dir: Path) -> sqlite3.Connection:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            ":memory:" if self._in_memory else self.path, check_same_thread=False, isolation_level=None
        )
        if not self._in_memory:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of the process (the case we
            # promise); only a power loss may lose the last commits.
            db.execute("PRAGMA synchronous=NORMAL")
            # The writer thread checkpoints (see CHECKPOINT_EVERY), not
            # whichever commit happens to fill the WAL, which may be inline.
            db.execute("PRAGMA wal_autocheckpoint=0")
        # SQLite's default page cache is 2 MB; with 100 000 jobs the table is
        # several times that, and every commit re-read pages the OS had to
        # hand over again (dispatch with 100 000 queued ran ~15% slower than
        # with 1 000). Pages are only held as they are used.
        db.execute("PRAGMA cache_size=-65536")
        db.executescript(SCHEMA)
        version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif version[0] != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version[0]} is not supported by this server")
        # New columns are optional (NULL in old rows), so an older server can
        # still open the file: no new schema version for them.
        have = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        for name, kind in ADDED_JOB_COLUMNS:
            if name not in have:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        have = {row[1] for row in db.execute("PRAGMA table_info(workers)")}
        for name, kind in ADDED_WORKER_COLUMNS:
            if name not in have:
                db.execute(f"ALTER TABLE workers ADD COLUMN {name} {kind}")
        return db

    def load(self) -> Loaded:
        try:
            return self._load()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"the store {self.path} is damaged ({exc}): restore it from a backup, or move it "
                "away to start with an empty one"
            ) from None

    def _load(self) -> Loaded:
        specs = {}
        next_spec_id = 1
        for spec_id, blob in self._db.execute("SELECT id, spec FROM specs"):
            specs[spec_id] = common_pb2.JobSpec.FromString(blob)
            next_spec_id = max(next_spec_id, spec_id + 1)
        jobs = [job_from_row(row, specs) for row in self._db.execute(f"SELECT {JOB_COLUMNS} FROM jobs")]
        floor = self._db.execute("SELECT value FROM meta WHERE key='next_job_id'").fetchone()
        next_job_id = max([int(floor[0]) if floor else 1, *(job.id + 1 for job in jobs)])
        # Output of jobs whose rows are gone: a crash between the commit that
        # removed them and the removal of their files, or a database deleted
        # by hand. Left there, a new job under such an id would show it.
        self.outputs.remove_all_but({job.id for job in jobs})
        workers = []
        for worker_id, name, system, drained, machine in self._db.execute(
            "SELECT id, name, system, drained, machine FROM workers"
        ):
            worker = WorkerRecord(id=worker_id, name=name, drained_by_operator=bool(drained))
            if machine:
                worker.machine = Machine(machine)
            if system:
                worker.system = common_pb2.SystemInfo.FromString(system)
            workers.append(worker)
        return Loaded(jobs, workers, next_spec_id, next_job_id)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="kueue-store-writer", daemon=True)
        self._thread.start()

    async def write(self, batch: Batch) -> list[int]:
        """Commit a batch; returns the jobs whose captured output was truncated by the cap."""
        assert self._loop is not None
        if not self._queued and _inline(batch):
            error = self._commit_group([batch])
            self._count_commit()
            if error is not None:
                raise error
            return []
        future: asyncio.Future[list[int]] = self._loop.create_future()
        self._queued += 1
        self._queue.put((batch, future))
        try:
            return await future
        finally:
            self._queued -= 1
            self._count_commit()

    def _count_commit(self) -> None:
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and not self._in_memory:
            self._queue.put(CHECKPOINT)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        with self._lock:
            self.outputs.close()
            self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                group: list[tuple[Batch, asyncio.Future[list[int]]]] = []
                checkpoint = stop = False
                while True:
                    if item is None:
                        stop = True
                        break
                    if item is CHECKPOINT:
                        checkpoint = True
                    else:
                        group.append(item)  # type: ignore[arg-type]
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if group:
                    self._commit_queued(group)
                if checkpoint:
                    self._checkpoint()
                if stop:
                    return
        finally:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None

    def _commit_queued(self, group: list[tuple[Batch, asyncio.Future[list[int]]]]) -> None:
        truncated: list[int] = []
        error = self._commit_group([batch for batch, _ in group], truncated)
        assert self._loop is not None
        # One wake-up of the event loop for the whole group.
        self._loop.call_soon_threadsafe(_settle_all, [f for _, f in group], error, truncated)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file, mostly without holding up commits."""
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            # SQLite starts the WAL over only if it is wholly copied when a
            # commit begins; commits made during the copy above prevent that.
            # Their few pages are copied now with commits held off (well under
            # a millisecond), or the WAL would grow as long as commits go on.
            with self._lock:
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # a full disk: the WAL grows until the next one succeeds
            self._log_failure(exc)

    def _commit_group(self, group: list[Batch], truncated: list[int] | None = None) -> Exception | None:
        """Commit the batches in one transaction: None, or the StoreError.
        Jobs whose output the cap truncated are added to `truncated`."""
        began = time.perf_counter()
        error: Exception | None = None
        with self._lock:
            error = self._commit_locked(group, truncated)
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began, error is None)
        return error

    def _commit_locked(self, group: list[Batch], truncated: list[int] | None) -> Exception | None:
        try:
            for batch in group:
                for w in batch.outputs:
                    if self.outputs.append(w.job_id, w.attempt, w.stream, w.offset, w.data):
                        assert truncated is not None
                        truncated.append(w.job_id)
            self.outputs.flush()
            db = self._db
            db.execute("BEGIN")
            try:
                for batch in group:
                    if batch.specs:
                        db.executemany("INSERT OR REPLACE INTO specs VALUES (?, ?)", batch.specs)
                    if batch.new_jobs:
                        db.executemany(_PUT_NEW_JOB, batch.new_jobs)
                    if batch.jobs:
                        db.executemany(_PUT_JOB, batch.jobs)
                    if batch.deleted_jobs:
                        db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in batch.deleted_jobs])
                        db.execute(_RAISE_JOB_ID_FLOOR, (max(batch.deleted_jobs) + 1,))
                    if batch.workers:
                        db.executemany(
                            "INSERT OR REPLACE INTO workers (id, name, system, drained, machine) VALUES (?, ?, ?, ?, ?)",
                            batch.workers,
                        )
                    if batch.gc_specs:
                        db.execute("DELETE FROM specs WHERE id NOT IN (SELECT DISTINCT spec_id FROM jobs)")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            for batch in group:
                for job_id in batch.deleted_jobs:
                    self.outputs.remove_job(job_id)
        except Exception as exc:  # disk full, I/O error: fail these writes, keep serving
            self._log_failure(exc)
            # Forget cached file sizes: the retry re-reads them from disk and
            # skips whatever prefix did get written.
            with contextlib.suppress(OSError):
                self.outputs.close()
            space = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
            space = space or "full" in str(exc)  # sqlite3 reports SQLITE_FULL as "database or disk is full"
            return StoreError(
                f"the server could not store the change ({exc}); nothing was changed, try again later",
                out_of_space=space,
            )
        return None

    def _log_failure(self, exc: Exception) -> None:
        # Retries come every second while the disk is full: one line a minute.
        now = time.monotonic()
        if now - self._last_failure_log >= 60.0:
            log.error("store commit failed (retrying; repeated failures not logged for 60 s): %s", exc)
            self._last_failure_log = now


def _lock_data_dir(data_dir: Path) -> int | None:
    """Hold data_dir for the life of the process (its descriptor; None where
    the file system has no locks). Two servers on one store (a second host
    on a shared home) would hand out the same job ids and lose each other's
    jobs: the second one must not start."""
    path = data_dir / "server.lock"
    try:
        return process_lock.hold(path, f"pid {os.getpid()} on {socket.gethostname()}")
    except process_lock.Held as held:
        raise StoreError(
            f"another kueue_server{f' ({held.holder})' if held.holder else ''} uses the store in {data_dir}; "
            "stop it first, or give this one another server_settings.data_dir"
        ) from None
    except process_lock.Unsupported as exc:
        log.warning("%s: cannot lock (%s); not guarding against a second server on this store", path, exc)
        return None
    except OSError as exc:
        raise _cannot_open(data_dir, exc) from None


def _cannot_open(data_dir: Path, exc: Exception) -> StoreError:
    """One line for the operator: a directory in the way, no permission, a
    file that is no database."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if data_dir.exists() and not data_dir.is_dir():
        reason = f"{data_dir} is not a directory"
    return StoreError(
        f"cannot open the store {data_dir / 'kueue.sqlite3'}: {reason} (check server_settings.data_dir)"
    )


# meta's next_job_id only ever grows.
_RAISE_JOB_ID_FLOOR = """INSERT INTO meta VALUES ('next_job_id', ?1) ON CONFLICT(key)
    DO UPDATE SET value = max(CAST(value AS INTEGER), ?1)"""


def _marks(n: int) -> str:
    return ", ".join("?" * n)


_PUT_JOB = f"INSERT OR REPLACE INTO jobs ({JOB_COLUMNS}) VALUES ({_marks(len(JOB_COLUMNS.split(',')))})"
_PUT_NEW_JOB = (
    f"INSERT OR REPLACE INTO jobs ({JOB_COLUMNS}) VALUES ({_marks(NEW_JOB_COLUMNS)}, {NEW_JOB_DEFAULTS})"
)


def _inline(batch: Batch) -> bool:
    """Whether the batch is only a few rows: no file work, no table scan."""
    return (
        not batch.outputs
        and not batch.deleted_jobs
        and not batch.gc_specs
        and len(batch.jobs) + len(batch.new_jobs) + len(batch.specs) + len(batch.workers) <= MAX_INLINE_ROWS
    )


def _settle_all(
    futures: list[asyncio.Future[list[int]]], error: Exception | None, truncated: list[int]
) -> None:
    for future in futures:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(truncated)
