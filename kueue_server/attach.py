"""Attached runs (`kueue run`): one client stream tied to one job.

Output reaches the client through a tap, straight from the worker stream,
for low latency. A tap holds a bounded number of bytes; when a slow client
lets it overflow, chunks are dropped and the gap is filled from the captured
output files (the capped, durable copy) before anything later is sent, so the
client sees every byte in order or a notice saying how many were lost.

A paced client (`kueue run`) never lets it overflow: it acknowledges what it
has consumed, and the job's worker reads no more than OUTPUT_WINDOW beyond
that (App.pace), so the job blocks on its full pipe as it would with a slow
reader at home. When the client goes, the limit goes with it (close_tap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal as signals

import grpc
from google.protobuf.message import DecodeError

from kueue import wire
from kueue.v1 import common_pb2
from kueue.v1 import job_service_pb2 as jpb
from kueue_server import convert, output_files
from kueue_server.app import App
from kueue_server.attach_tap import Chunk, StdinAck, Tap
from kueue_server.model import FINAL, JobRecord, State
from kueue_server.scheduler import SchedulerError
from kueue_server.watchers import StreamsClosed, Watch

log = logging.getLogger("kueue_server")

READ_CHUNK = 1024 * 1024
# After the final state, how long the client may take to end the call.
CLIENT_CLOSE_SECONDS = 5.0
# Keeps a client's output offsets (and their sum) within a uint64.
MAX_OFFSET = 1 << 60
_OUTPUT = wire.BytesEnvelope(jpb.AttachResponse, "output")
# Signals that, before the job has started, mean "never mind": cancel it.
CANCELING_SIGNALS = frozenset({signals.SIGINT, signals.SIGTERM, signals.SIGHUP, signals.SIGQUIT})


class AttachSession:
    """Serves one Attach stream: submit, relay, and end with the job."""

    def __init__(self, app: App, context: grpc.aio.ServicerContext) -> None:
        self.app = app
        self.context = context
        self.job_id = 0
        self.kill_on_detach = False
        self.sent_state: tuple[int, int] | None = None  # (state, attempt) last sent
        self.attempt = 0  # attempt whose output offsets `sent` counts
        self.sent = {1: 0, 2: 0}
        self.tap: Tap | None = None
        # The worker of the job's attempt whose absence the client was told of.
        self.told_gone: str | None = None
        # The client's stdout has no reader: each attempt's stdout pipe is
        # closed once it runs (closed_attempt: the last one closed).
        self.stdout_closed = False
        self.closed_attempt = 0

    async def run(self, first: jpb.AttachRequest) -> None:
        app = self.app
        start = first.start
        spec = common_pb2.JobSpec()
        spec.CopyFrom(start.spec)
        spec.stdin_pipe = True
        self.kill_on_detach = start.kill_on_detach
        taps: list[tuple[Tap, Watch]] = []

        def attach(jobs: list[JobRecord]) -> None:
            watch = app.watchers.add([jobs[0].id])
            tap = Tap(jobs[0].id, watch.event, paced=start.paced_output)
            app.open_tap(tap)
            taps.append((tap, watch))

        try:
            (job,), warnings = await app.submit(spec, on_created=attach)
        except BaseException:
            for tap, watch in taps:
                app.close_tap(tap)
                app.watchers.remove(watch)
            raise
        self.job_id = job.id
        ((tap, watch),) = taps
        self.tap = tap
        reader = asyncio.create_task(self._read_requests())
        try:
            await self.context.write(
                jpb.AttachResponse(accepted=jpb.AttachAccepted(job_id=job.id, warnings=warnings))
            )
            if await self._relay(tap, watch):
                # The client has it all: let it end the call. Ending it here
                # while a request of its is on the way (stdin, an output ack)
                # makes grpc fail the call on its side, unread responses too.
                with contextlib.suppress(Exception):  # a timeout, or the reader's failure
                    await asyncio.wait_for(asyncio.shield(reader), CLIENT_CLOSE_SECONDS)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            app.close_tap(tap)
            app.watchers.remove(watch)
            self._detach()

    async def _relay(self, tap: Tap, watch: Watch) -> bool:
        """Until the job has ended (True once its final state is sent)."""
        app = self.app
        while True:
            job = app.scheduler.jobs.get(self.job_id)
            if job is None:
                return False  # cleaned away under us: nothing more to say
            if job.state not in FINAL:
                # The final state goes last, after all of the output.
                await self._send_job_if_changed(job)
                await self._tell_if_worker_gone(job)
                self._close_stdout_if_running(job)
            while (item := tap.pop()) is not None:
                if isinstance(item, StdinAck):
                    if item.attempt == job.attempt:
                        await self.context.write(
                            jpb.AttachResponse(
                                stdin_ack=jpb.AttachStdinAck(attempt=item.attempt, offset=item.offset)
                            )
                        )
                elif item.attempt == job.attempt:
                    await self._send_output(job, item)
            if job.state in FINAL:
                await self._catch_up(job)
                await self._send_job_if_changed(job)
                return True
            if tap.dropped:
                tap.dropped = False
                await self._catch_up(job)
            # No await between these checks and the wait: nothing is missed.
            if not tap.items and not tap.dropped and (int(job.state), job.attempt) == self.sent_state:
                watch.take()  # clears the event, which job changes share with the tap
                await tap.event.wait()
            if watch.closed:
                raise StreamsClosed

    async def _tell_if_worker_gone(self, job: JobRecord) -> None:
        """Say when the job's worker drops its stream, and when it is back: the
        job stays running on it for up to worker_timeout_seconds, silent."""
        scheduler = self.app.scheduler
        worker = scheduler.workers.get(job.worker_id) if job.state in (State.OFFERED, State.RUNNING) else None
        if worker is not None and not worker.connected and self.told_gone != worker.id:
            self.told_gone = worker.id
            timeout = scheduler.limits.worker_timeout
            await self.context.write(
                jpb.AttachResponse(
                    notice=f"worker {worker.name} lost its connection to the server; job {job.id} goes on "
                    f"there if it is back within {timeout:.0f} s, else it is queued again"
                )
            )
        elif self.told_gone is not None and (
            worker is None or worker.id != self.told_gone or worker.connected
        ):
            if worker is not None and worker.id == self.told_gone:
                await self.context.write(jpb.AttachResponse(notice=f"worker {worker.name} is back"))
            self.told_gone = None

    async def _send_job_if_changed(self, job: JobRecord) -> None:
        key = (int(job.state), job.attempt)
        if key == self.sent_state:
            return
        self.sent_state = key
        if job.attempt != self.attempt:
            self.attempt = job.attempt
            self.sent = {1: 0, 2: 0}
        await self.context.write(jpb.AttachResponse(job=convert.job_message(job)))

    async def _send_output(self, job: JobRecord, chunk: Chunk) -> None:
        if chunk.attempt != self.attempt:
            self.attempt = chunk.attempt
            self.sent = {1: 0, 2: 0}
        if chunk.offset > self.sent[chunk.stream]:
            await self._fill(job, chunk.stream, chunk.offset)
        skip = self.sent[chunk.stream] - chunk.offset
        if skip >= len(chunk.data):
            return
        data = chunk.data[skip:] if skip > 0 else chunk.data
        await self._write_output(chunk.stream, self.sent[chunk.stream], data)

    async def _write_output(self, stream: int, offset: int, data: bytes) -> None:
        # Encoded by hand: protobuf would copy the megabyte three times.
        head = jpb.AttachOutput(attempt=self.attempt, stream=stream, offset=offset)
        await self.context.write(_OUTPUT.encode(head, data))
        self.sent[stream] = offset + len(data)

    async def _catch_up(self, job: JobRecord) -> None:
        for stream in (1, 2):
            end = job.stdout_bytes if stream == 1 else job.stderr_bytes
            await self._fill(job, stream, end)

    async def _fill(self, job: JobRecord, stream: int, end: int) -> None:
        """Send [sent, end) of a stream from the captured files."""
        root = self.app.store.output_root
        while self.sent[stream] < end:
            start, data = await asyncio.to_thread(
                output_files.read, root, job.id, job.attempt, stream, self.sent[stream], end, READ_CHUNK
            )
            if start > self.sent[stream]:
                lost = start - self.sent[stream]
                name = "stdout" if stream == 1 else "stderr"
                await self.context.write(
                    jpb.AttachResponse(
                        notice=f"{lost} bytes of {name} were dropped (the server keeps the last "
                        f"{self.app.config.server_settings.job_output_cap_mb} MiB; the client fell behind)"
                    )
                )
                self.sent[stream] = start
            if not data:
                return  # not yet written by the store: the tap or the next round brings it
            await self._write_output(stream, start, data)

    async def _read_requests(self) -> None:
        app = self.app
        while True:
            try:
                msg = await self.context.read()
            except DecodeError:
                # Nothing more from this client can be trusted: read no further.
                log.info("job %d: malformed AttachRequest; ignoring the rest of the stream", self.job_id)
                return
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("msg")
            job = app.scheduler.jobs.get(self.job_id)
            if job is None or job.state in FINAL:
                continue
            if kind == "stdin":
                s = msg.stdin
                app.send_stdin(job, s.attempt, s.offset, s.data, s.eof)
            elif kind == "signal":
                await self._signal(job, msg.signal)
            elif kind == "kill":
                await self._cancel(job, kill=True)
            elif kind == "stdout_closed":
                self.stdout_closed = True
                self._close_stdout_if_running(job)
            elif kind == "output_ack" and self.tap is not None:
                a = msg.output_ack
                # Offsets are the client's word: nonsense only unpaces its own job.
                consumed = min(a.stdout_offset, MAX_OFFSET) + min(a.stderr_offset, MAX_OFFSET)
                if self.tap.output_ack(a.attempt, consumed):
                    app.pace(job)

    def _close_stdout_if_running(self, job: JobRecord) -> None:
        if self.stdout_closed and job.state is State.RUNNING and job.attempt != self.closed_attempt:
            self.closed_attempt = job.attempt
            self.app.close_stdout(job)

    async def _signal(self, job: JobRecord, signum: int) -> None:
        if job.state is State.RUNNING:
            self.app.signal_job(job, signum)
        elif signum in CANCELING_SIGNALS:
            await self._cancel(job, kill=True)

    async def _cancel(self, job: JobRecord, *, kill: bool) -> None:
        with contextlib.suppress(SchedulerError):
            self.app.scheduler.cancel(job.id, kill, self.app.clock())
            self.app.kick()

    def _detach(self) -> None:
        app = self.app
        job = app.scheduler.jobs.get(self.job_id)
        if job is None or job.state in FINAL:
            return
        if self.kill_on_detach:
            log.info("job %d: attached client gone, killing it (--kill-on-detach)", job.id)
            with contextlib.suppress(SchedulerError):
                app.scheduler.cancel(job.id, True, app.clock())
            app.kick()
        else:
            log.info("job %d: attached client gone, the job goes on detached", job.id)
            app.send_stdin(job, job.attempt, 0, b"", True)
