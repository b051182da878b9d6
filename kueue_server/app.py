"""The running server: scheduler core, store, watchers and worker streams on one
event loop.

Handlers change the core and call `kick()`. One flusher task then runs
dispatch, turns the core's effects into one store batch, waits for its commit,
and only then sends assignments and acknowledgements and wakes watchers. While
a commit is in flight, new changes gather for the next one (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kueue import wire
from kueue.config import Config
from kueue.logs import one_write
from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_server import convert
from kueue_server.attach_tap import Chunk, StdinAck, Tap, read_limit
from kueue_server.limits import check_sizes, check_spawnable, exec_size_warnings
from kueue_server.model import ACTIVE, JobRecord, State
from kueue_server.observe import Observer
from kueue_server.scheduler import Effects, Limits, Scheduler
from kueue_server.store import Batch, OutputWrite, Store
from kueue_server.watchers import Watchers

log = logging.getLogger("kueue_server")

TICK_SECONDS = 1.0
STORE_RETRY_SECONDS = 1.0
# Output received but not yet durable waits in memory. Past this much the worker
# streams stop reading until a commit frees some: gRPC flow control then holds
# the workers back, which spool it or pause their jobs' pipes. Without the bound
# a job printing without end made every batch bigger than the last (a bigger
# batch takes longer to commit, while a bigger one gathers), gigabytes of them.
OUTPUT_HELD_LIMIT = 16 * 1024 * 1024

_STDIN = wire.BytesEnvelope(wpb.ConnectResponse, "stdin")

# Called after the commit that holds the change: None, or the store's error.
AfterCommit = Callable[[Exception | None], None]


@dataclass
class WorkerConn:
    """The server's end of one worker's Connect stream."""

    worker_id: str
    session: int
    # Messages, or bytes encoded by kueue.wire.
    outbox: asyncio.Queue[wpb.ConnectResponse | bytes | None] = field(default_factory=asyncio.Queue)
    # The worker reads ConnectResponse.batch (Register.batches).
    batches: bool = False
    # The worker obeys OutputWindow (Register.output_windows).
    windows: bool = False
    # The worker takes Assign.environ (Register.environ_blocks).
    environ_blocks: bool = False
    # The worker obeys CloseOutput (Register.close_output).
    close_output: bool = False

    def send(self, msg: wpb.ConnectResponse | bytes) -> None:
        self.outbox.put_nowait(msg)

    def close(self) -> None:
        self.outbox.put_nowait(None)


class App:
    def __init__(
        self, config: Config, *, clock: Callable[[], float] = time.time, ephemeral_store: bool = False
    ) -> None:
        self.config = config
        self.clock = clock
        self.started_at = clock()
        s = config.server_settings
        self.store = Store(config.data_dir, s.job_output_cap_mb * 1024 * 1024, in_memory=ephemeral_store)
        loaded = self.store.load()
        self.scheduler = Scheduler(
            Limits(
                global_max_parallel_jobs=s.global_max_parallel_jobs,
                worker_timeout=float(s.worker_timeout_seconds),
                offer_timeout=float(s.job_offer_timeout_seconds),
                cleanup_after=s.job_cleanup_after_minutes * 60.0,
                global_resources=dict(config.global_resources),
            )
        )
        self.scheduler.next_job_id = loaded.next_job_id
        self.scheduler.load(loaded.jobs, loaded.workers, self.clock())
        # Log events and metrics of what each commit made durable.
        self.observer = Observer(self.scheduler, clock, self.started_at)
        self.store.on_commit = self.observer.store_committed
        for job in loaded.jobs:
            if job.state in ACTIVE:
                # Output written to files but not committed before a crash would
                # otherwise sit between what we acknowledged and what is resent.
                self.store.outputs.trim(job.id, job.attempt, 1, job.stdout_bytes)
                self.store.outputs.trim(job.id, job.attempt, 2, job.stderr_bytes)
        self.next_spec_id = loaded.next_spec_id
        self.conns: dict[str, WorkerConn] = {}
        # Attached clients (kueue run) by job id.
        self.taps: dict[int, set[Tap]] = {}
        # The read limit last sent for a job's attempt, while it has one.
        self._windows: dict[int, tuple[int, int]] = {}
        self.watchers = Watchers()
        self._assigns = convert.AssignEncoder()
        self._batch = Batch()
        self._after_commit: list[AfterCommit] = []
        # Acknowledgements to workers: sent after the next commit that succeeds
        # (kept across failed ones, or the worker would hold its data until it
        # next reconnects).
        self._acks: list[Callable[[], None]] = []
        # Bytes of output in the batches not yet committed (see OUTPUT_HELD_LIMIT).
        self._output_held = 0
        self._output_room = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Set by part_from_workers(): the server is going and takes no workers.
        self.stopping = False
        # Whether the last commit succeeded; told to on_store_health when it
        # changes (the health service says NOT_SERVING while the store fails).
        self.store_ok = True
        self.on_store_health: Callable[[bool], None] | None = None
        log.info(
            "store %s: %d jobs loaded (%s)",
            self.store.path,
            len(loaded.jobs),
            ", ".join(f"{n} {st.name.lower()}" for st, n in self.scheduler.counts.items() if n) or "empty",
        )

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.store.start(asyncio.get_running_loop())
        self._tasks = [asyncio.create_task(self._flusher()), asyncio.create_task(self._ticker())]
        self.kick()

    async def part_from_workers(self) -> None:
        """The server is stopping: make durable what the workers have sent so
        far, which acknowledges it to them, then end each worker's stream
        with a goodbye (WorkerService ends it with kueue.rpc.SERVER_STOPPING).
        They keep their jobs and report them to the next server; what they
        send from now on is not acknowledged, so they send it again then."""
        self.stopping = True
        try:
            await self.commit()
        except Exception as exc:  # a failing store: they resend what was not acknowledged
            log.warning("could not store the workers' last messages before stopping: %s", exc)
        goodbye = wpb.ConnectResponse(server_stopping=wpb.ServerStopping())
        for conn in list(self.conns.values()):
            # After the acknowledgements just queued: the outbox keeps order.
            conn.send(goodbye)
            conn.close()

    async def stop(self) -> None:
        for conn in self.conns.values():
            conn.close()
        # Let the last changes reach the store before closing it.
        with contextlib.suppress(Exception):
            await self.flush_now()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.store.close)

    def kick(self) -> None:
        self._wake.set()

    async def commit(self) -> None:
        """Wait until everything changed so far is durable (raises StoreError)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(error: Exception | None) -> None:
            if not future.done():
                future.set_exception(error) if error else future.set_result(None)

        self._after_commit.append(settle)
        self.kick()
        await future

    def ack_after_commit(self, send: Callable[[], None]) -> None:
        self._acks.append(send)
        self.kick()

    def add_output(self, write: OutputWrite) -> None:
        self._batch.outputs.append(write)
        self._output_held += len(write.data)

    def output_backlogged(self) -> bool:
        return self._output_held > OUTPUT_HELD_LIMIT

    async def output_room(self) -> None:
        """Returns once the output waiting for a commit is within OUTPUT_HELD_LIMIT."""
        while self._output_held > OUTPUT_HELD_LIMIT:
            self._output_room.clear()
            self.kick()
            await self._output_room.wait()

    def add_spec(self, spec: common_pb2.JobSpec) -> int:
        spec_id = self.next_spec_id
        self.next_spec_id += 1
        self._batch.specs.append((spec_id, spec.SerializeToString()))
        return spec_id

    def request_spec_gc(self) -> None:
        self._batch.gc_specs = True

    # ------------------------------------------------------------------ flusher

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if not await self.flush_now():
                    # The store failed; retry the kept batch later, not in a busy loop.
                    await asyncio.sleep(STORE_RETRY_SECONDS)
                    self.kick()
            except Exception:  # never let one bad flush stop the server
                log.exception("flush failed")

    def _store_health(self, ok: bool) -> None:
        if ok == self.store_ok:
            return
        self.store_ok = ok
        if ok:
            log.info("the store takes commits again")
        if self.on_store_health is not None:
            self.on_store_health(ok)

    async def flush_now(self) -> bool:
        """One round of dispatch and commit; False when the store failed."""
        now = self.clock()
        self.scheduler.dispatch(now)
        effects = self.scheduler.take_effects()
        batch, self._batch = self._batch, Batch()
        callbacks, self._after_commit = self._after_commit, []
        acks, self._acks = self._acks, []
        self._fill_batch(batch, effects)
        error: Exception | None = None
        if batch:
            try:
                truncated = await self.store.write(batch)
            except Exception as exc:
                error = exc
            else:
                self._mark_truncated(truncated)
                if batch.outputs:
                    self._output_held -= sum(len(w.data) for w in batch.outputs)
                    if self._output_held <= OUTPUT_HELD_LIMIT:
                        self._output_room.set()
            # Only a write says how the store is: an empty round succeeds anyway.
            self._store_health(error is None)
        if error is None:
            self._carry_out(effects)
            with one_write():
                self.observer.committed(effects)
            for send in acks:
                send()
        else:
            self._acks[:0] = acks
            # Nothing of this batch is durable, so nobody is told; it is tried
            # again with the next one (output appends are idempotent by offset).
            self._batch = _merge(batch, self._batch)
            self.scheduler.put_back(effects)
        for callback in callbacks:
            try:
                callback(error)
            except Exception:
                log.exception("after-commit callback failed")
        return error is None

    def _fill_batch(self, batch: Batch, effects: Effects) -> None:
        jobs = self.scheduler.jobs
        for j in effects.dirty:
            job = jobs.get(j)
            if job is None:
                continue
            row = convert.job_row(job)
            if row[convert.NEW_JOB_COLUMNS :] == convert.SUBMITTED_TAIL:
                batch.new_jobs.append(row[: convert.NEW_JOB_COLUMNS])
            else:
                batch.jobs.append(row)
        batch.deleted_jobs.extend(effects.removed)
        for worker_id in effects.workers:
            worker = self.scheduler.workers.get(worker_id)
            if worker is not None:
                batch.workers.append(
                    (
                        worker.id,
                        worker.name,
                        worker.system.SerializeToString(),
                        worker.drained_by_operator,
                        worker.machine.key if worker.machine is not None else "",
                    )
                )

    def _mark_truncated(self, job_ids: list[int]) -> None:
        for job_id in set(job_ids):
            job = self.scheduler.jobs.get(job_id)
            if job is not None and not job.output_truncated:
                job.output_truncated = True
                self._batch.jobs.append(convert.job_row(job))
                self.watchers.notify([job_id])

    def _carry_out(self, effects: Effects) -> None:
        for a in effects.assign:
            conn = self.conns.get(a.worker_id)
            job = a.job
            if (
                conn is None
                or conn.session != a.session
                or job.state is not State.OFFERED
                or self.scheduler.jobs.get(job.id) is not job
            ):
                continue  # the reconnect or the offer timeout takes care of it
            conn.send(self._assigns.encode(job, environ_block=conn.environ_blocks))
            if job.id in self.taps:
                self.pace(job)
            elif job.spec.stdin_pipe:
                # Nobody attached (any more): the process reads end of file.
                self.send_stdin(job, job.attempt, 0, b"", True)
        for k in effects.kill:
            conn = self.conns.get(k.worker_id)
            if conn is not None:
                conn.send(wpb.ConnectResponse(kill=wpb.Kill(job_id=k.job_id, attempt=k.attempt)))
        for r in effects.retract:
            conn = self.conns.get(r.worker_id)
            if conn is not None:
                conn.send(wpb.ConnectResponse(retract=wpb.Retract(job_id=r.job_id, attempt=r.attempt)))
        for worker_id in effects.drop_workers:
            conn = self.conns.pop(worker_id, None)
            if conn is not None:
                conn.close()
        self.watchers.notify(effects.dirty | effects.removed)
        if effects.removed:
            self.request_spec_gc()
            self.kick()

    async def _ticker(self) -> None:
        maintenance = 0.0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = self.clock()
            self.scheduler.tick(now)
            if now - maintenance >= self.config.server_settings.maintenance_interval_seconds:
                maintenance = now
                self.scheduler.dispatch(now)  # heals anything a missed kick left behind
            self.kick()

    # ------------------------------------------------------------ submission

    async def submit(
        self,
        spec: common_pb2.JobSpec,
        extra: list[dict[str, str] | None] | None = None,
        on_created: Callable[[list[JobRecord]], None] | None = None,
    ) -> tuple[list[JobRecord], list[str]]:
        """Validate, queue and commit jobs (raises SchedulerError / StoreError).

        on_created runs before the jobs can be dispatched: an attached client
        must be in place before the worker is told about stdin."""
        check_sizes(spec, len(extra or ()))
        check_spawnable(spec)
        warnings = self.scheduler.validate(spec) + exec_size_warnings(
            spec, extra and [e or {} for e in extra]
        )
        spec_id = self.add_spec(spec)
        jobs = self.scheduler.submit(spec_id, spec, extra or [None], self.clock())
        if on_created is not None:
            on_created(jobs)
        try:
            await self.commit()
        except Exception:
            self.scheduler.retract(job.id for job in jobs)
            self.kick()
            raise
        return jobs, warnings

    # ------------------------------------------------------------- attached runs

    def open_tap(self, tap: Tap) -> None:
        self.taps.setdefault(tap.job_id, set()).add(tap)

    def close_tap(self, tap: Tap) -> None:
        taps = self.taps.get(tap.job_id)
        if taps is not None:
            taps.discard(tap)
            if not taps:
                del self.taps[tap.job_id]
        job = self.scheduler.jobs.get(tap.job_id)
        if tap.paced and job is not None:
            self.pace(job)  # a job must never wait for a client that left

    def tap_output(self, job_id: int, attempt: int, stream: int, offset: int, data: bytes) -> None:
        for tap in self.taps.get(job_id, ()):
            tap.put_output(Chunk(attempt, stream, offset, data))

    def pace(self, job: JobRecord) -> None:
        """Tell the job's worker how far it may read the current attempt's
        output: as far as its slowest paced client allows."""
        limit = read_limit(self.taps.get(job.id, ()), job.attempt)
        last = self._windows.get(job.id, (job.attempt, 0))
        if job.state not in ACTIVE:
            self._windows.pop(job.id, None)
            return
        if last == (job.attempt, limit):
            return
        if limit:
            self._windows[job.id] = (job.attempt, limit)
        else:
            self._windows.pop(job.id, None)
        conn = self.conns.get(job.worker_id)
        if conn is not None and conn.windows:
            conn.send(_window(job.id, job.attempt, limit))

    def resend_windows(self, conn: WorkerConn, attempts: list[tuple[int, int]]) -> None:
        """After Registered: the read limit of each attempt the worker
        reported, which keeps what it was told before (0 releases it: this
        server may be a new one that paces nothing)."""
        if not conn.windows:
            return
        for job_id, attempt in attempts:
            job = self.scheduler.jobs.get(job_id)
            limit = 0
            if (
                job is not None
                and job.attempt == attempt
                and job.worker_id == conn.worker_id
                and job.state in ACTIVE
            ):
                limit = read_limit(self.taps.get(job_id, ()), attempt)
            if limit:
                self._windows[job_id] = (attempt, limit)
            elif (known := self._windows.get(job_id)) is not None and known[0] == attempt:
                del self._windows[job_id]
            conn.send(_window(job_id, attempt, limit))

    def tap_stdin_ack(self, job_id: int, attempt: int, offset: int) -> None:
        for tap in self.taps.get(job_id, ()):
            tap.put_ack(StdinAck(attempt, offset))

    def send_stdin(self, job: JobRecord, attempt: int, offset: int, data: bytes, eof: bool) -> None:
        conn = self.conns.get(job.worker_id)
        if conn is None or attempt != job.attempt or job.state not in ACTIVE:
            return  # stale or not placed: the client resends for the next attempt
        # Encoded by hand: protobuf would copy the megabyte three times.
        conn.send(_STDIN.encode(wpb.Stdin(job_id=job.id, attempt=attempt, offset=offset, eof=eof), data))

    def signal_job(self, job: JobRecord, signum: int) -> None:
        conn = self.conns.get(job.worker_id)
        if conn is not None and job.state in ACTIVE:
            conn.send(
                wpb.ConnectResponse(
                    signal_job=wpb.SignalJob(job_id=job.id, attempt=job.attempt, signal=signum)
                )
            )

    def close_stdout(self, job: JobRecord) -> None:
        """The attached client's stdout has no reader: close the running
        attempt's stdout pipe (SIGPIPE to its group on a worker that cannot)."""
        conn = self.conns.get(job.worker_id)
        if conn is None or job.state is not State.RUNNING:
            return
        if conn.close_output:
            conn.send(
                wpb.ConnectResponse(
                    close_output=wpb.CloseOutput(
                        job_id=job.id, attempt=job.attempt, stream=common_pb2.OUTPUT_STREAM_STDOUT
                    )
                )
            )
        else:
            self.signal_job(job, signal.SIGPIPE)

    # ------------------------------------------------------------------ workers

    def heartbeat_interval(self) -> float:
        return max(0.2, self.config.server_settings.worker_timeout_seconds / 4)


def _window(job_id: int, attempt: int, limit: int) -> wpb.ConnectResponse:
    return wpb.ConnectResponse(output_window=wpb.OutputWindow(job_id=job_id, attempt=attempt, limit=limit))


def _merge(first: Batch, second: Batch) -> Batch:
    return Batch(
        specs=first.specs + second.specs,
        jobs=first.jobs + second.jobs,
        new_jobs=first.new_jobs + second.new_jobs,
        deleted_jobs=first.deleted_jobs + second.deleted_jobs,
        workers=first.workers + second.workers,
        outputs=first.outputs + second.outputs,
        gc_specs=first.gc_specs or second.gc_specs,
    )
