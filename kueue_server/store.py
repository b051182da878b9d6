"""The durable copy of the server's state: SQLite in WAL mode.

One writer thread owns the connection and the output files. Batches queued
while it commits are merged into its next transaction (group commit), so many
state changes cost one commit. A batch's future resolves only after its
commit, which is what lets the server acknowledge after durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kueue.v1 import common_pb2
from kueue_server import output_files
from kueue_server.convert import ADDED_JOB_COLUMNS, JOB_COLUMNS, job_from_row
from kueue_server.model import JobRecord, WorkerRecord

log = logging.getLogger(__name__)

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
    deleted_jobs: list[int] = field(default_factory=list)
    workers: list[tuple[str, str, bytes]] = field(default_factory=list)
    outputs: list[OutputWrite] = field(default_factory=list)
    # Drop specs no job refers to any more (after cleanups).
    gc_specs: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.specs or self.jobs or self.deleted_jobs or self.workers or self.outputs or self.gc_specs
        )


@dataclass
class Loaded:
    jobs: list[JobRecord]
    workers: list[WorkerRecord]
    next_spec_id: int


class Store:
    def __init__(self, data_dir: Path, output_cap_bytes: int, *, in_memory: bool = False) -> None:
        """in_memory keeps the database in memory (nothing survives a restart):
        only for measuring what durability costs (kueue_server --ephemeral-store)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "kueue.sqlite3"
        self.output_root = data_dir / "output"
        self._db = sqlite3.connect(
            ":memory:" if in_memory else self.path, check_same_thread=False, isolation_level=None
        )
        if not in_memory:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of the process (the case we
            # promise); only a power loss may lose the last commits.
            self._db.execute("PRAGMA synchronous=NORMAL")
        # SQLite's default page cache is 2 MB; with 100 000 jobs the table is
        # several times that, and every commit re-read pages the OS had to
        # hand over again (dispatch with 100 000 queued ran ~15% slower than
        # with 1 000). Pages are only held as they are used.
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.executescript(SCHEMA)
        version = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif version[0] != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version[0]} is not supported by this server")
        # New columns are optional (NULL in old rows), so an older server can
        # still open the file: no new schema version for them.
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in ADDED_JOB_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        self.outputs = output_files.OutputFiles(self.output_root, output_cap_bytes)
        self._queue: queue.SimpleQueue[tuple[Batch, asyncio.Future[list[int]]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_failure_log = -1e9
        # Told (from the writer thread) how long each commit took and whether it succeeded.
        self.on_commit: Callable[[float, bool], None] | None = None

    def load(self) -> Loaded:
        specs = {}
        next_spec_id = 1
        for spec_id, blob in self._db.execute("SELECT id, spec FROM specs"):
            specs[spec_id] = common_pb2.JobSpec.FromString(blob)
            next_spec_id = max(next_spec_id, spec_id + 1)
        jobs = [job_from_row(row, specs) for row in self._db.execute(f"SELECT {JOB_COLUMNS} FROM jobs")]
        workers = []
        for worker_id, name, system in self._db.execute("SELECT id, name, system FROM workers"):
            worker = WorkerRecord(id=worker_id, name=name)
            if system:
                worker.system = common_pb2.SystemInfo.FromString(system)
            workers.append(worker)
        return Loaded(jobs, workers, next_spec_id)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="kueue-store-writer", daemon=True)
        self._thread.start()

    async def write(self, batch: Batch) -> list[int]:
        """Commit a batch; returns the jobs whose captured output was truncated by the cap."""
        assert self._loop is not None
        future: asyncio.Future[list[int]] = self._loop.create_future()
        self._queue.put((batch, future))
        return await future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self.outputs.close()
        self._db.close()

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stop = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            self._commit_group(group)
            if stop:
                return

    def _commit_group(self, group: list[tuple[Batch, asyncio.Future[list[int]]]]) -> None:
        began = time.perf_counter()
        truncated: list[int] = []
        error: Exception | None = None
        try:
            for batch, _ in group:
                for w in batch.outputs:
                    if self.outputs.append(w.job_id, w.attempt, w.stream, w.offset, w.data):
                        truncated.append(w.job_id)
            self.outputs.flush()
            db = self._db
            db.execute("BEGIN")
            try:
                for batch, _ in group:
                    if batch.specs:
                        db.executemany("INSERT OR REPLACE INTO specs VALUES (?, ?)", batch.specs)
                    if batch.jobs:
                        db.executemany(
                            f"INSERT OR REPLACE INTO jobs ({JOB_COLUMNS}) VALUES ({_marks(21)})", batch.jobs
                        )
                    if batch.deleted_jobs:
                        db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in batch.deleted_jobs])
                    if batch.workers:
                        db.executemany("INSERT OR REPLACE INTO workers VALUES (?, ?, ?)", batch.workers)
                    if batch.gc_specs:
                        db.execute("DELETE FROM specs WHERE id NOT IN (SELECT DISTINCT spec_id FROM jobs)")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            for batch, _ in group:
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
            error = StoreError(
                f"the server could not store the change ({exc}); nothing was changed, try again later",
                out_of_space=space,
            )
        if self.on_commit is not None:
            self.on_commit(time.perf_counter() - began, error is None)
        assert self._loop is not None
        for _, future in group:
            self._loop.call_soon_threadsafe(_settle, future, error, truncated)

    def _log_failure(self, exc: Exception) -> None:
        # Retries come every second while the disk is full: one line a minute.
        now = time.monotonic()
        if now - self._last_failure_log >= 60.0:
            log.error("store commit failed (retrying; repeated failures not logged for 60 s): %s", exc)
            self._last_failure_log = now


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _settle(future: asyncio.Future[list[int]], error: Exception | None, truncated: list[int]) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(truncated)
