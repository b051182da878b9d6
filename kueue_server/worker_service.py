"""kueue.v1.WorkerService: one bidirectional stream per connected worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

import grpc
from google.protobuf.message import DecodeError

import kueue
from kueue import rpc, wire, write_pace
from kueue.v1 import worker_service_pb2 as wpb
from kueue.v1 import worker_service_pb2_grpc
from kueue_server.app import App, WorkerConn
from kueue_server.model import Amount
from kueue_server.store import OutputWrite

log = logging.getLogger("kueue_server")

# Output offsets past this are nonsense (a petabyte); refusing them keeps every
# counter within protobuf's and SQLite's integer ranges.
MAX_OUTPUT_OFFSET = 1 << 50
MAX_SQLITE_INT = (1 << 63) - 1
# Worker-supplied text that ends up in a job's comment.
MAX_REASON_CHARS = 4096
# At most this many messages, or about this many bytes, in one batch write.
BATCH_MESSAGES = 256
BATCH_BYTES = 1024 * 1024
# See the worker's writer (kueue_worker/connection.py) and kueue.write_pace.
COALESCE_SECONDS = write_pace.QUIET_SECONDS
BATCH_FIELD = wpb.ConnectResponse.DESCRIPTOR.fields_by_name["batch"].number
# While a stream is held back (App.OUTPUT_HELD_LIMIT), how often its worker is
# marked as heard from: the silence is ours, not the worker's.
HELD_BACK_TOUCH_SECONDS = 1.0


class _Malformed(Exception):
    """A message on the stream did not decode."""


def _consume(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()


class WorkerService(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self, app: App) -> None:
        self.app = app

    async def Connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        app = self.app
        if app.stopping:
            # Came in as the server began to stop: the same goodbye as the others got.
            await context.abort(grpc.StatusCode.UNAVAILABLE, rpc.SERVER_STOPPING)
        try:
            first = await context.read()
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed ConnectRequest")
        if first is grpc.aio.EOF or first.WhichOneof("msg") != "register":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be Register")
        reg = first.register
        if not reg.worker_id or not reg.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Register needs worker_id and name")
        peer = rpc.peer_address(context.peer())
        worker = app.scheduler.connect_worker(
            reg.worker_id,
            reg.name,
            Amount(reg.capacity.slots, reg.capacity.cpus, reg.capacity.ram_mb),
            reg.system,
            peer,
            [
                (a.job_id, a.attempt)
                for a in reg.attempts
                if not a.HasField("finished") and not a.waiting and not a.killed_after_restart
            ],
            app.clock(),
            finished=[(a.job_id, a.attempt) for a in reg.attempts if a.HasField("finished")],
            draining=reg.draining,
            waiting=[(a.job_id, a.attempt) for a in reg.attempts if a.waiting and not a.HasField("finished")],
            prefetch=reg.prefetch,
            killed={
                (a.job_id, a.attempt): a.started_at
                for a in reg.attempts
                if a.killed_after_restart and not a.HasField("finished")
            },
            machine=reg.machine,
            machine_capacity=Amount(0, reg.machine_capacity.cpus, reg.machine_capacity.ram_mb),
        )
        old = app.conns.get(worker.id)
        if old is not None:
            old.close()
        conn = WorkerConn(
            worker.id,
            worker.session,
            batches=reg.batches,
            windows=reg.output_windows,
            environ_blocks=reg.environ_blocks,
            close_output=reg.close_output,
        )
        app.conns[worker.id] = conn
        app.observer.worker_connected(worker, peer, len(reg.attempts))
        # Attached clients of its jobs learn it is back (AttachSession).
        app.watchers.notify(list(worker.jobs))
        conn.send(
            wpb.ConnectResponse(
                registered=wpb.Registered(
                    worker_id=worker.id,
                    heartbeat_interval_seconds=app.heartbeat_interval(),
                    server_version=kueue.__version__,
                    batches=True,
                )
            )
        )
        app.resend_windows(
            conn,
            [
                (a.job_id, a.attempt)
                for a in reg.attempts
                if not a.HasField("finished") and not a.killed_after_restart
            ],
        )
        # Finished attempts in the report are only "known" here: the worker
        # resends their output and then their Finished, in that order, and
        # recording the finish first would refuse the output as stale.
        app.kick()
        writer = asyncio.create_task(self._write(conn, context))
        # One task reads for the whole stream (not one wait per message: at
        # hundreds of short jobs a second that overhead showed in profiles).
        reader = asyncio.create_task(self._read(conn, context))
        # A read left behind when the call ends must not log "never retrieved".
        reader.add_done_callback(_consume)
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done and app.stopping:
                # The server is going (App.part_from_workers): say so rather
                # than end the stream as for a replaced or dropped worker.
                context.set_code(grpc.StatusCode.UNAVAILABLE)
                context.set_details(rpc.SERVER_STOPPING)
            # Else the stream ended, or was replaced by a newer one, or the worker was dropped.
            failure = reader.exception() if reader in done and not reader.cancelled() else None
            if isinstance(failure, _Malformed):
                log.warning("worker %s sent a malformed message; dropping its stream", worker.name)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed ConnectRequest")
            elif failure is not None and not isinstance(failure, grpc.aio.AioRpcError):
                log.error("worker %s: handling its stream failed", worker.name, exc_info=failure)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            for task in (reader, writer):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if app.conns.get(worker.id) is conn:
                del app.conns[worker.id]
            app.scheduler.disconnect_worker(worker.id, conn.session, app.clock())
            app.kick()
            app.observer.worker_disconnected(worker.id, worker.name)
            # Attached clients of its jobs are told (AttachSession): their
            # output has stopped, and the job's state will not say why for
            # up to worker_timeout_seconds.
            app.watchers.notify(list(worker.jobs))

    async def _read(self, conn: WorkerConn, context: grpc.aio.ServicerContext) -> None:
        while True:
            try:
                msg = await context.read()
            except DecodeError as exc:
                raise _Malformed() from exc
            if msg is grpc.aio.EOF:
                return
            if msg.WhichOneof("msg") == "batch":
                for inner in msg.batch.messages:
                    if inner.WhichOneof("msg") in ("batch", "register"):
                        raise _Malformed()
                    self._handle(conn, inner)
            else:
                self._handle(conn, msg)
            if self.app.output_backlogged():
                await self._hold_back(conn)

    async def _hold_back(self, conn: WorkerConn) -> None:
        app = self.app
        while app.output_backlogged():
            app.scheduler.touch(conn.worker_id, app.clock())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(app.output_room(), HELD_BACK_TOUCH_SECONDS)

    async def _write(self, conn: WorkerConn, context: grpc.aio.ServicerContext) -> None:
        outbox = conn.outbox
        while True:
            if conn.batches and outbox.empty():
                msg = await outbox.get()
                # After a quiet moment: let what else is about to go (the
                # next flush's offers and acknowledgements) share the write.
                await asyncio.sleep(COALESCE_SECONDS)
            else:
                msg = await outbox.get()
            if msg is None:
                return
            # Registered goes alone: the worker learns from it that batches come.
            if (
                not conn.batches
                or outbox.empty()
                or (not isinstance(msg, bytes) and msg.HasField("registered"))
            ):
                await context.write(msg)
                continue
            # What queued up meanwhile goes in one write.
            batch = [msg]
            size = wire.size(msg)
            end = False
            while not outbox.empty() and len(batch) < BATCH_MESSAGES and size < BATCH_BYTES:
                more = outbox.get_nowait()
                if more is None:
                    end = True
                    break
                batch.append(more)
                size += wire.size(more)
            await context.write(wire.batch(BATCH_FIELD, batch) if len(batch) > 1 else batch[0])
            if end:
                return
            if len(batch) < BATCH_MESSAGES and size < BATCH_BYTES:
                # Not full: what comes next a moment later shares the next write.
                await asyncio.sleep(write_pace.after_batch(len(batch)))

    def _handle(self, conn: WorkerConn, msg: wpb.ConnectRequest) -> None:
        app = self.app
        sched = app.scheduler
        now = app.clock()
        wid = conn.worker_id
        sched.touch(wid, now)
        kind = msg.WhichOneof("msg")
        if kind == "heartbeat":
            hb = msg.heartbeat
            ext = hb.external_use
            sched.heartbeat(wid, hb.system, Amount(0, ext.cpus, ext.ram_mb), now, draining=hb.draining)
            app.kick()
        elif kind == "output":
            self._output(conn, msg.output)
        elif kind == "finished":
            self._finished(conn, msg.finished)
        elif kind == "started":
            s = msg.started
            sched.started(wid, s.job_id, s.attempt, now)
            app.kick()
        elif kind == "assignment_reply":
            r = msg.assignment_reply
            reason = r.reason[:MAX_REASON_CHARS]
            sched.assignment_reply(
                wid,
                r.job_id,
                r.attempt,
                r.accepted,
                reason,
                r.transient,
                now,
                queued=r.queued,
                handed_back=r.handed_back,
            )
            if not r.accepted and not r.handed_back:
                # The requeue is logged (with this reason) once committed.
                log.debug("job %d attempt %d rejected by %s: %s", r.job_id, r.attempt, wid[:8], reason[:200])
            app.kick()
        elif kind == "stdin_ack":
            a = msg.stdin_ack
            if sched.is_current(wid, a.job_id, a.attempt):
                app.tap_stdin_ack(a.job_id, a.attempt, a.offset)
        elif kind == "leaving":
            worker = sched.workers.get(wid)
            app.observer.worker_leaving(
                wid, worker.name if worker else wid[:8], msg.leaving.reason[:MAX_REASON_CHARS]
            )
            sched.worker_leaving(wid, now)
            app.kick()
        elif kind == "register":
            log.warning("worker %s sent Register twice; ignored", wid[:8])

    def _output(self, conn: WorkerConn, out: wpb.Output) -> None:
        app = self.app
        # Each read of a bytes field makes a new copy: once only.
        data = out.data
        if out.stream not in (1, 2) or out.offset + len(data) > MAX_OUTPUT_OFFSET:
            # Nonsense: dropped without an acknowledgement, the job unchanged.
            log.debug(
                "worker %s sent output with stream %d offset %d: ignored",
                conn.worker_id[:8],
                out.stream,
                out.offset,
            )
            return
        verdict = app.scheduler.output(
            conn.worker_id, out.job_id, out.attempt, out.stream, out.offset, len(data)
        )
        if verdict is None:
            return  # stale attempt: its kill is on the way
        skip, end = verdict
        if skip < len(data):
            if skip:
                data = data[skip:]
            app.add_output(OutputWrite(out.job_id, out.attempt, out.stream, out.offset + skip, data))
            app.tap_output(out.job_id, out.attempt, out.stream, out.offset + skip, data)
        ack = wpb.ConnectResponse(
            output_ack=wpb.OutputAck(job_id=out.job_id, attempt=out.attempt, stream=out.stream, offset=end)
        )
        app.ack_after_commit(lambda: conn.send(ack))

    def _finished(self, conn: WorkerConn, fin: wpb.Finished) -> None:
        app = self.app
        app.scheduler.finished(
            conn.worker_id,
            fin.job_id,
            fin.attempt,
            fin.exit_code if fin.HasField("exit_code") else None,
            fin.signal,
            run_time if math.isfinite(run_time := fin.run_time_seconds) and run_time >= 0 else 0.0,
            min(fin.peak_memory_bytes, MAX_SQLITE_INT),
            fin.error[:MAX_REASON_CHARS],
            app.clock(),
            fin.start_failure,
        )
        # Stale or not, the worker may forget it once our state is durable.
        ack = wpb.ConnectResponse(finished_ack=wpb.FinishedAck(job_id=fin.job_id, attempt=fin.attempt))
        app.ack_after_commit(lambda: conn.send(ack))
