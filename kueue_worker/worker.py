"""The worker's middle: turns server messages into attempt-state stimuli and
processes, and process events into messages for the server.

It knows nothing of gRPC: the connection attaches an outbox for the length of
a session, and its writer pulls output and finishes (next_request) as fast as
the stream takes them. Messages produced while detached are not lost when
they matter: output and finishes stay in the attempt state (in memory, then
in spool files) until acknowledged and are sent again on the next attach, and
every attempt's stdin position is reported again (a StdinAck sent on a
breaking stream may never have arrived).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

import kueue
from kueue import wire
from kueue.config import WorkerSettings
from kueue.logs import event
from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker import spawn, sysinfo
from kueue_worker.attempts import Attempts, CwdCheck, Key, Reservation, StdinResult
from kueue_worker.orphans import Ledger
from kueue_worker.output_spool import SpoolDir
from kueue_worker.runner import JobProcess, Outcome
from kueue_worker.shares import WHOLE, Share

log = logging.getLogger(__name__)

MB = 1024 * 1024
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


_OUTPUT_REQUEST = wire.BytesEnvelope(wpb.ConnectRequest, "output")


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

    def __init__(self, attempts: Attempts, total_limit: int, memory_ceiling: int) -> None:
        self._attempts = attempts
        self._total_limit = total_limit
        self._memory_ceiling = memory_ceiling
        self._changed = asyncio.Event()

    def paused(self) -> bool:
        a = self._attempts
        # A stopping worker must let its jobs' output drain so they can end.
        if a.closing:
            return False
        return a.unacked_bytes > self._total_limit or a.memory_bytes > self._memory_ceiling

    async def resumed(self) -> None:
        while self.paused():
            await self.wait_changed()

    async def wait_changed(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def changed(self) -> None:
        self._changed.set()


class AttemptPace:
    """One attempt's back-pressure: the worker's output budget, and the read
    limit a client attached to the job sets (OutputWindow)."""

    def __init__(self, budget: OutputBudget, attempts: Attempts, key: Key) -> None:
        self._budget = budget
        self._attempts = attempts
        self._key = key

    def paused(self) -> bool:
        return self._budget.paused() or self._attempts.read_limited(*self._key)

    async def resumed(self) -> None:
        while self.paused():
            await self._budget.wait_changed()


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
        self,
        settings: WorkerSettings,
        name: str,
        worker_id: str,
        ledger: Ledger | None = None,
        spool: SpoolDir | None = None,
        share: Share = WHOLE,
        machine: str = "",
    ) -> None:
        self.settings = settings
        # Of a worker run as several processes, this one's part of the
        # machine, and the name the processes share (Register.machine).
        self.share = share
        self.machine = machine
        self.name = name
        self.worker_id = worker_id
        # Where running attempts are recorded, so a restart after a crash can kill them.
        self.ledger = ledger
        # Unacknowledged output is held in memory up to output_memory_mb, then
        # in spool files (if any) up to output_spill_mb more.
        # A process of several takes its share of both.
        memory_bytes = share.part(settings.output_memory_mb) * MB
        spill_bytes = share.part(settings.output_spill_mb) * MB if spool is not None else 0
        self.attempts = Attempts(
            name,
            share.part(settings.worker_max_parallel_jobs),
            memory_limit=memory_bytes,
            spool=spool.open if spill_bytes else None,
            prefetch=settings.prefetch_jobs,
        )
        self.processes: dict[Key, JobProcess] = {}
        # Attempts that start once a stale attempt of their job has ended
        # (_start_after_stale), by job id.
        self._after_stale: dict[int, tuple[int, common_pb2.JobSpec, bytes]] = {}
        # Attempts of a crashed previous run whose processes were killed at
        # start-up, reported until the server has taken a Register with them.
        self.killed_after_restart: list[wpb.AttemptReport] = []
        # The Assigns of the attempts waiting for a slot (Attempts.next_to_start).
        self._waiting_assigns: dict[Key, wpb.Assign] = {}
        # Finishing the running jobs before stopping: the server offers nothing new.
        self.draining = False
        # Done when each attempt has ended (wait_idle, stop_jobs).
        self._watchers: dict[Key, asyncio.Future[None]] = {}
        self._feeds: dict[Key, StdinFeed] = {}
        self._acks_due: set[Key] = set()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._outbox: Outbox | None = None
        self._wake_writer: Callable[[], None] | None = None
        # Set when a heartbeat should go out before the interval is over.
        self.heartbeat_due = asyncio.Event()
        # Past the limits reading from the jobs' pipes pauses: the jobs block on
        # write instead of the worker running out of memory or disk while the
        # server is away. A disk that fails to take spool files leaves the
        # memory ceiling (limit + 25%) to do it.
        self._budget = OutputBudget(self.attempts, memory_bytes + spill_bytes, memory_bytes * 5 // 4)
        # Working directories recently found usable, until when (loop time).
        self._cwd_ok: dict[str, float] = {}
        # The pids of started attempts whose Started waits for the Finisheds
        # before it (Attempts.started): their attempt_started line goes out
        # with the Started, or, if they end first, within their
        # attempt_finished line, as the server logs such a job's start.
        self._start_untold: dict[Key, int] = {}

    # -- the session's view ----------------------------------------------------

    def attach(self, outbox: Outbox, wake_writer: Callable[[], None]) -> None:
        """A new stream: Register first; output (everything unacknowledged,
        then live) is pulled by its writer through next_request, which
        wake_writer prompts."""
        outbox(request(self.register_message()))
        for ack in self.attempts.stdin_positions():
            outbox(request(ack))
        self.attempts.rewind()
        self._outbox = outbox
        self._wake_writer = wake_writer
        wake_writer()

    def detach(self, outbox: Outbox) -> None:
        if self._outbox is outbox:
            self._outbox = None
            self._wake_writer = None

    def next_request(self) -> wpb.ConnectRequest | None:
        """The next Output or Finished for the stream's writer, if any."""
        msg = self.attempts.next_message()
        return None if msg is None else self._request(msg)

    def next_encoded(self) -> wpb.ConnectRequest | bytes | None:
        """next_request, with an Output already encoded (kueue.wire): the
        stream's writer sends it without protobuf's copies of its data."""
        item = self.attempts.next_parts()
        if isinstance(item, tuple):
            return _OUTPUT_REQUEST.encode(*item)
        return None if item is None else self._request(item)

    def _request(self, msg: WorkerMessage) -> wpb.ConnectRequest:
        """request(msg), with the attempt_started line of a Started that waited, as it goes out."""
        if type(msg) is wpb.Started:
            pid = self._start_untold.pop((msg.job_id, msg.attempt), None)
            if pid is not None:
                self._log_started(msg.job_id, msg.attempt, pid)
        return request(msg)

    def _log_started(self, job_id: int, attempt: int, pid: int) -> None:
        event(
            log,
            "attempt_started",
            "job %d attempt %d: started, pid %d",
            job_id,
            attempt,
            pid,
            job=job_id,
            attempt=attempt,
            worker=self.name,
            pid=pid,
            state="running",
        )

    def finishes_unsent(self) -> bool:
        """Whether a Finished still waits to go out on the current stream."""
        return self.attempts.finishes_unsent()

    def _output_ready(self) -> None:
        if self._wake_writer is not None:
            self._wake_writer()

    def report_killed_after_restart(self, job_id: int, attempt: int, started_at: float) -> None:
        self.killed_after_restart.append(
            wpb.AttemptReport(
                job_id=job_id, attempt=attempt, killed_after_restart=True, started_at=started_at
            )
        )

    def register_message(self) -> wpb.Register:
        system = sysinfo.probe()
        capacity = sysinfo.capacity(self.settings, system, self.share)
        self.attempts.capacity = Reservation.of(capacity)
        return wpb.Register(
            worker_id=self.worker_id,
            name=self.name,
            system=system,
            capacity=capacity,
            attempts=[*self.attempts.reports(), *self.killed_after_restart],
            version=kueue.__version__,
            draining=self.draining,
            prefetch=0 if self.draining else self.settings.prefetch_jobs,
            batches=True,
            output_windows=True,
            environ_blocks=spawn.BLOCKS_MATCH,
            close_output=True,
            machine=self.machine,
            machine_capacity=sysinfo.capacity(self.settings, system) if self.machine else None,
        )

    def heartbeat_message(self) -> wpb.Heartbeat:
        system = sysinfo.probe()
        jobs_rss = sum(p.rss_bytes for p in self.processes.values())
        external = sysinfo.external_use(
            self.settings, system, self.attempts.reserved().cpus, jobs_rss, self.share
        )
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
        elif kind == "retract":
            self.on_retract(response.retract)
        elif kind == "output_ack":
            ack = response.output_ack
            self.attempts.output_ack(ack.job_id, ack.attempt, ack.stream, ack.offset)
            self._budget.changed()
        elif kind == "output_window":
            w = response.output_window
            self.attempts.output_window(w.job_id, w.attempt, w.limit)
            self._budget.changed()
        elif kind == "finished_ack":
            ack = response.finished_ack
            self.attempts.finished_ack(ack.job_id, ack.attempt)
            if self.ledger is not None:
                # Only now: until the server has the finish, a crash of this
                # worker must still tell it the attempt ran (main.py).
                self.ledger.forget(ack.job_id, ack.attempt)
            self._budget.changed()
        elif kind == "close_output":
            c = response.close_output
            proc = self.processes.get((c.job_id, c.attempt))
            if proc is not None:
                proc.close_output(c.stream)
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
        reply = decision.reply
        if reply is not None:
            self._emit(reply)
        if reply is not None and not reply.accepted:
            reason = reply.reason
            event(
                log,
                "attempt_rejected",
                "job %d attempt %d rejected: %s",
                msg.job_id,
                msg.attempt,
                reason,
                job=msg.job_id,
                attempt=msg.attempt,
                worker=self.name,
                reason=reason,
            )
        if decision.start:
            self._start_after_stale(msg.job_id, msg.attempt, spec, msg.environ)
        elif reply is not None and reply.queued:
            self._waiting_assigns[(msg.job_id, msg.attempt)] = msg

    def _finish_unstarted(self, key: Key) -> None:
        if self.attempts.finish(*key, wpb.Finished(signal=9)) is not None:
            self._output_ready()

    def on_retract(self, msg: wpb.Retract) -> None:
        reply = self.attempts.hand_back(msg.job_id, msg.attempt)
        if reply is None:
            log.debug("retract of job %d attempt %d: not waiting here", msg.job_id, msg.attempt)
            return
        self._waiting_assigns.pop((msg.job_id, msg.attempt), None)
        self._emit(reply)

    def _hand_back_waiting(self, reason: str) -> None:
        for reply in self.attempts.hand_back_all(reason):
            self._waiting_assigns.pop((reply.job_id, reply.attempt), None)
            self._emit(reply)

    def _start_waiting(self) -> None:
        """Start held attempts while slots are free: no round trip to the server."""
        while (key := self.attempts.next_to_start()) is not None:
            assign = self._waiting_assigns.pop(key)
            self._start_after_stale(*key, assign.spec, assign.environ)

    def _start_after_stale(self, job_id: int, attempt: int, spec: common_pb2.JobSpec, environ: bytes) -> None:
        """Start the attempt, but never beside an older attempt of its job
        still running here: the server has moved the job on (this worker was
        cut off past its timeout and is back), so the older one is stale. It
        is killed, and this one starts once it has ended."""
        stale = [key for key in self.processes if key[0] == job_id and key[1] < attempt]
        if not stale:
            self._start(job_id, attempt, spec, environ)
            return
        waiting = self._after_stale.get(job_id)
        if waiting is not None:
            # An attempt between them waits here too: the server moved the job on past it as well.
            self._finish_unstarted((job_id, waiting[0]))
        self._after_stale[job_id] = (attempt, spec, environ)
        for key in stale:
            if self.attempts.kill(*key):
                log.info("job %d attempt %d is stale (attempt %d is here): killing it first", *key, attempt)
                self.processes[key].kill(0, self.settings.kill_grace_seconds)

    async def _check_cwd(self, cwd: str) -> CwdCheck:
        # A directory found usable is taken as such for a moment: an array of
        # short jobs in one directory would otherwise pay a thread hand-over
        # each. (One that vanishes meanwhile makes the spawn fail, as it may
        # between any check and the spawn.)
        loop = asyncio.get_running_loop()
        if self._cwd_ok.get(cwd, -1.0) > loop.time():
            return CwdCheck.OK
        try:
            # Not wait_for(): this runs in the session's reader, which must
            # honour the cancel that ends the session (see connection.py).
            async with asyncio.timeout(CWD_CHECK_TIMEOUT):
                result = await asyncio.to_thread(check_cwd, cwd)
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
        if key in self._waiting_assigns or self._after_stale.get(msg.job_id, (0,))[0] == msg.attempt:
            # Never started: it ends here, as if killed at once.
            self._waiting_assigns.pop(key, None)
            self._after_stale.pop(msg.job_id, None)
            self._finish_unstarted(key)
            return
        if not self.attempts.kill(msg.job_id, msg.attempt) or proc is None:
            log.debug("kill of job %d attempt %d: not running here", msg.job_id, msg.attempt)
            return
        signum = msg.signal or 15
        event(
            log,
            "attempt_killing",
            "job %d attempt %d: killing (signal %d)",
            msg.job_id,
            msg.attempt,
            signum,
            job=msg.job_id,
            attempt=msg.attempt,
            worker=self.name,
            signal=signum,
        )
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

    def _start(self, job_id: int, attempt: int, spec: common_pb2.JobSpec, environ: bytes) -> None:
        key = (job_id, attempt)

        def started(pid: int) -> None:
            # First, before anything else can go wrong: a job not recorded
            # would outlive a crash of this worker unnoticed.
            if self.ledger is not None:
                # The spawn's clock readings spare the ledger a read of /proc.
                self.ledger.record(job_id, attempt, pid, proc.spawned_between)
            msg = self.attempts.started(job_id, attempt, pid)
            if msg is not None:
                held = self.attempts.get(key)
                if held is not None and held.promoted:
                    # It goes after the Finished that freed its slot; a short
                    # job has mostly ended by then, and its one line says both.
                    self._start_untold[key] = pid
                    self._output_ready()
                else:
                    self._log_started(job_id, attempt, pid)
                    self._emit(msg)
                self.heartbeat_due.set()

        def output(stream: int, data: bytes) -> None:
            if self.attempts.output(job_id, attempt, stream, data):
                self._output_ready()

        def exited() -> None:
            # The slot is free the moment the process is gone: the next held
            # job starts now, before this one's output is drained and its
            # Finished made (its Started still goes after that Finished).
            if self.attempts.exited(job_id, attempt):
                self._start_waiting()

        if self.ledger is not None:
            # Before the spawn: a crash before started() records the pid must
            # not leave the process unaccounted for.
            self.ledger.spawning(job_id, attempt)
        feed = None
        if spec.stdin_pipe:
            feed = self._feeds[key] = StdinFeed(self, key)
        proc = JobProcess(
            spec,
            job_id=job_id,
            attempt=attempt,
            worker_name=self.name,
            kill_grace_seconds=self.settings.kill_grace_seconds,
            worker_id=self.worker_id,
            environ=environ,
            on_started=started,
            on_exit=exited,
            on_output=output,
            backpressure=AttemptPace(self._budget, self.attempts, key),
            stdin=feed,
        )
        self.processes[key] = proc
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers[key] = ended
        proc.follow(lambda outcome: self._ended(key, outcome, ended))

    def _ended(self, key: Key, outcome: Outcome, ended: asyncio.Future[None]) -> None:
        """The attempt's process and output are done (or it did not start)."""
        self.processes.pop(key, None)
        self._watchers.pop(key, None)
        self._feeds.pop(key, None)
        try:
            self._report_end(key, outcome)
        finally:
            ended.set_result(None)
        job_id = key[0]
        if job_id in self._after_stale and not any(k[0] == job_id for k in self.processes):
            attempt, spec, environ = self._after_stale.pop(job_id)
            if self.attempts.closing:
                self._finish_unstarted((job_id, attempt))  # stopping: it never starts
            else:
                self._start(job_id, attempt, spec, environ)

    def _report_end(self, key: Key, outcome: Outcome) -> None:
        job_id, attempt = key
        finished = self.attempts.finish(job_id, attempt, outcome.as_finished())
        # The final stdin position (input left unwritten counts as discarded)
        # goes before the Finished, after which the server may not listen.
        self._acks_due.discard(key)
        self._send_stdin_ack(key)
        pid = self._start_untold.pop(key, None)
        if finished is not None:
            event(
                log,
                "attempt_finished",
                "job %d attempt %d: %s",
                job_id,
                attempt,
                describe(finished) if pid is None else f"pid {pid} {describe(finished)}",
                job=job_id,
                attempt=attempt,
                worker=self.name,
                state="finished",
                exit_code=finished.exit_code if finished.HasField("exit_code") else None,
                signal=finished.signal or None,
                error=finished.error or None,
                run_time=round(finished.run_time_seconds, 3),
                pid=pid,
            )
            self._output_ready()
        self._start_waiting()
        self.heartbeat_due.set()

    def start_draining(self) -> None:
        """Take no new jobs; the next heartbeat tells the server at once."""
        self.draining = True
        self.attempts.closing = True
        self._hand_back_waiting(f"worker {self.name} is draining")
        self.heartbeat_due.set()

    async def wait_idle(self) -> None:
        """Until no attempt runs here any more. Cancelling this wait leaves
        the attempts alone (gather() would cancel their watchers, and with them
        the kill and the report of their end)."""
        while self._watchers:
            await asyncio.wait(list(self._watchers.values()))

    async def stop_jobs(self, signum: int = 0, grace_seconds: float = 0.0) -> int:
        """Turn new work away, kill every attempt and wait until each has finished; how many there were."""
        self.attempts.closing = True
        # An attempt waiting for its stale one (_after_stale) ends unstarted
        # when that one has been killed (_ended).
        self._hand_back_waiting(f"worker {self.name} is shutting down")
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
