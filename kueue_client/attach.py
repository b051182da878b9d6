"""`kueue run`: a job attached to this process, as if it ran here.

One JobService.Attach stream carries everything: the job's output, state and
stdin acknowledgements come down; stdin, signals and a kill go up. It runs on
an asyncio loop so that output is written the moment it arrives, whatever
stdin does: stdin is read by a thread of its own (a blocking read works on
pipes, files and terminals alike, and never holds the loop up).

Attempts: the server starts the job afresh when its worker is lost. Output
carries its attempt, so the lost attempt's bytes are never mixed with the new
one's; stdin is kept (up to STDIN_REPLAY_CAP) and sent again from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

import kueue.rpc
from kueue import wire
from kueue.v1 import common_pb2, job_service_pb2, job_service_pb2_grpc
from kueue_client.errors import KueueError, from_rpc_error
from kueue_client.output import write_all
from kueue_client.status import FINAL_STATES, SIGNAL_EXIT_BASE, exit_status, why_not_run

JobState = common_pb2.JobState
T = TypeVar("T")

# Un-acknowledged stdin in flight, like a real pipe's buffer: a job that reads
# nothing holds at most this much, and a fast writer is slowed to the job's pace.
# Several messages' worth, so that the next ones travel while the worker
# writes the first into the pipe (one message in flight would halve the rate).
STDIN_WINDOW = 4 << 20
# stdin kept for replay when the job restarts; beyond it the new attempt gets EOF.
STDIN_REPLAY_CAP = 16 << 20
# Large messages: per-message costs, not bytes, limit a big `kueue run cat < file`.
STDIN_CHUNK = 1 << 20
# The job's output is paced to ours (AttachStart.paced_output): the server
# lets its worker read 4 MiB beyond what we acknowledged as written out; we
# acknowledge every this much, well within that window.
OUTPUT_ACK_STEP = 1 << 20
# Stdin messages are encoded by hand (kueue.wire): no copies of their data.
_STDIN_REQUEST = wire.BytesEnvelope(job_service_pb2.AttachRequest, "stdin")
# A second Ctrl-C this soon after the first kills the job for good.
DOUBLE_INTERRUPT_SECONDS = 2.0
# After a kill, how long to wait for the server to report the job ended
# before leaving anyway (it goes on being killed without us).
KILL_WAIT_SECONDS = 3.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Like ssh: kueue itself failed (server unreachable or lost), not the job.
EXIT_LOST_SERVER = 255
EXIT_INTERRUPTED = SIGNAL_EXIT_BASE + signal.SIGINT
STDOUT, STDERR = common_pb2.OUTPUT_STREAM_STDOUT, common_pb2.OUTPUT_STREAM_STDERR
# A background process reading its terminal gets EIO (SIGTTIN is ignored):
# look again this often until it is brought to the foreground.
BACKGROUND_POLL_SECONDS = 0.2
STATUS_DELAY_SECONDS = 0.25
# For the calls that find out how a job ended after its stream broke.
RECOVER_TIMEOUT_SECONDS = 10.0


@dataclass
class AttachResult:
    """How an attached run ended.

    `exit_status` is what `kueue run` exits with; `job` is the last state seen
    (None if the server never accepted the job); `detached` is true when the
    connection was lost while the job had not ended, so it may still run.
    """

    job_id: int | None
    job: common_pb2.Job | None
    exit_status: int
    detached: bool = False


def describe_resources(res: common_pb2.Resources) -> str:
    parts = [f"{res.cpus} cpu{'s' if res.cpus != 1 else ''}", f"{res.ram_mb} MB RAM"]
    if res.slots != 1:
        parts.insert(0, f"{res.slots} slots")
    parts += [f"{n} {name}" for name, n in sorted(res.global_resources.items())]
    return ", ".join(parts)


# ---------------------------------------------------------------- stdin


class StdinFeed:
    """Standard input for the current attempt, with flow control and replay.

    Touched only from the event loop, except for the reader thread, which
    reads only while the loop lets it (`_may_read`) and hands each chunk over
    with call_soon_threadsafe.
    """

    def __init__(
        self,
        fd: int | None,
        wake: Callable[[], None],
        notice: Callable[[str], None],
        *,
        window: int | None = None,
        replay_cap: int | None = None,
        chunk: int | None = None,
    ) -> None:
        self.fd = fd
        self._wake = wake
        self._notice = notice
        self.window = window or STDIN_WINDOW
        self.replay_cap = replay_cap or STDIN_REPLAY_CAP
        self.chunk = chunk or STDIN_CHUNK
        # What was read and may still be needed: stdin bytes [base, total), as
        # read (no copies: a read of a whole chunk goes out as it is).
        self.chunks: deque[bytes] = deque()
        self.base = 0
        self.total = 0
        # The chunk holding `sent` (or one before it): chunks[_index] starts at _index_start.
        self._index = 0
        self._index_start = 0
        self.eof = fd is None
        # Once over the cap, acknowledged bytes are dropped: no more replay.
        self.keep_all = True
        # The attempt being fed; sends start when it runs (`active`).
        self.attempt = 0
        self.active = False
        self.sent = 0
        self.acked = 0
        self.eof_sent = False
        # The attempt gets EOF only: its stdin could not be replayed.
        self.starved = False
        self._may_read = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    # -- driven by the session

    def new_attempt(self, attempt: int) -> None:
        if attempt == self.attempt:
            return
        first = self.attempt == 0
        self.attempt = attempt
        self.active = False
        self.sent = self.acked = 0
        self._seek(0)
        self.eof_sent = False
        if not first and self.base > 0 and not self.starved:
            self.starved = True
            self._notice(
                f"standard input cannot be replayed to the new attempt (more than "
                f"{self.replay_cap >> 20} MiB were read); it gets end of file"
            )
        self._update_reading()

    def start(self, attempt: int) -> None:
        """The attempt runs: stdin may flow (the reader starts on the first call)."""
        if attempt != self.attempt or self.active:
            return
        self.active = True
        if self._thread is None and not self.eof and self.fd is not None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._read_loop, name="kueue-stdin", daemon=True)
            self._update_reading()
            self._thread.start()
        self._wake()

    def ack(self, attempt: int, offset: int) -> None:
        if attempt != self.attempt:
            return
        if offset == self.acked < self.sent and offset >= self.base:
            # The worker repeats a position it already gave while more was
            # sent: it lost messages (its connection to the server broke, or
            # it saw a gap). Send again from there; repeats are dropped there.
            self.sent = offset
            self._seek(offset)
            self.eof_sent = False
            self._wake()
            return
        if offset <= self.acked:
            return
        self.acked = min(offset, self.sent)
        if not self.keep_all:
            self._forget_acked()
        self._update_reading()
        self._wake()

    def close(self) -> None:
        """The session is over: the reader stops at its next chance."""
        self.closed = True
        self._may_read.set()

    def next_message(self) -> job_service_pb2.AttachStdin | None:
        """The next stdin message to send for the current attempt, if any may go now."""
        item = self.next_parts()
        if item is None:
            return None
        head, data = item
        head.data = data
        return head

    def next_parts(self) -> tuple[job_service_pb2.AttachStdin, bytes] | None:
        """next_message with its data apart from the rest of it, to be
        encoded without copies (kueue.wire)."""
        if not self.active or self.eof_sent:
            return None
        msg = job_service_pb2.AttachStdin(attempt=self.attempt)
        if self.starved:
            self.eof_sent = True
            msg.eof = True
            return msg, b""
        in_flight = self.sent - self.acked
        if self.sent < self.total and in_flight < self.window:
            msg.offset = self.sent
            data = self._take(min(self.chunk, self.window - in_flight))
            self.eof_sent = msg.eof = self.eof and self.sent == self.total
            return msg, data
        if self.eof and self.sent == self.total:
            self.eof_sent = True
            msg.offset = self.sent
            msg.eof = True
            return msg, b""
        return None

    # -- the kept chunks

    def _seek(self, offset: int) -> None:
        """Point the cursor at the chunk holding offset (a resend, a new attempt)."""
        index, start = 0, self.base
        while index < len(self.chunks) and start + len(self.chunks[index]) <= offset:
            start += len(self.chunks[index])
            index += 1
        self._index, self._index_start = index, start

    def _take(self, limit: int) -> bytes:
        """Up to limit bytes from `sent` on, now counted as sent."""
        chunks = self.chunks
        while self._index_start + len(chunks[self._index]) <= self.sent:
            self._index_start += len(chunks[self._index])
            self._index += 1
        first = chunks[self._index]
        pos = self.sent - self._index_start
        after = self._index + 1
        if (
            pos == 0
            and len(first) <= limit
            and (after == len(chunks) or len(first) + len(chunks[after]) > limit)
        ):
            data = first  # the common case of a big `kueue run < file`: no copy
        else:
            # Small reads (a terminal, a slow pipe) are merged into one message.
            parts = [first[pos : pos + limit]]
            size = len(parts[0])
            index = after
            while size < limit and index < len(chunks):
                part = chunks[index][: limit - size]
                parts.append(part)
                size += len(part)
                index += 1
            data = b"".join(parts)
        self.sent += len(data)
        return data

    def _forget_acked(self) -> None:
        """Drop whole chunks below `acked` (once replay is off)."""
        chunks = self.chunks
        while chunks and self.base + len(chunks[0]) <= self.acked:
            self.base += len(chunks.popleft())
            if self._index > 0:
                self._index -= 1
            else:
                self._index_start = self.base

    # -- the reader thread and its hand-over

    def _update_reading(self) -> None:
        # Read ahead only as far as the current attempt has taken in: a job
        # that reads nothing does not make us swallow all of our stdin.
        if self.closed:
            return
        if not self.eof and not self.starved and self.total - self.acked < self.window:
            self._may_read.set()
        else:
            self._may_read.clear()

    def _received(self, data: bytes) -> None:
        if self.closed:
            return
        if not data:
            self.eof = True
        else:
            self.chunks.append(data)
            self.total += len(data)
            if self.keep_all and self.total > self.replay_cap:
                self.keep_all = False
                self._forget_acked()
        self._update_reading()
        self._wake()

    def _read_loop(self) -> None:
        assert self.fd is not None and self._loop is not None
        loop = self._loop
        while True:
            self._may_read.wait()
            if self.closed:
                return
            self._may_read.clear()
            data = self._read_once(self.fd)
            try:
                loop.call_soon_threadsafe(self._received, data)
            except RuntimeError:  # the loop is gone: the session ended
                return
            if not data:
                return

    def _read_once(self, fd: int) -> bytes:
        while not self.closed:
            try:
                return os.read(fd, self.chunk)
            except BlockingIOError:
                select.select([fd], [], [], BACKGROUND_POLL_SECONDS)
            except OSError as exc:
                if exc.errno == errno.EIO and os.isatty(fd):
                    # In the background of a job-control shell: wait until we
                    # are in the foreground, as a local process would.
                    time.sleep(BACKGROUND_POLL_SECONDS)
                    continue
                return b""  # a closed or unreadable stdin is an empty one
        return b""


# ---------------------------------------------------------------- status line


class StatusLine:
    """One line on a terminal's stderr while the job waits; erased when it starts.

    Drawn only after STATUS_DELAY_SECONDS, so that a job which starts at once
    does not make the line flicker; then redrawn every second with the time waited.
    """

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.text = ""
        self.shown = ""
        self.since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._dumb = os.environ.get("TERM") == "dumb"

    def set(self, text: str) -> None:
        if self.fd is None:
            return
        if not self.text:
            self.since = time.monotonic()
        self.text = text
        if self.shown:
            self._draw()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(STATUS_DELAY_SECONDS, self._draw)

    def _draw(self) -> None:
        self._timer = None
        if self.fd is None or not self.text:
            return
        waited = time.monotonic() - self.since
        line = f"{self.text} ({waited:.0f} s)" if waited >= 2 else self.text
        try:
            columns = os.get_terminal_size(self.fd).columns
        except OSError:
            columns = 0
        columns = columns or 80  # a terminal that does not know its size says 0
        # A wrapped line could not be erased with one carriage return.
        line = line[: max(1, columns - 1)]
        self._write(self._erase_sequence() + line)
        self.shown = line
        self._timer = asyncio.get_running_loop().call_later(1.0, self._draw)

    def clear(self) -> None:
        self.text = ""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.shown:
            self._write(self._erase_sequence())
            self.shown = ""

    def _erase_sequence(self) -> str:
        if not self.shown:
            return "\r"
        return "\r" + " " * len(self.shown) + "\r" if self._dumb else "\r\x1b[K"

    def _write(self, text: str) -> None:
        assert self.fd is not None
        with contextlib.suppress(OSError):
            write_all(self.fd, text.encode(errors="replace"))


# ---------------------------------------------------------------- the session


class _Session:
    def __init__(
        self,
        stub: Any,
        spec: common_pb2.JobSpec,
        *,
        stdin: int | None,
        stdout: int,
        stderr: int,
        notices: int,
        kill_on_detach: bool,
        status_line: bool,
        forward_signals: bool,
        error: Callable[[grpc.RpcError], KueueError],
    ) -> None:
        self.stub = stub
        self.spec = spec
        self.stdout = stdout
        self.stderr = stderr
        self.notices = notices
        self.kill_on_detach = kill_on_detach
        self.forward_signals = forward_signals
        self.error = error
        self.status = StatusLine(notices if status_line else None)
        self.stdin = StdinFeed(stdin, self._wake_writer, self.notice)
        self.job_id: int | None = None
        self.job: common_pb2.Job | None = None
        # Attempt whose output is being written, and how much of each stream.
        self.attempt = 0
        self.written = {STDOUT: 0, STDERR: 0}
        # Output consumed (both streams) as last acknowledged to the server.
        self.output_acked = 0
        # attempt -> worker it was seen running on; attempts that wrote output.
        self.ran_on: dict[int, str] = {}
        self.had_output: set[int] = set()
        self.stdout_broken = False
        # Why writing stdout failed, other than a reader gone (EPIPE).
        self.stdout_error = ""
        self.last_interrupt: float | None = None
        self.forwarded_signal = 0
        self.kill_sent = False
        self.control: deque[job_service_pb2.AttachRequest] = deque()
        self._wake = asyncio.Event()
        self._leave: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # The job's output is written by a thread of its own, in order: a
        # write blocked on a full pipe (`kueue run ... | less`) must not keep
        # the loop from acting on Ctrl-C. The reader waits for each write
        # before taking the next message, so output is still paced by ours.
        self._output_thread = ThreadPoolExecutor(1, thread_name_prefix="kueue-output")
        self._last_write: asyncio.Future[OSError | None] | None = None

    # -- output to this process's stderr

    def notice(self, text: str) -> None:
        self.status.clear()
        with contextlib.suppress(OSError):
            write_all(self.notices, f"kueue: {text}\n".encode(errors="replace"))

    # -- going up

    def _wake_writer(self) -> None:
        self._wake.set()

    def _send(self, request: job_service_pb2.AttachRequest) -> None:
        self.control.append(request)
        self._wake.set()

    async def _writer(self, call: Any) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    if self.control:
                        await call.write(self.control.popleft())
                        continue
                    item = self.stdin.next_parts()
                    if item is None:
                        break
                    await call.write(_STDIN_REQUEST.encode(*item))
        except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return  # the call ended; the reader reports why

    # -- signals

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGINT:
            now = time.monotonic()
            if self.kill_sent:
                # A third Ctrl-C: stop waiting for the kill to be confirmed.
                self._finish(EXIT_INTERRUPTED)
                return
            if self.last_interrupt is not None and now - self.last_interrupt <= DOUBLE_INTERRUPT_SECONDS:
                self.kill()
                return
            self.last_interrupt = now
        self.forwarded_signal = signum
        self._send(job_service_pb2.AttachRequest(signal=signum))

    def kill(self) -> None:
        self.kill_sent = True
        if self.job_id is not None:
            self.notice(f"killing job {self.job_id}")
        self._send(job_service_pb2.AttachRequest(kill=True))
        asyncio.get_running_loop().call_later(KILL_WAIT_SECONDS, self._kill_timeout)

    def _kill_timeout(self) -> None:
        if not self._leave.done():
            self.notice(f"job {self.job_id} is being killed (kueue show {self.job_id})")
            self._finish(EXIT_INTERRUPTED)

    def _finish(self, status: int) -> None:
        if not self._leave.done():
            self._leave.set_result(status)

    # -- coming down

    def handle(self, resp: job_service_pb2.AttachResponse) -> bool:
        """Acts on one response; True once the job has ended."""
        kind = resp.WhichOneof("msg")
        if kind == "output":
            self._output(resp.output)
        elif kind == "job":
            return self._job(resp.job)
        elif kind == "stdin_ack":
            self.stdin.ack(resp.stdin_ack.attempt, resp.stdin_ack.offset)
        elif kind == "accepted":
            self.job_id = resp.accepted.job_id
            for warning in resp.accepted.warnings:
                self.notice(f"warning: {warning}")
            self._show_waiting(None)
        elif kind == "notice":
            self.notice(resp.notice)
        return False

    def _enter_attempt(self, attempt: int, worker: str) -> None:
        if attempt <= self.attempt:
            return
        previous, self.attempt = self.attempt, attempt
        self.written = {STDOUT: 0, STDERR: 0}
        self.output_acked = 0
        lost = self.ran_on.get(previous)
        if lost is not None:
            where = f"on {worker}" if worker else "elsewhere"
            tail = "; output above is from the lost attempt" if previous in self.had_output else ""
            self.notice(f"worker {lost} lost, job {self.job_id} restarted {where} (attempt {attempt}){tail}")
        self.stdin.new_attempt(attempt)

    def _job(self, job: common_pb2.Job) -> bool:
        self.job = job
        if self.job_id is None:
            self.job_id = job.id
        # Not on OFFERED: the worker may still reject it, and "restarted on
        # Y" must name where it really runs.
        if job.attempt and (job.state == JobState.JOB_STATE_RUNNING or job.state in FINAL_STATES):
            self._enter_attempt(job.attempt, job.worker_name)
        if job.state == JobState.JOB_STATE_RUNNING and job.attempt == self.attempt:
            self.ran_on.setdefault(job.attempt, job.worker_name)
            self.status.clear()
            self.stdin.start(job.attempt)
        elif job.state in (JobState.JOB_STATE_PENDING, JobState.JOB_STATE_OFFERED):
            self._show_waiting(job)
        if job.state in FINAL_STATES:
            self.status.clear()
            return True
        return False

    def _show_waiting(self, job: common_pb2.Job | None) -> None:
        if self.status.fd is None:
            return
        if job is not None and job.state == JobState.JOB_STATE_OFFERED:
            self.status.set(f"job {job.id} offered to {job.worker_name}...")
            return
        what = describe_resources(self.spec.resources)
        lost = self.ran_on.get(job.attempt) if job is not None else None
        if lost is not None:
            text = f"worker {lost} lost; job {self.job_id} queued again, waiting for a worker with {what}..."
        else:
            text = f"queued as job {self.job_id}, waiting for a worker with {what}..."
            if job is not None and job.comment:
                text += f" ({job.comment})"
        self.status.set(text)

    def _output(self, out: job_service_pb2.AttachOutput) -> None:
        if out.attempt < self.attempt or out.stream not in self.written:
            return  # a lost attempt's late bytes
        if out.attempt > self.attempt:
            worker = self.job.worker_name if self.job and self.job.attempt == out.attempt else ""
            self._enter_attempt(out.attempt, worker)
        written = self.written[out.stream]
        # Each read of a bytes field makes a new copy: once only.
        payload = out.data
        end = out.offset + len(payload)
        if end <= written:
            return
        data = memoryview(payload)[max(0, written - out.offset) :]
        self.written[out.stream] = end
        self.had_output.add(out.attempt)
        if self.job is not None and self.job.attempt == out.attempt:
            self.ran_on.setdefault(out.attempt, self.job.worker_name)
        self.status.clear()
        self._write_out(out.stream, data)
        self._ack_output()

    def _write_out(self, stream: int, data: memoryview) -> None:
        if stream == STDOUT and self.stdout_broken:
            return
        fd = self.stdout if stream == STDOUT else self.stderr
        write = asyncio.get_running_loop().run_in_executor(self._output_thread, _write_or_error, fd, data)
        write.add_done_callback(lambda done: self._written(stream, done))
        self._last_write = write

    def _written(self, stream: int, done: asyncio.Future[OSError | None]) -> None:
        exc = None if done.cancelled() else done.result()
        if exc is None or stream != STDOUT or self.stdout_broken:
            return  # stderr errors: nowhere left to say them
        self.stdout_broken = True
        if isinstance(exc, BrokenPipeError):
            # Our reader left (`kueue run yes | head`): the job's stdout pipe
            # is closed, so whichever of its processes writes next gets the
            # EPIPE (SIGPIPE) it would locally, and only that one.
            self._send(job_service_pb2.AttachRequest(stdout_closed=True))
        else:
            # A full disk under `> file`: as a local command would, say
            # so and fail, rather than leave a short file and succeed.
            self.stdout_error = exc.strerror or str(exc)
            self.notice(f"writing the job's output failed: {self.stdout_error}; the rest of it is dropped")

    async def _output_written(self) -> None:
        """Until the output handed to the writing thread is out."""
        write, self._last_write = self._last_write, None
        if write is not None:
            await asyncio.wait({write})

    def _ack_output(self) -> None:
        """Tell the server how far we have written out, so the job may go on."""
        consumed = self.written[STDOUT] + self.written[STDERR]
        if consumed - self.output_acked < OUTPUT_ACK_STEP:
            return
        self.output_acked = consumed
        ack = job_service_pb2.AttachOutputAck(
            attempt=self.attempt, stdout_offset=self.written[STDOUT], stderr_offset=self.written[STDERR]
        )
        self._send(job_service_pb2.AttachRequest(output_ack=ack))

    # -- the end

    def final_status(self, job: common_pb2.Job) -> int:
        status = self._job_status(job)
        return 1 if status == 0 and self.stdout_error else status

    def _job_status(self, job: common_pb2.Job) -> int:
        if job.state == JobState.JOB_STATE_CANCELED:
            if self.kill_sent:
                return EXIT_INTERRUPTED
            if self.forwarded_signal:
                # Our own signal reached a job that had not started: the server canceled it.
                return SIGNAL_EXIT_BASE + self.forwarded_signal
        why = why_not_run(job)
        if why is not None:
            self.notice(why)
        if job.state == JobState.JOB_STATE_CANCELED:
            return SIGNAL_EXIT_BASE + job.signal if job.signal else 1
        return exit_status(job)

    async def run(self) -> AttachResult:
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        ttin = None
        if self.forward_signals:
            for signum in FORWARDED_SIGNALS:
                loop.add_signal_handler(signum, self.on_signal, signum)
                installed.append(signum)
            if self.stdin.fd is not None and os.isatty(self.stdin.fd):
                # Reading the terminal from the background must not stop us
                # (output would stop too); the reader waits for the foreground.
                ttin = signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        call = self.stub.Attach()
        writer = asyncio.create_task(self._writer(call))
        reader = asyncio.create_task(self._read(call))
        try:
            self._send(
                job_service_pb2.AttachRequest(
                    start=job_service_pb2.AttachStart(
                        spec=self.spec, kill_on_detach=self.kill_on_detach, paced_output=True
                    )
                )
            )
            await asyncio.wait({reader, self._leave}, return_when=asyncio.FIRST_COMPLETED)
            if self._leave.done():
                return AttachResult(self.job_id, self.job, self._leave.result(), detached=True)
            return reader.result()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            if ttin is not None:
                signal.signal(signal.SIGTTIN, ttin)
            self.status.clear()
            self.stdin.close()
            for task in (writer, reader):
                task.cancel()
            call.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)
            # A write still blocked (we leave on Ctrl-C) is not waited for.
            self._output_thread.shutdown(wait=False)

    async def _read(self, call: Any) -> AttachResult:
        failure: grpc.RpcError | None = None
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    break
                done = self.handle(resp)
                await self._output_written()
                if done:
                    assert self.job is not None
                    return AttachResult(self.job_id, self.job, self.final_status(self.job))
        except grpc.RpcError as exc:
            failure = exc
        self.status.clear()
        if self.job_id is None:
            if failure is None:
                raise KueueError("the kueue server closed the connection before accepting the job")
            err = self.error(failure)
            if err.code == "UNAVAILABLE":
                err.exit_status = EXIT_LOST_SERVER
            raise err
        recovered = await self._recover()
        if recovered is not None:
            return recovered
        fate = (
            "is killed (--kill-on-detach)"
            if self.kill_on_detach
            else f"goes on detached (kueue log -f {self.job_id})"
        )
        self.notice(f"lost the connection to the server; job {self.job_id} {fate}")
        return AttachResult(self.job_id, self.job, EXIT_LOST_SERVER, detached=True)

    async def _recover(self) -> AttachResult | None:
        """The stream broke before the job's end arrived. If the job has in
        fact ended, finish from GetJob and ReadOutput; else None.

        grpc.aio fails a call as a whole, unread responses included, when a
        write meets a stream the server has just closed: a stdin or signal
        message sent while the job ends loses its last output and final state.
        """
        assert self.job_id is not None
        try:
            resp = await self.stub.GetJob(
                job_service_pb2.GetJobRequest(id=self.job_id, tail_bytes=1), timeout=RECOVER_TIMEOUT_SECONDS
            )
            job = resp.job
            if job.state not in FINAL_STATES:
                return None
            if job.attempt:
                self._enter_attempt(job.attempt, job.worker_name)
            for stream, size in ((STDOUT, job.stdout_bytes), (STDERR, job.stderr_bytes)):
                if size <= self.written[stream] or job.attempt != self.attempt:
                    continue
                request = job_service_pb2.ReadOutputRequest(
                    id=self.job_id, streams=[stream], offset=self.written[stream]
                )
                async for chunk in self.stub.ReadOutput(request, timeout=RECOVER_TIMEOUT_SECONDS):
                    if chunk.offset > self.written[stream]:
                        # Cut by the server's output cap: say so, as the stream would have.
                        name = "stdout" if stream == STDOUT else "stderr"
                        self.notice(f"{chunk.offset - self.written[stream]} bytes of {name} were dropped")
                    self._output(
                        job_service_pb2.AttachOutput(
                            attempt=job.attempt, stream=stream, offset=chunk.offset, data=chunk.data
                        )
                    )
                    await self._output_written()
        except grpc.RpcError:
            return None
        self.job = job
        return AttachResult(self.job_id, job, self.final_status(job))


def _write_or_error(fd: int, data: memoryview) -> OSError | None:
    try:
        write_all(fd, data)
    except OSError as exc:
        return exc
    return None


_loops = threading.local()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro` on an event loop kept for this thread.

    grpc.aio binds its completion-queue poller to the first loop it serves;
    with a new loop per call (asyncio.run) it goes on posting to a closed one
    and every later call logs "Event loop is closed" errors.
    """
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


async def attach(
    address: str,
    secret: str,
    spec: common_pb2.JobSpec,
    *,
    stdin: int | None = None,
    stdout: int = 1,
    stderr: int = 2,
    notices: int | None = None,
    kill_on_detach: bool = False,
    status_line: bool = False,
    forward_signals: bool = False,
    channel_options: Sequence[tuple[str, Any]] = (),
    config_path: Path | str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> AttachResult:
    """Submits `spec` and stays attached until it ends; see Client.attach."""
    spec_copy = common_pb2.JobSpec()
    spec_copy.CopyFrom(spec)
    spec_copy.stdin_pipe = True
    options = dict([*kueue.rpc.CHANNEL_OPTIONS, *channel_options])
    channel = kueue.rpc.aio_channel(address, list(options.items()), credentials)
    try:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        # Stdin goes up already encoded (kueue.wire), without protobuf's copies of its data.
        jobs.Attach = channel.stream_stream(
            "/kueue.v1.JobService/Attach",
            request_serializer=wire.serialize,
            response_deserializer=job_service_pb2.AttachResponse.FromString,
        )
        stub = kueue.rpc.AuthedStub(jobs, "kueue.v1.JobService", secret)
        session = _Session(
            stub,
            spec_copy,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            notices=stderr if notices is None else notices,
            kill_on_detach=kill_on_detach,
            status_line=status_line,
            forward_signals=forward_signals,
            error=lambda exc: from_rpc_error(exc, address, config_path),
        )
        return await session.run()
    finally:
        await channel.close()
