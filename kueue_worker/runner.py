"""Spawns one job process and watches it: output, exit, peak memory, kill.

The job runs in its own session (and so its own process group). Its tree is
the group and session plus every descendant ever seen, so a child that called
setsid is still found when the job is killed.

Captured output goes through pipes we create ourselves rather than asyncio's:
asyncio's Process.wait() waits for its pipes to close, which a background
grandchild holding stdout open would delay forever.

With JobSpec.stdin_pipe the job's stdin is a pipe too, fed from a StdinSource
by non-blocking writes, so a job that never reads its input only stalls its
own feeder. Without it, stdin is /dev/null.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import psutil

from kueue import rpc
from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker import fd_watch, spawn
from kueue_worker.process_tree import living_tree

log = logging.getLogger(__name__)

# Output is read in pieces of up to this size, from pipes made this large
# (where the system allows) once a read finds one full at its default size:
# few large messages cost the worker, the server and an attached client far
# less than many small ones (`kueue run cat` of a big file), and the many
# jobs that write little are spared the fcntl. A read returns what is there,
# so small output is not held back.
CHUNK_BYTES = 1024 * 1024
PIPE_BYTES = 1024 * 1024
DEFAULT_PIPE_BYTES = 65536
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# After the job's main process exits, how long a descendant may keep its
# output pipes open before we stop reading them and report the finish.
PIPE_LINGER_SECONDS = 2.0
# Memory is sampled soon after the start, then about once a second; the
# peak of the main process also comes from its reaping, where that tells.
SAMPLE_DELAYS = (0.05, 0.1, 0.2, 0.4)
SAMPLE_INTERVAL = 1.0
# The samples of all jobs are taken by one timer, at this period: a sample
# is up to this much later than its delay says.
SAMPLE_TICK = 0.05
KILL_POLL_SECONDS = 0.05
# After SIGKILL a process normally vanishes at once; one in uninterruptible
# sleep (hung NFS) may not, and must not block the finish forever.
SIGKILL_WAIT_SECONDS = 5.0

STDOUT = common_pb2.OUTPUT_STREAM_STDOUT
STDERR = common_pb2.OUTPUT_STREAM_STDERR

OnStarted = Callable[[int], None]
# The process has exited (its output may still be draining).
OnExit = Callable[[], None]
OnOutput = Callable[[int, bytes], None]


class StdinSource(Protocol):
    """Where the job's stdin comes from (JobSpec.stdin_pipe)."""

    async def take(self) -> bytes:
        """The next bytes to write; b"" to close the pipe (end of file)."""
        ...

    def written(self, count: int) -> None:
        """count more bytes went into the pipe."""
        ...

    def closed(self) -> None:
        """The pipe is closed (end of file, the job closed its end, or it ended); nothing more is taken."""
        ...


class Backpressure(Protocol):
    """Lets the worker pause reading job output while it holds too much unacknowledged."""

    def paused(self) -> bool: ...

    async def resumed(self) -> None: ...


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None = None
    signal: int = 0
    run_time_seconds: float = 0.0
    peak_memory_bytes: int = 0
    error: str = ""
    # With error: a common_pb2.StartFailure (OTHER where not said).
    start_failure: int = 0

    def as_finished(self) -> wpb.Finished:
        """The process facts of a Finished; ids and byte totals are added by the attempt state."""
        msg = wpb.Finished(
            signal=self.signal,
            run_time_seconds=self.run_time_seconds,
            peak_memory_bytes=self.peak_memory_bytes,
            error=self.error,
        )
        if self.error:
            msg.start_failure = self.start_failure or common_pb2.START_FAILURE_OTHER
        if self.exit_code is not None:
            msg.exit_code = self.exit_code
        return msg


START_NOT_FOUND = common_pb2.START_FAILURE_NOT_FOUND
START_NOT_EXECUTABLE = common_pb2.START_FAILURE_NOT_EXECUTABLE
START_OTHER = common_pb2.START_FAILURE_OTHER


class StartError(Exception):
    """The process could not be started; the message is the Finished.error."""


def command_line(spec: common_pb2.JobSpec) -> list[str]:
    if not spec.command or (spec.shell and not spec.command[0]):
        raise StartError("empty command")
    if spec.shell:
        return ["/bin/sh", "-c", spec.command[0]]
    return list(spec.command)


def environment(
    spec: common_pb2.JobSpec, job_id: int, attempt: int, worker_name: str, worker_id: str = ""
) -> dict[str, str]:
    env = dict(os.environ) if spec.use_worker_env else rpc.str_map(spec.env)
    env.update(own_variables(spec, job_id, attempt, worker_name, worker_id))
    return env


def own_variables(
    spec: common_pb2.JobSpec, job_id: int, attempt: int, worker_name: str, worker_id: str
) -> dict[str, str]:
    """What the worker sets in every job's environment, over the spec's."""
    return {
        "KUEUE_JOB_ID": str(job_id),
        "KUEUE_ATTEMPT": str(attempt),
        "KUEUE_WORKER": worker_name,
        # How a restart after a crash finds the job's processes (orphans.py).
        "KUEUE_WORKER_ID": worker_id,
        "PWD": spec.cwd,
    }


def exec_environment(
    spec: common_pb2.JobSpec, environ: bytes, job_id: int, attempt: int, worker_name: str, worker_id: str
) -> spawn.Environ:
    """The environment the job's exec gets: from the block the server
    encoded (Assign.environ) where it sent one, else from spec.env."""
    if environ and not spec.env and not spec.use_worker_env:
        return spawn.Environ.from_block(environ, own_variables(spec, job_id, attempt, worker_name, worker_id))
    return spawn.Environ.of(environment(spec, job_id, attempt, worker_name, worker_id))


def too_long(argv: list[str], env: spawn.Environ | None) -> str:
    """What the exec's "Argument list too long" (E2BIG) came from, in numbers:
    Linux takes at most 32 pages for one argument or environment entry, and
    ARG_MAX bytes (a quarter of the stack limit) for all of them."""
    strings = [os.fsencode(arg) for arg in argv] + (env.entries if env is not None else [])
    longest = max((len(s) + 1 for s in strings), default=0)  # each with its NUL
    per_string = 32 * os.sysconf("SC_PAGE_SIZE") if sys.platform.startswith("linux") else 0
    if per_string and longest > per_string:
        return (
            f"argument list too long: one argument or environment variable takes {longest} bytes, "
            f"over the {per_string} allowed for one here; pass it in a file instead"
        )
    # Each string also takes a pointer in the vector the kernel builds.
    total = sum(len(s) + 1 + 8 for s in strings)
    return (
        f"argument list too long: the command line and environment take {total} bytes, "
        f"over the {os.sysconf('SC_ARG_MAX')} allowed here; pass the data in a file instead"
    )


class _Stdio:
    """The child's stdio: stdin from /dev/null or a pipe we write; stdout/stderr
    to pipes we read, /dev/null, or files on the worker."""

    def __init__(self, spec: common_pb2.JobSpec) -> None:
        self.child: dict[int, int] = {}
        self.readers: dict[int, int] = {}
        self.child_stdin = spawn.devnull()
        self.stdin_writer: int | None = None
        self._parent_owned: list[int] = []
        try:
            if spec.stdin_pipe:
                # O_CLOEXEC: another job inheriting the write end would keep this
                # one from ever seeing end of file.
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                # Large, like the output pipes: fewer wake-ups per megabyte of input.
                _enlarge(write_end)
                self._parent_owned.append(read_end)
                self.child_stdin = read_end
                self.stdin_writer = write_end
            opened: dict[str, int] = {}
            for stream, path in ((STDOUT, spec.stdout_path), (STDERR, spec.stderr_path)):
                self.child[stream] = self._target(stream, path, spec.cwd, opened)
        except BaseException:
            self.close_all()
            raise

    def _target(self, stream: int, path: str, cwd: str, opened: dict[str, int]) -> int:
        if path == "":
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(read_end, False)
            self.readers[stream] = read_end
            self._parent_owned.append(write_end)
            return write_end
        if path == "null":
            return spawn.devnull()
        full = os.path.normpath(os.path.join(cwd, path))
        # The same file for both streams must share one open file, or each
        # stream would overwrite the other from offset 0.
        if full in opened:
            return opened[full]
        name = "stdout" if stream == STDOUT else "stderr"
        try:
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StartError(f"cannot open the {name} file {full}: {exc.strerror}") from exc
        self._parent_owned.append(fd)
        opened[full] = fd
        return fd

    def close_child_ends(self) -> None:
        """The child has its copies; ours would keep the pipes from reaching EOF."""
        for fd in self._parent_owned:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._parent_owned.clear()

    def take_reader(self, stream: int) -> int:
        """Hand a pipe's read end over to whoever closes it from now on."""
        return self.readers.pop(stream)

    def take_stdin_writer(self) -> int | None:
        fd, self.stdin_writer = self.stdin_writer, None
        return fd

    def close_all(self) -> None:
        self.close_child_ends()
        if self.stdin_writer is not None:
            with contextlib.suppress(OSError):
                os.close(self.stdin_writer)
            self.stdin_writer = None
        for fd in self.readers.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.readers.clear()


class _PipeWriter:
    """Writes into a pipe without blocking the event loop, reporting each
    write's progress (the bytes really in the pipe, for StdinAck)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.closed = False
        os.set_blocking(fd, False)

    async def write(self, data: bytes, progress: Callable[[int], None]) -> None:
        """Raises BrokenPipeError (or ConnectionResetError) once nobody can read the pipe."""
        view = memoryview(data)
        while view:
            try:
                count = os.write(self._fd, view)
            except BlockingIOError:
                await self._writable()
                continue
            progress(count)
            view = view[count:]

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        # Also fires when the last reader goes away; the next write then fails with EPIPE.
        loop.add_writer(self._fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_writer(self._fd)

    def close(self) -> None:
        # Once only: the number may belong to another file after the first close.
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)


class JobProcess:
    """One attempt's process, from spawn to the last byte of output.

    Driven by callbacks of the event loop rather than tasks of its own: a
    reader per output pipe and one for the pidfd that becomes readable when
    the process exits. With a few hundred short jobs a second on one loop,
    the tasks and futures of a task per pipe cost more than the job.
    """

    def __init__(
        self,
        spec: common_pb2.JobSpec,
        *,
        job_id: int,
        attempt: int,
        worker_name: str,
        kill_grace_seconds: float,
        worker_id: str = "",
        environ: bytes = b"",
        on_started: OnStarted | None = None,
        on_exit: OnExit | None = None,
        on_output: OnOutput | None = None,
        backpressure: Backpressure | None = None,
        stdin: StdinSource | None = None,
    ) -> None:
        self.spec = spec
        self.job_id = job_id
        self.attempt = attempt
        self.worker_name = worker_name
        self.worker_id = worker_id
        # Assign.environ, where the server sent the environment that way.
        self.environ = environ
        self.kill_grace_seconds = kill_grace_seconds
        self._on_started = on_started
        self._on_exit = on_exit
        self._on_output = on_output
        self._backpressure = backpressure
        self._stdin = stdin
        self.pid: int | None = None
        # CLOCK_BOOTTIME (ns) just before and just after the spawn: the
        # process's start lies between (the orphan ledger's pid-reuse check).
        self.spawned_between: tuple[int, int] | None = None
        # Latest RSS sum of the tree, for the heartbeat's estimate of others' memory use.
        self.rss_bytes = 0
        self.peak_memory_bytes = 0
        # The main process as psutil knows it, made only when a sample or a
        # kill needs it (at the spawn it would cost a short job more than its run).
        self._main: psutil.Process | None = None
        # Once reaped, its pid may belong to a stranger.
        self._reaped = False
        self._known: dict[int, psutil.Process] = {}
        # Where the next memory sample is due, while one is.
        self._sampler: _Sampler | None = None
        self._samples = 0
        self._exited = asyncio.Event()
        self._kill_deadline: float | None = None
        self._pending_signal = 0
        # SignalJob before the spawn, delivered right after it.
        self._early_signals: list[int] = []
        self._killer: asyncio.Task[None] | None = None
        # Output pipes still read: read end -> stream.
        self._readers: dict[int, int] = {}
        self._enlarged: set[int] = set()
        # Readers paused by backpressure, each with the task that resumes it.
        self._paused: dict[int, asyncio.Task[None]] = {}
        self._pidfd = -1
        # What watches the pidfd and the pipes (set once the process is spawned).
        self._watch: fd_watch.Watch
        # Where there is no pidfd: the thread that waits for the process instead.
        self._waiter: asyncio.Task[tuple[int, int, resource.struct_rusage]] | None = None
        self._returncode: int | None = None
        self._ended = 0.0
        # Told the outcome once the process is reaped, its killer done and
        # its pipes closed (or given up on after PIPE_LINGER_SECONDS).
        self._done: Callable[[Outcome], None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        # Set by start(): what run() then follows (or the outcome of a failed start).
        self._began = False
        self._stdio: _Stdio | None = None
        self._start_outcome: Outcome | None = None
        self._started_at = 0.0
        self._stdin_pipe: _PipeWriter | None = None
        self._feeder: asyncio.Task[None] | None = None

    @property
    def kill_requested(self) -> bool:
        return self._kill_deadline is not None

    def start(self) -> None:
        """Spawn the process now, from the caller's step of the loop (a task
        would spawn it only at the loop's next turn, after whatever else is
        ready: with short jobs that turn is most of a slot's idle time).
        follow() or run() then follows it; a start that failed makes them
        tell why."""
        if self._began:
            return
        self._began = True
        try:
            argv = command_line(self.spec)
            self._stdio = _Stdio(self.spec)
        except StartError as exc:
            self._start_outcome = Outcome(error=str(exc))
            return
        try:
            self._spawn(argv, self._stdio)
        except Exception as exc:
            # A bug here must still end the attempt through run(), or its slot would be lost.
            log.exception("job %d attempt %d: starting the process failed", self.job_id, self.attempt)
            self._clean_up()
            self._start_outcome = Outcome(
                error=f"worker {self.worker_name} failed to start the process: {exc}"
            )
        except BaseException:
            self._clean_up()
            raise

    def follow(self, done: Callable[[Outcome], None]) -> None:
        """Start the process (unless start() did) and call done(outcome) once
        it and its output are done: from the callback that sees the last of
        them (its reaping, mostly), with no task of its own (a task and its
        futures cost a short job about 10 us), or, where it did not start, a
        turn of the loop later. Once per process."""
        self.start()
        self._done = done
        if self._start_outcome is not None:
            asyncio.get_running_loop().call_soon(self._end)
        else:
            self._check_done()

    async def run(self) -> Outcome:
        """follow(), awaited. Cancelled, it stops following the process (which runs on)."""
        result: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome) -> None:
            if not result.done():
                result.set_result(outcome)

        self.follow(done)
        try:
            return await result
        finally:
            # Cancelled (the await cancels result too): no outcome comes.
            if result.cancelled() or not result.done():
                self._done = None
                await self._feeder_gone()
                self._release()

    def _check_done(self) -> None:
        """Whether the process and its output are done, at each step there."""
        if self._done is None or not self._reaped:
            return
        if self._killer is not None and not self._killer.done():
            return  # its end looks again
        if self._readers:
            if self._linger is None:
                self._linger = asyncio.get_running_loop().call_later(PIPE_LINGER_SECONDS, self._linger_over)
            return
        self._finish()

    def _linger_over(self) -> None:
        self._linger = None
        if self._done is not None and self._readers:
            log.info(
                "job %d: a background process still holds its output open; not waiting for it", self.job_id
            )
            self._finish()

    def _finish(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._feeder is None:
            self._end()
        else:
            asyncio.get_running_loop().create_task(self._end_after_feeder())

    async def _end_after_feeder(self) -> None:
        await self._feeder_gone()
        self._end()

    async def _feeder_gone(self) -> None:
        """Stop the stdin feeder and wait until it has: it must be gone
        before its pipe is closed, or its writer would be removed from a
        descriptor reused meanwhile."""
        if self._feeder is not None:
            self._feeder.cancel()
            await asyncio.gather(self._feeder, return_exceptions=True)

    def _release(self) -> None:
        # Input nobody took (the job ended, or a background process keeps
        # the pipe open without reading) is dropped with the attempt.
        if self._stdin_pipe is not None:
            self._close_stdin(self._stdin_pipe)
        self._clean_up()

    def _end(self) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        outcome = self._start_outcome
        if outcome is None:
            try:
                outcome = self._outcome()
            except Exception as exc:
                # A bug here must still end the attempt, or its slot would be lost.
                log.exception("job %d attempt %d: following the process failed", self.job_id, self.attempt)
                outcome = Outcome(error=f"worker {self.worker_name} failed to watch the process: {exc}")
        self._release()
        done(outcome)

    def _clean_up(self) -> None:
        if self._stdio is not None:
            self._stdio.close_all()
        self._stop_watching()
        if self._killer is not None and not self._killer.done():
            self._killer.cancel()
        # Nothing more comes from the process. Its callbacks usually close
        # over this object (the worker's do): dropping them lets it go at
        # once rather than at the next collection of cycles.
        self._on_started = self._on_exit = self._on_output = None

    def _spawn(self, argv: list[str], stdio: _Stdio) -> None:
        # On the loop, although the loop waits in the vfork until the child
        # has exec'ed (130 us alone; during an array of `true` on 2 cores 230
        # us at the median and 2-3 ms at the 99th percentile). Handing spawns
        # to a thread (the GIL going to and fro) or to a helper process (its
        # wake-ups) cost more than the wait: README, Performance.
        env: spawn.Environ | None = None
        try:
            env = exec_environment(
                self.spec, self.environ, self.job_id, self.attempt, self.worker_name, self.worker_id
            )
            pid, self.spawned_between = spawn.spawn(
                argv,
                cwd=self.spec.cwd or None,
                env=env,
                stdin=stdio.child_stdin,
                stdout=stdio.child[STDOUT],
                stderr=stdio.child[STDERR],
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            error, kind = self._start_failure(argv, env, exc)
            self._start_outcome = Outcome(error=error, start_failure=kind)
            return
        finally:
            stdio.close_child_ends()
        self._started_at = time.monotonic()
        self.pid = pid
        loop = asyncio.get_running_loop()
        self._watch = fd_watch.of(loop)
        self._watch_exit(loop, pid)
        if self._on_started is not None:
            self._on_started(pid)
        for signum in self._early_signals:
            self.send_signal(signum)
        self._early_signals.clear()
        if self._kill_deadline is not None:
            self._signal_tree(self._pending_signal)
            self._start_killer()
        stdin_fd = stdio.take_stdin_writer()
        if stdin_fd is not None:
            self._stdin_pipe = _PipeWriter(stdin_fd)
            self._feeder = asyncio.create_task(self._feed_stdin(self._stdin_pipe))
        for stream in list(stdio.readers):
            fd = stdio.take_reader(stream)
            self._readers[fd] = stream
            self._watch.add(fd, self._reader_of(fd))
        self._schedule_sample()

    def _outcome(self) -> Outcome:
        returncode = self._returncode
        assert returncode is not None
        run_time = self._ended - self._started_at
        if returncode >= 0:
            return Outcome(
                exit_code=returncode, run_time_seconds=run_time, peak_memory_bytes=self.peak_memory_bytes
            )
        return Outcome(
            signal=-returncode, run_time_seconds=run_time, peak_memory_bytes=self.peak_memory_bytes
        )

    def _start_failure(self, argv: list[str], env: spawn.Environ | None, exc: Exception) -> tuple[str, int]:
        """Finished.error and Finished.start_failure for a spawn that failed."""
        cwd = self.spec.cwd
        if cwd and not os.path.isdir(cwd):
            return f"working directory {cwd} does not exist on {self.worker_name}", START_OTHER
        if isinstance(exc, NotADirectoryError | PermissionError) and cwd and not os.access(cwd, os.X_OK):
            # 126, as the text-matched status of older servers' jobs still says.
            return f"working directory {cwd} is not accessible on {self.worker_name}", START_NOT_EXECUTABLE
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        # spawn (and Popen) name the program in an OSError of its exec.
        if not isinstance(exc, OSError) or exc.filename != argv[0]:
            return f"cannot start {argv[0]}: {reason}", START_OTHER
        if exc.errno == errno.E2BIG:
            return (
                f"cannot start {argv[0]} on {self.worker_name}: {too_long(argv, env)}",
                START_NOT_EXECUTABLE,
            )
        if exc.errno != errno.ENOENT:
            return f"cannot start {argv[0]}: {reason}", START_NOT_EXECUTABLE
        # Not found, as bash counts it (127), also where the file is there
        # and its #! interpreter is not: then the message names that one.
        found = spawn.existing_program(argv[0], env.path if env is not None else None, cwd or None)
        interpreter = spawn.interpreter_of(found) if found is not None else None
        if interpreter and interpreter.endswith("\r"):
            why = f"its #! line ends in a carriage return (Windows line ends: convert it with dos2unix {argv[0]})"
            return f"cannot start {argv[0]}: {why}", START_NOT_FOUND
        if interpreter:
            return (
                f"cannot start {argv[0]}: its interpreter {interpreter} (#! line) was not found",
                START_NOT_FOUND,
            )
        return f"cannot start {argv[0]}: {reason}", START_NOT_FOUND

    # -- exit --------------------------------------------------------------

    def _watch_exit(self, loop: asyncio.AbstractEventLoop, pid: int) -> None:
        """Reap the process once it exits, without a thread: a pidfd becomes
        readable then. (asyncio's subprocesses in Python 3.11 start a thread
        per child to wait for it, which costs a short job more than its run.)"""
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: a thread waits instead
            task = asyncio.create_task(asyncio.to_thread(os.wait4, pid, 0))
            task.add_done_callback(self._waited)
            self._waiter = task
            return
        self._watch.add(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            pid, status, usage = os.wait4(self.pid or 0, os.WNOHANG)
        except ChildProcessError:
            # Someone else reaped it: its status is lost (Popen says 0 then too).
            log.warning("job %d: its process was reaped elsewhere; exit status unknown", self.job_id)
            pid, status, usage = -1, 0, None
        if pid == 0:
            return  # not over yet
        self._exit(os.waitstatus_to_exitcode(status), usage)

    def _waited(self, task: asyncio.Future[tuple[int, int, resource.struct_rusage]]) -> None:
        if task.cancelled():
            return
        try:
            _, status, usage = task.result()
        except ChildProcessError:
            status, usage = 0, None
        self._exit(os.waitstatus_to_exitcode(status), usage)

    def _exit(self, returncode: int, usage: resource.struct_rusage | None) -> None:
        self._ended = time.monotonic()
        self._returncode = returncode
        self._reaped = True
        self._exited.set()
        if self._pidfd >= 0:
            self._watch.close(self._pidfd)
            self._pidfd = -1
        if self._sampler is not None:
            self._sampler.remove(self)
            self._sampler = None
        self.rss_bytes = 0
        if usage is not None:
            self.peak_memory_bytes = max(self.peak_memory_bytes, _own_peak(usage))
        # Output held back by backpressure must now be read to the end.
        for fd, resumer in list(self._paused.items()):
            resumer.cancel()
            self._resume(fd)
        if self._on_exit is not None:
            try:
                self._on_exit()
            except Exception:
                # Only what the freed slot starts next is lost to this: the
                # attempt still ends through follow().
                log.exception("job %d: acting on its exit failed", self.job_id)
        self._check_done()

    # -- output ------------------------------------------------------------

    def _reader_of(self, fd: int) -> Callable[[], None]:
        return lambda: self._read(fd)

    def _read(self, fd: int) -> None:
        stream = self._readers[fd]
        try:
            data = os.read(fd, CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("job %d: reading its output failed: %s", self.job_id, exc)
            self._close_reader(fd)
            return
        if not data:
            self._close_reader(fd)
            return
        if len(data) >= DEFAULT_PIPE_BYTES and fd not in self._enlarged:
            # A full pipe at its default size: this job writes a lot.
            self._enlarged.add(fd)
            _enlarge(fd)
        if self._on_output is not None:
            try:
                self._on_output(stream, data)
            except Exception:
                log.exception("job %d: handling its output failed; not reading it any more", self.job_id)
                self._close_reader(fd)
                return
        # Only while the job runs: after its exit the rest of the pipe must be
        # read promptly so the finish can be reported.
        bp = self._backpressure
        if bp is not None and not self._reaped and bp.paused():
            self._watch.remove(fd)
            self._paused[fd] = asyncio.create_task(self._resume_when(bp, fd))

    async def _resume_when(self, bp: Backpressure, fd: int) -> None:
        await _first_of(bp.resumed(), self._exited.wait())
        self._resume(fd)

    def _resume(self, fd: int) -> None:
        if self._paused.pop(fd, None) is not None and fd in self._readers:
            self._watch.add(fd, self._reader_of(fd))

    def _close_reader(self, fd: int) -> None:
        self._readers.pop(fd, None)
        self._enlarged.discard(fd)
        resumer = self._paused.pop(fd, None)
        if resumer is not None:
            resumer.cancel()  # not watched meanwhile
            os.close(fd)
        else:
            self._watch.close(fd)
        if not self._readers:
            self._check_done()

    def close_output(self, stream: int) -> None:
        """Stop reading the stream and close our end of its pipe: the job's
        next write to it fails with EPIPE, as with a local reader gone."""
        for fd, of_stream in list(self._readers.items()):
            if of_stream == stream:
                self._close_reader(fd)

    def _stop_watching(self) -> None:
        """Whatever still watches the process or its pipes (after the end, a cancel or a failure)."""
        for fd in list(self._readers):
            self._close_reader(fd)
        if self._pidfd >= 0:
            self._watch.close(self._pidfd)
            self._pidfd = -1
        if self._sampler is not None:
            self._sampler.remove(self)
            self._sampler = None

    # -- input -------------------------------------------------------------

    async def _feed_stdin(self, pipe: _PipeWriter) -> None:
        source = self._stdin
        try:
            if source is None:
                return  # nothing will ever come: end of file at once
            while data := await source.take():
                try:
                    await pipe.write(data, source.written)
                except (BrokenPipeError, ConnectionResetError):
                    log.debug("job %d: closed its stdin; dropping further input", self.job_id)
                    return
                except OSError as exc:
                    log.warning("job %d: writing its stdin failed: %s", self.job_id, exc)
                    return
        finally:
            self._close_stdin(pipe)

    def _close_stdin(self, pipe: _PipeWriter) -> None:
        if not pipe.closed:
            pipe.close()
            if self._stdin is not None:
                self._stdin.closed()

    # -- memory ------------------------------------------------------------

    def _schedule_sample(self) -> None:
        n = self._samples
        delay = SAMPLE_DELAYS[n] if n < len(SAMPLE_DELAYS) else SAMPLE_INTERVAL
        loop = asyncio.get_running_loop()
        sampler = self._sampler or _Sampler.of(loop)
        sampler.add(self, loop.time() + delay)
        self._sampler = sampler

    def _sample_due(self) -> None:
        self._samples += 1
        self._sample()
        self._schedule_sample()

    def _main_process(self) -> psutil.Process | None:
        if self._main is None and self.pid is not None and not self._reaped:
            # Not reaped yet (a zombie at worst): the pid is still our child's.
            with contextlib.suppress(psutil.Error):
                self._main = psutil.Process(self.pid)
        return self._main

    def _sample(self) -> None:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        self.rss_bytes = total
        self.peak_memory_bytes = max(self.peak_memory_bytes, total)

    def tree(self) -> list[psutil.Process]:
        """Living processes of the job: its group and session, and descendants of any seen before."""
        if self.pid is None:
            return []
        roots = list(self._known.values())
        main = self._main_process()
        if main is not None:
            roots.append(main)
        alive = living_tree(self.pid, roots=roots)
        self._known = {proc.pid: proc for proc in alive}
        return alive

    # -- signals and kill ------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        """Deliver a signal to the job's process group and nothing more (SignalJob)."""
        if self.pid is None:
            self._early_signals.append(signum)
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            log.debug("job %d: no process left to signal", self.job_id)
        except (OSError, ValueError) as exc:
            log.warning("job %d: cannot send signal %d: %s", self.job_id, signum, exc)

    def kill(self, signum: int = 0, grace_seconds: float = 0.0) -> None:
        """Signal the whole tree now (SIGTERM if 0), SIGKILL whatever is left after the grace time."""
        signum = signum or signal.SIGTERM
        grace = grace_seconds if grace_seconds > 0 else self.kill_grace_seconds
        deadline = time.monotonic() + grace
        if self._kill_deadline is None or deadline < self._kill_deadline:
            self._kill_deadline = deadline
        if self.pid is None:
            # Not spawned yet: run() delivers it right after the spawn.
            self._pending_signal = signum
            return
        self._signal_tree(signum)
        self._start_killer()

    def _start_killer(self) -> None:
        if self._killer is None:
            self._killer = asyncio.create_task(self._enforce_kill())
            self._killer.add_done_callback(lambda _: self._check_done())

    async def _enforce_kill(self) -> None:
        killed_at: float | None = None
        while True:
            survivors = self.tree()
            if not survivors:
                return
            now = time.monotonic()
            if killed_at is None and self._kill_deadline is not None and now >= self._kill_deadline:
                self._signal_tree(signal.SIGKILL, survivors)
                killed_at = now
            elif killed_at is not None and now - killed_at > SIGKILL_WAIT_SECONDS:
                pids = ", ".join(str(p.pid) for p in survivors)
                log.warning("job %d: processes %s survive SIGKILL; giving up on them", self.job_id, pids)
                return
            await asyncio.sleep(KILL_POLL_SECONDS)

    def _signal_tree(self, signum: int, procs: list[psutil.Process] | None = None) -> None:
        if self.pid is None:
            return
        procs = self.tree() if procs is None else procs
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signum)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signum)


# ru_maxrss is in KiB on Linux (bytes on macOS, where this is not used).
_MAXRSS_UNIT = 1024 if sys.platform.startswith("linux") else 0


def _own_peak(usage: resource.struct_rusage) -> int:
    """The peak RSS of a reaped process by itself (bytes; 0 where unknown).

    The kernel counts into a child's ru_maxrss the peak of the memory it
    replaced at its exec, which after a vfork is the worker's own: only a
    figure above the worker's peak is the job's.
    """
    global _worker_peak
    child = usage.ru_maxrss
    if _MAXRSS_UNIT == 0 or child <= _worker_peak:
        return 0  # the worker's peak only grows: no need to ask again
    _worker_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if child <= _worker_peak:
        return 0
    return child * _MAXRSS_UNIT


# The worker's own peak RSS as last read, in ru_maxrss units.
_worker_peak = 0


class _Sampler:
    """Takes the memory samples of a loop's jobs from one timer, every
    SAMPLE_TICK while any job is due one. Most short jobs end before their
    first sample, and a timer of their own, made and cancelled, cost them
    about 6 us; an entry here, added and removed, under 1."""

    _of: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sampler] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        # When each job's next sample is due (loop time).
        self._due: dict[JobProcess, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Sampler:
        sampler = cls._of.get(loop)
        if sampler is None:
            sampler = cls._of[loop] = cls()
        return sampler

    def add(self, proc: JobProcess, due: float) -> None:
        self._due[proc] = due
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SAMPLE_TICK, self._tick)

    def remove(self, proc: JobProcess) -> None:
        self._due.pop(proc, None)

    def _tick(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        for proc, due in list(self._due.items()):
            if due <= now:
                try:
                    proc._sample_due()
                except Exception:
                    log.exception("job %d: sampling its memory failed", proc.job_id)
                    self._due.pop(proc, None)
        if self._due and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SAMPLE_TICK, self._tick)


def _enlarge(fd: int) -> None:
    with contextlib.suppress(OSError):  # not Linux, or over /proc/sys/fs/pipe-max-size
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)


async def _first_of(*aws: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
