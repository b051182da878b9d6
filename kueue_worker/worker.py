"""The worker's middle: turns server messages into attempt-state stimuli and
processes, and process events into messages for the server.

It knows nothing of gRPC: the connection attaches an outbox for the length of
a session. Messages produced while detached are not lost when they matter:
output and finishes stay in the attempt state until acknowledged and are
resent on the next attach, and every attempt's stdin position is reported
again (a StdinAck sent on a breaking stream may never have arrived).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

import kueue
from kueue.config import WorkerSettings
from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker import sysinfo
from kueue_worker.attempts import Attempts, CwdCheck, Key, StdinResult
from kueue_worker.orphans import Ledger
from kueue_worker.runner import JobProcess, Outcome

log = logging.getLogger(__name__)

# Unacknowledged output held in memory, over all jobs, before reading from
# the jobs' pipes pauses (the jobs then block on write instead of the worker
# running out of memory while the server is away).
MAX_UNACKED_BYTES = 256 * 1024 * 1024
# A stat of a working directory on a hung network file system can block for
# minutes; the event loop must not.
CWD_CHECK_TIMEOUT = 30.0
CWD_OK_SECONDS = 1.0
# How long a StdinAck may wait for more writes to finish, so that a burst of
# small writes is acknowledged once; short, since the sender's window waits on it.
STDIN_ACK_DELAY = 0.002
# Valid numbers for SignalJob (0 only probes, so it is not one).
VALID_SIGNALS = frozenset(int(s) for s in signal.valid_signals())

Outbox = Callable[[wpb.ConnectRequest], None]
WorkerMessage = (
    wpb.Register
    | wpb.Heartbeat
    | wpb.AssignmentReply
    | wpb.Started
    | wpb.Output
    | wpb.Finished
    | wpb.Leaving
    | wpb.StdinAck
)

_FIELDS: dict[type, str] = {
    wpb.Register: "register",
    wpb.Heartbeat: "heartbeat",
    wpb.AssignmentReply: "assignment_reply",
    wpb.Started: "started",
    wpb.Output: "output",
    wpb.Finished: "finished",
    wpb.Leaving: "leaving",
    wpb.StdinAck: "stdin_ack",
}


def request(msg: WorkerMessage) -> wpb.ConnectRequest:
    req = wpb.ConnectRequest()
    getattr(req, _FIELDS[type(msg)]).CopyFrom(msg)
    return req


def check_cwd(cwd: str) -> CwdCheck:
    if not cwd or not os.path.isdir(cwd):
        return CwdCheck.MISSING
    if not os.access(cwd, os.X_OK):
        return CwdCheck.INACCESSIBLE
    return CwdCheck.OK


def describe(finished: wpb.Finished) -> str:
    if finished.error:
        return f"could not start: {finished.error}"
    if finished.HasField("exit_code"):
        return f"exited with code {finished.exit_code} after {finished.run_time_seconds:.1f} s"
    return f"killed by signal {finished.signal} after {finished.run_time_seconds:.1f} s"


class OutputBudget:
    """Pauses reading job output while too much of it awaits acknowledgement."""

    def __init__(self, attempts: Attempts, limit: int) -> None:
        self._attempts = attempts
        self._limit = limit
        self._changed = asyncio.Event()

    def paused(self) -> bool:
        # A stopping worker must let its jobs' output drain so they can end.
        return self._attempts.unacked_bytes > self._limit and not self._attempts.closing

    async def resumed(self) -> None:
        while self.paused():
            self._changed.clear()
            await self._changed.wait()

    def changed(self) -> None:
        self._changed.set()


class StdinFeed:
    """One attempt's stdin as its pipe writer sees it: the queue lives in the
    attempt state, this wakes the writer and reports its progress."""

    def __init__(self, worker: Worker, key: Key) -> None:
        self._worker = worker
        self._key = key
        self.ready = asyncio.Event()

    async def take(self) -> bytes:
        while True:
            data = self._worker.attempts.stdin_take(*self._key)
            if data is not None:
                return data
            self.ready.clear()
            await self.ready.wait()

    def written(self, count: int) -> None:
        self._worker.attempts.stdin_written(*self._key, count)
        self._worker.stdin_ack_soon(self._key)

    def closed(self) -> None:
        self._worker.attempts.stdin_closed(*self._key)
        self._worker.stdin_ack_soon(self._key)


class Worker:
    def __init__(
        self, settings: WorkerSettings, name: str, worker_id: str, ledger: Ledger | None = None
    ) -> None:
        self.settings = settings
        self.name = name
        self.worker_id = worker_id
        # Where running attempts are recorded, so a restart after a crash can kill them.
        self.ledger = ledger
        self.attempts = Attempts(name, settings.worker_max_parallel_jobs)
        self.processes: dict[Key, JobProcess] = {}
        # Finishing the running jobs before stopping: the server offers nothing new.
        self.draining = False
        self._watchers: dict[Key, asyncio.Task[None]] = {}
        self._feeds: dict[Key, StdinFeed] = {}
        self._acks_due: set[Key] = set()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._outbox: Outbox | None = None
        # Set when a heartbeat should go out before the interval is over.
        self.heartbeat_due = asyncio.Event()
        self._budget = OutputBudget(self.attempts, MAX_UNACKED_BYTES)
        # Working directories recently found usable, until when (loop time).
        self._cwd_ok: dict[str, float] = {}

    # -- the session's view ----------------------------------------------------

    def attach(self, outbox: Outbox) -> None:
        """A new stream: Register, then everything unacknowledged, then live messages."""
        outbox(request(self.register_message()))
        for msg in self.attempts.resend():
            outbox(request(msg))
        for ack in self.attempts.stdin_positions():
            outbox(request(ack))
        self._outbox = outbox

    def detach(self, outbox: Outbox) -> None:
        if self._outbox is outbox:
            self._outbox = None

    def register_message(self) -> wpb.Register:
        system = sysinfo.probe()
        return wpb.Register(
            worker_id=self.worker_id,
            name=self.name,
            system=system,
            capacity=sysinfo.capacity(self.settings, system),
            attempts=self.attempts.reports(),
            version=kueue.__version__,
            draining=self.draining,
        )

    def heartbeat_message(self) -> wpb.Heartbeat:
        system = sysinfo.probe()
        jobs_rss = sum(p.rss_bytes for p in self.processes.values())
        external = sysinfo.external_use(self.settings, system, self.attempts.reserved().cpus, jobs_rss)
        return wpb.Heartbeat(system=system, external_use=external, draining=self.draining)

    def _emit(self, msg: WorkerMessage) -> None:
        if self._outbox is not None:
            self._outbox(request(msg))

    async def handle(self, response: wpb.ConnectResponse) -> None:
        """One message from the server (other than Registered)."""
        kind = response.WhichOneof("msg")
        if kind == "assign":
            await self.on_assign(response.assign)
        elif kind == "kill":
            self.on_kill(response.kill)
        elif kind == "stdin":
            self.on_stdin(response.stdin)
        elif kind == "signal_job":
            self.on_signal_job(response.signal_job)
        elif kind == "output_ack":
            ack = response.output_ack
            self.attempts.output_ack(ack.job_id, ack.attempt, ack.stream, ack.offset)
            self._budget.changed()
        elif kind == "finished_ack":
            ack = response.finished_ack
            self.attempts.finished_ack(ack.job_id, ack.attempt)
            self._budget.changed()
        elif kind == "registered":
            log.debug("ignoring a repeated Registered")
        else:
            log.warning("ignoring an unknown message from the server (%s); is it newer than us?", kind)

    # -- server stimuli ----------------------------------------------------------

    async def on_assign(self, msg: wpb.Assign) -> None:
        spec = msg.spec
        cwd_check = await self._check_cwd(spec.cwd)
        decision = self.attempts.assign(
            msg.job_id, msg.attempt, spec.resources, spec.cwd, cwd_check, stdin_pipe=spec.stdin_pipe
        )
        self._emit(decision.reply)
        if not decision.reply.accepted:
            log.info("job %d attempt %d rejected: %s", msg.job_id, msg.attempt, decision.reply.reason)
        if decision.start:
            self._start(msg.job_id, msg.attempt, spec)

    async def _check_cwd(self, cwd: str) -> CwdCheck:
        # A directory found usable is taken as such for a moment: an array of
        # short jobs in one directory would otherwise pay a thread hand-over
        # each. (One that vanishes meanwhile makes the spawn fail, as it may
        # between any check and the spawn.)
        loop = asyncio.get_running_loop()
        if self._cwd_ok.get(cwd, -1.0) > loop.time():
            return CwdCheck.OK
        try:
            result = await asyncio.wait_for(asyncio.to_thread(check_cwd, cwd), CWD_CHECK_TIMEOUT)
        except TimeoutError:
            result = CwdCheck.INACCESSIBLE
        if result is CwdCheck.OK:
            if len(self._cwd_ok) > 1000:
                self._cwd_ok.clear()
            self._cwd_ok[cwd] = loop.time() + CWD_OK_SECONDS
        return result

    def on_kill(self, msg: wpb.Kill) -> None:
        key = (msg.job_id, msg.attempt)
        proc = self.processes.get(key)
        if not self.attempts.kill(msg.job_id, msg.attempt) or proc is None:
            log.debug("kill of job %d attempt %d: not running here", msg.job_id, msg.attempt)
            return
        log.info("job %d attempt %d: killing (signal %d)", msg.job_id, msg.attempt, msg.signal or 15)
        proc.kill(msg.signal, msg.grace_seconds)

    def on_stdin(self, msg: wpb.Stdin) -> None:
        key = (msg.job_id, msg.attempt)
        result = self.attempts.stdin(msg.job_id, msg.attempt, msg.offset, msg.data, msg.eof)
        if result is StdinResult.UNKNOWN:
            log.debug("stdin for job %d attempt %d: not held here", msg.job_id, msg.attempt)
            return
        if result in (StdinResult.GAP, StdinResult.AFTER_EOF):
            log.warning(
                "job %d attempt %d: dropping %d bytes of stdin at offset %d (%s)",
                msg.job_id,
                msg.attempt,
                len(msg.data),
                msg.offset,
                result.value,
            )
        feed = self._feeds.get(key)
        if feed is not None:
            feed.ready.set()
        self.stdin_ack_soon(key)

    def on_signal_job(self, msg: wpb.SignalJob) -> None:
        key = (msg.job_id, msg.attempt)
        if msg.signal not in VALID_SIGNALS:
            log.warning("job %d attempt %d: ignoring invalid signal %d", msg.job_id, msg.attempt, msg.signal)
            return
        a = self.attempts.get(key)
        proc = self.processes.get(key)
        if a is None or not a.active or proc is None:
            log.debug("signal for job %d attempt %d: not running here", msg.job_id, msg.attempt)
            return
        log.info("job %d attempt %d: sending signal %d", msg.job_id, msg.attempt, msg.signal)
        proc.send_signal(msg.signal)

    # -- stdin acknowledgements --------------------------------------------------

    def stdin_ack_soon(self, key: Key) -> None:
        """Acknowledge the attempt's stdin position within STDIN_ACK_DELAY."""
        self._acks_due.add(key)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(STDIN_ACK_DELAY, self._send_stdin_acks)

    def _send_stdin_acks(self) -> None:
        self._ack_timer = None
        due, self._acks_due = self._acks_due, set()
        for key in due:
            self._send_stdin_ack(key)

    def _send_stdin_ack(self, key: Key) -> None:
        msg = self.attempts.stdin_ack(*key)
        if msg is not None:
            self._emit(msg)

    # -- processes -----------------------------------------------------------------

    def _start(self, job_id: int, attempt: int, spec: common_pb2.JobSpec) -> None:
        key = (job_id, attempt)

        def started(pid: int) -> None:
            # First, before anything else can go wrong: a job not recorded
            # would outlive a crash of this worker unnoticed.
            if self.ledger is not None:
                self.ledger.record(job_id, attempt, pid)
            msg = self.attempts.started(job_id, attempt, pid)
            if msg is not None:
                log.info("job %d attempt %d: started, pid %d", job_id, attempt, pid)
                self._emit(msg)
                self.heartbeat_due.set()

        def output(stream: int, data: bytes) -> None:
            msg = self.attempts.output(job_id, attempt, stream, data)
            if msg is not None:
                self._emit(msg)

        feed = None
        if spec.stdin_pipe:
            feed = self._feeds[key] = StdinFeed(self, key)
        proc = JobProcess(
            spec,
            job_id=job_id,
            attempt=attempt,
            worker_name=self.name,
            kill_grace_seconds=self.settings.kill_grace_seconds,
            on_started=started,
            on_output=output,
            backpressure=self._budget,
            stdin=feed,
        )
        self.processes[key] = proc
        self._watchers[key] = asyncio.create_task(self._watch(key, proc), name=f"job {job_id}.{attempt}")

    async def _watch(self, key: Key, proc: JobProcess) -> None:
        job_id, attempt = key
        try:
            outcome = await proc.run()
        except Exception as exc:
            # A bug here must still end the attempt, or its slot would be lost.
            log.exception("job %d attempt %d: watching the process failed", job_id, attempt)
            outcome = Outcome(error=f"worker {self.name} failed to watch the process: {exc}")
        finally:
            self.processes.pop(key, None)
            self._watchers.pop(key, None)
            self._feeds.pop(key, None)
            if self.ledger is not None:
                self.ledger.forget(job_id, attempt)
        finished = self.attempts.finish(job_id, attempt, outcome.as_finished())
        # The final stdin position (input left unwritten counts as discarded)
        # goes before the Finished, after which the server may not listen.
        self._acks_due.discard(key)
        self._send_stdin_ack(key)
        if finished is not None:
            log.info("job %d attempt %d: %s", job_id, attempt, describe(finished))
            self._emit(finished)
        self.heartbeat_due.set()

    def start_draining(self) -> None:
        """Take no new jobs; the next heartbeat tells the server at once."""
        self.draining = True
        self.attempts.closing = True
        self.heartbeat_due.set()

    async def wait_idle(self) -> None:
        """Until no attempt runs here any more."""
        while self._watchers:
            await asyncio.gather(*list(self._watchers.values()), return_exceptions=True)

    async def stop_jobs(self, signum: int = 0, grace_seconds: float = 0.0) -> int:
        """Turn new work away, kill every attempt and wait until each has finished; how many there were."""
        self.attempts.closing = True
        # Output held back by backpressure must flow again so the jobs can end.
        self._budget.changed()
        for (job_id, attempt), proc in list(self.processes.items()):
            self.attempts.kill(job_id, attempt)
            proc.kill(signum, grace_seconds)
        watchers = list(self._watchers.values())
        if watchers:
            log.info("waiting for %d job(s) to end", len(watchers))
            await asyncio.gather(*watchers, return_exceptions=True)
        return len(watchers)
