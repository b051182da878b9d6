"""The worker's attempts as a pure state machine: stimuli in, messages out.

No I/O, no asyncio, no clock: the connection loop feeds it what happened (an
Assign with the result of the cwd check, a spawn, a chunk of output, an exit,
an acknowledgement) and sends the messages it returns. Everything the server
has not acknowledged stays here, so that after a reconnect it can be reported
(Register.attempts) and resent.

Lifecycle of an attempt, keyed by (job_id, attempt):

    WAITING --slot free--> STARTING --started--> RUNNING --finish--> FINISHED --FinishedAck--> forgotten
       |  \\__________________________\\_____________finish____________/^
       +--Retract or draining--> handed back (forgotten)

An attempt holds its reservation (slots, cpus, RAM) from STARTING until it
finishes. WAITING attempts (at most `prefetch` of them, accepted while every
slot was taken) hold none: they start, oldest first, as slots free.

Standard input (JobSpec.stdin_pipe) flows the other way: Stdin messages are
queued here, from the moment the attempt is accepted, until the pipe writer
takes them; StdinAck reports what went into the pipe. Once the pipe is closed
(end of file written, the job closed its end, or the job ended) whatever else
arrives is discarded but still acknowledged, so the sender is never stuck.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker.output_log import SpoolFile, StreamLog

Key = tuple[int, int]

# Output goes to the server in messages of at most this size; what waits is
# merged up to it (after an outage, or when the stream is slower than the job).
SEND_CHUNK_BYTES = 1024 * 1024
# Unacknowledged output kept in memory, over all attempts, before more of it
# goes to spool files (when the worker has them).
MEMORY_LIMIT_BYTES = 64 * 1024 * 1024
# Queued stdin is handed to the pipe writer in pieces of at most this size;
# small chunks are merged so that many tiny Stdin messages cost one write.
STDIN_TAKE_BYTES = 1024 * 1024

STDOUT = common_pb2.OUTPUT_STREAM_STDOUT
STDERR = common_pb2.OUTPUT_STREAM_STDERR


class Phase(enum.Enum):
    WAITING = "waiting"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"


class CwdCheck(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    INACCESSIBLE = "inaccessible"


@dataclass(frozen=True)
class Reservation:
    slots: int = 0
    cpus: int = 0
    ram_mb: int = 0

    @classmethod
    def of(cls, resources: common_pb2.Resources) -> Reservation:
        # Every process occupies a slot, whatever the request says.
        return cls(slots=max(1, resources.slots), cpus=resources.cpus, ram_mb=resources.ram_mb)

    def __add__(self, other: Reservation) -> Reservation:
        return Reservation(self.slots + other.slots, self.cpus + other.cpus, self.ram_mb + other.ram_mb)

    def __sub__(self, other: Reservation) -> Reservation:
        return Reservation(self.slots - other.slots, self.cpus - other.cpus, self.ram_mb - other.ram_mb)


@dataclass(frozen=True)
class AssignDecision:
    # None when the attempt starts at once: its Started answers the Assign.
    reply: wpb.AssignmentReply | None
    # False for a rejection, a queued attempt and a repeated Assign of an
    # attempt already held.
    start: bool


class StdinResult(enum.Enum):
    """What became of one Stdin message."""

    QUEUED = "queued"
    # Entirely below what was received before: a resend after a reconnect.
    REPEAT = "repeat"
    # The pipe is closed or was never asked for: acknowledged, not written.
    DISCARDED = "discarded"
    # Starts beyond what was received: bytes in between are missing, so the
    # data cannot be written (an end of file in it still counts).
    GAP = "gap"
    # Data beyond an end of file already received.
    AFTER_EOF = "after eof"
    UNKNOWN = "unknown attempt"


@dataclass
class StdinLog:
    """Standard input of an attempt, in offsets from the attempt's start.

    [0, written) is in the pipe (or was discarded once it closed), [written,
    taken) is with the pipe writer, [taken, received) waits in chunks.
    """

    received: int = 0
    taken: int = 0
    written: int = 0
    # Offset in the last StdinAck sent.
    acked: int = 0
    eof: bool = False
    # No pipe (any more): what arrives is discarded and acknowledged.
    closed: bool = False
    # A StdinAck is owed even if written did not move (answer to a repeat).
    ack_owed: bool = False
    chunks: deque[bytes] = field(default_factory=deque)

    def discard_rest(self) -> None:
        self.closed = True
        self.chunks.clear()
        self.taken = self.written = self.received


@dataclass
class Attempt:
    job_id: int
    attempt: int
    reservation: Reservation
    phase: Phase = Phase.STARTING
    pid: int = 0
    stdout: StreamLog = field(default_factory=StreamLog)
    stderr: StreamLog = field(default_factory=StreamLog)
    finished: wpb.Finished | None = None
    # The Finished went out on the current stream.
    finished_sent: bool = False
    kill_requested: bool = False
    stdin_pipe: bool = False
    stdin: StdinLog = field(default_factory=StdinLog)
    # Which stream the next send looks at first, so neither starves the other.
    next_stream: int = STDOUT
    # Started from WAITING, in a slot some other attempt freed (or while a
    # Finished was pending): its Started waits for the Finisheds before it.
    promoted: bool = False
    # The process has ended: its slot is free, its Finished is still to come.
    exited: bool = False
    # Its Started waits (in Attempts._starts) for the Finisheds of these:
    # the attempts that had ended, unsaid, when it started.
    start_after: frozenset[Key] = frozenset()
    # Read no more output than this (both streams; 0: no limit): a client
    # attached to the job sets the pace (OutputWindow).
    read_limit: int = 0

    @property
    def key(self) -> Key:
        return (self.job_id, self.attempt)

    @property
    def active(self) -> bool:
        """Not finished: runs, is about to, or waits for a slot."""
        return self.phase is not Phase.FINISHED

    @property
    def holds_slot(self) -> bool:
        """Holds (or is about to hold) a process and its reservation."""
        return (self.phase is Phase.STARTING or self.phase is Phase.RUNNING) and not self.exited

    def log(self, stream: int) -> StreamLog:
        if stream == STDOUT:
            return self.stdout
        if stream == STDERR:
            return self.stderr
        raise ValueError(f"unknown output stream {stream}")


# Opens a spool file for (key, stream, offset of its first byte).
Spool = Callable[[Key, int, int], SpoolFile]


class Attempts:
    """Every attempt the worker holds, and the decisions about them."""

    def __init__(
        self,
        worker_name: str,
        max_slots: int,
        *,
        memory_limit: int = MEMORY_LIMIT_BYTES,
        spool: Spool | None = None,
        prefetch: int = 0,
    ) -> None:
        self.worker_name = worker_name
        self.max_slots = max_slots
        self.prefetch = prefetch
        # CPUs and RAM the worker offers (Register.capacity): a waiting
        # attempt starts only when they are free too, as the server would
        # have required had it offered the job then. None: slots only.
        self.capacity: Reservation | None = None
        self.memory_limit = memory_limit
        self._spool = spool
        # Set when the worker stops: new assignments are turned away.
        self.closing = False
        self._attempts: dict[Key, Attempt] = {}
        self._unacked_bytes = 0
        self._memory_bytes = 0
        # Attempts that may have something to send, in the order to serve them.
        self._unsent: dict[Key, None] = {}
        # WAITING attempts in the order they were accepted.
        self._waiting: dict[Key, None] = {}
        # Promoted attempts whose Started next_message has still to send, in
        # the order they started; nothing else of theirs goes before it.
        self._starts: dict[Key, None] = {}
        # Reservations of the attempts that hold a slot (STARTING or RUNNING):
        # at most max_slots of them, so admission does not walk every attempt
        # held (prefetched ones and finishes waiting for their acknowledgement).
        self._holding: dict[Key, Reservation] = {}
        # Their sum, kept as they come and go (asked at every Assign and start).
        self._reserved = Reservation()
        # Attempts whose Finished has not gone out on the current stream,
        # counting those that exited and have no Finished yet: a Started
        # waits for them, so the server never sees a slot taken twice.
        self._finish_pending: set[Key] = set()

    # -- queries ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._attempts)

    def __contains__(self, key: object) -> bool:
        return key in self._attempts

    def get(self, key: Key) -> Attempt | None:
        return self._attempts.get(key)

    def active(self) -> list[Attempt]:
        return [a for a in self._attempts.values() if a.active]

    def reserved(self) -> Reservation:
        return self._reserved

    def _hold(self, key: Key, reservation: Reservation) -> None:
        self._holding[key] = reservation
        self._reserved += reservation

    def _release(self, key: Key) -> None:
        reservation = self._holding.pop(key, None)
        if reservation is not None:
            self._reserved -= reservation

    @property
    def waiting(self) -> int:
        """Attempts accepted and held for a free slot."""
        return len(self._waiting)

    @property
    def unacked_bytes(self) -> int:
        """Output held for the server, over all attempts."""
        return self._unacked_bytes

    @property
    def memory_bytes(self) -> int:
        """The part of unacked_bytes held in memory (the rest is spooled)."""
        return self._memory_bytes

    # -- stimuli from the server -----------------------------------------

    def assign(
        self,
        job_id: int,
        attempt: int,
        resources: common_pb2.Resources,
        cwd: str,
        cwd_check: CwdCheck,
        stdin_pipe: bool = False,
    ) -> AssignDecision:
        key = (job_id, attempt)

        def reply(accepted: bool, reason: str = "", transient: bool = False) -> wpb.AssignmentReply:
            return wpb.AssignmentReply(
                job_id=job_id, attempt=attempt, accepted=accepted, reason=reason, transient=transient
            )

        if key in self._attempts:
            # The server repeats an Assign it is unsure we got (e.g. after a reconnect).
            again = reply(True)
            again.queued = self._attempts[key].phase is Phase.WAITING
            return AssignDecision(again, start=False)
        if self.closing:
            return AssignDecision(reply(False, f"worker {self.worker_name} is shutting down", True), False)
        if cwd_check is CwdCheck.MISSING:
            reason = f"working directory {cwd} does not exist on {self.worker_name}"
            return AssignDecision(reply(False, reason, False), False)
        if cwd_check is CwdCheck.INACCESSIBLE:
            reason = f"working directory {cwd} is not accessible on {self.worker_name}"
            return AssignDecision(reply(False, reason, False), False)
        reservation = Reservation.of(resources)
        used = self.reserved().slots
        # Those waiting came first: a newcomer does not overtake them. A job
        # offered beyond the free room (prefetch) waits while its cpus or RAM
        # are taken, as well as its slot.
        start = not self._waiting and self._fits(reservation)
        # The server's view lags: the slots it saw free may already run jobs
        # that were waiting here, so it may send up to that many more.
        room = self.prefetch + self.max_slots if self.prefetch else 0
        if not start and (len(self._waiting) >= room or reservation.slots > self.max_slots):
            if used + reservation.slots <= self.max_slots and not self._waiting:
                reason = f"its cpus or RAM are in use on {self.worker_name} by running jobs"
            else:
                reason = f"no free job slot on {self.worker_name} ({used} of {self.max_slots} in use)"
            return AssignDecision(reply(False, reason, True), False)
        a = Attempt(job_id, attempt, reservation, stdin_pipe=stdin_pipe)
        # Without a pipe the process reads /dev/null; stray Stdin is acknowledged and dropped.
        a.stdin.closed = not stdin_pipe
        self._attempts[key] = a
        if start:
            self._hold(key, reservation)
            return AssignDecision(None, start=True)
        a.phase = Phase.WAITING
        self._waiting[key] = None
        queued = reply(True)
        queued.queued = True
        return AssignDecision(queued, start=False)

    def next_to_start(self) -> Key | None:
        """The oldest waiting attempt, if a slot is free for it now; it is
        STARTING from here (spawn it)."""
        if not self._waiting or self.closing:
            return None
        key = next(iter(self._waiting))
        a = self._attempts[key]
        if not self._fits(a.reservation):
            return None
        del self._waiting[key]
        a.phase = Phase.STARTING
        self._hold(key, a.reservation)
        a.promoted = True
        return key

    def _fits(self, reservation: Reservation) -> bool:
        # Field by field: a sum as a Reservation (at each start, for each
        # held attempt looked at) cost a short job a few us.
        reserved = self.reserved()
        if reserved.slots + reservation.slots > self.max_slots:
            return False
        cap = self.capacity
        # With nothing running it fits: the server found that it fits the worker.
        return (
            cap is None
            or not reserved.slots
            or (
                reserved.cpus + reservation.cpus <= cap.cpus
                and reserved.ram_mb + reservation.ram_mb <= cap.ram_mb
            )
        )

    def hand_back(self, job_id: int, attempt: int) -> wpb.AssignmentReply | None:
        """Retract: give a waiting attempt back (the reply to send), or None
        if it is not waiting here (started already, or unknown)."""
        key = (job_id, attempt)
        if key not in self._waiting:
            return None
        self._forget_waiting(key)
        return wpb.AssignmentReply(
            job_id=job_id, attempt=attempt, accepted=False, handed_back=True, reason="handed back"
        )

    def hand_back_all(self, reason: str) -> list[wpb.AssignmentReply]:
        """The worker stops taking jobs: every waiting attempt goes back to the
        queue (transient rejections: it may run elsewhere at once)."""
        replies = []
        for key in list(self._waiting):
            self._forget_waiting(key)
            replies.append(
                wpb.AssignmentReply(
                    job_id=key[0], attempt=key[1], accepted=False, reason=reason, transient=True
                )
            )
        return replies

    def _forget_waiting(self, key: Key) -> None:
        del self._waiting[key]
        del self._attempts[key]
        self._unsent.pop(key, None)
        self._finish_pending.discard(key)

    def kill(self, job_id: int, attempt: int) -> bool:
        """Whether the process of this attempt should be killed."""
        a = self._attempts.get((job_id, attempt))
        if a is None or not a.active:
            return False
        a.kill_requested = True
        return True

    def stdin(self, job_id: int, attempt: int, offset: int, data: bytes, eof: bool) -> StdinResult:
        """A Stdin message: queue what is new; see StdinResult for the rest."""
        a = self._attempts.get((job_id, attempt))
        if a is None:
            return StdinResult.UNKNOWN
        s = a.stdin
        end = offset + len(data)
        if s.closed:
            # Nothing is written any more, so a gap does not matter: acknowledge it all.
            s.received = max(s.received, end)
            s.taken = s.written = s.received
            s.eof = s.eof or eof
            s.ack_owed = True
            return StdinResult.DISCARDED
        if offset > s.received:
            # The end of file still holds: the job must not wait for input forever.
            s.eof = s.eof or eof
            s.ack_owed = True
            return StdinResult.GAP
        if end <= s.received:
            if eof and not s.eof:
                # An end of file at or below what was received (the server's "nobody is
                # attached any more" comes at offset 0) closes the pipe after all of it.
                s.eof = True
                return StdinResult.QUEUED
            s.ack_owed = True
            return StdinResult.REPEAT
        if s.eof:
            return StdinResult.AFTER_EOF
        s.chunks.append(data[s.received - offset :] if offset < s.received else data)
        s.received = end
        s.eof = eof
        return StdinResult.QUEUED

    def stdin_take(self, job_id: int, attempt: int, limit: int = STDIN_TAKE_BYTES) -> bytes | None:
        """For the pipe writer: bytes to write next; b"" when the pipe should be
        closed (end of file with everything written, or the attempt is gone); None
        while there is nothing to do."""
        a = self._attempts.get((job_id, attempt))
        if a is None or a.stdin.closed:
            return b""
        s = a.stdin
        if not s.chunks:
            return b"" if s.eof else None
        parts = [s.chunks.popleft()]
        size = len(parts[0])
        while s.chunks and size + len(s.chunks[0]) <= limit:
            parts.append(s.chunks.popleft())
            size += len(parts[-1])
        s.taken += size
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def stdin_written(self, job_id: int, attempt: int, count: int) -> None:
        """count more bytes of what was taken went into the pipe."""
        a = self._attempts.get((job_id, attempt))
        if a is not None and not a.stdin.closed:
            a.stdin.written = min(a.stdin.written + count, a.stdin.taken)

    def stdin_closed(self, job_id: int, attempt: int) -> None:
        """The pipe is closed: what was taken or queued but not written is discarded."""
        a = self._attempts.get((job_id, attempt))
        if a is not None:
            a.stdin.discard_rest()

    def stdin_ack(self, job_id: int, attempt: int) -> wpb.StdinAck | None:
        """The StdinAck to send now, if the position moved or one is owed."""
        a = self._attempts.get((job_id, attempt))
        if a is None:
            return None
        s = a.stdin
        if s.written == s.acked and not s.ack_owed:
            return None
        s.acked = s.written
        s.ack_owed = False
        return wpb.StdinAck(job_id=job_id, attempt=attempt, offset=s.written)

    def output_ack(self, job_id: int, attempt: int, stream: int, offset: int) -> None:
        a = self._attempts.get((job_id, attempt))
        if a is None or stream not in (STDOUT, STDERR):
            return
        freed, freed_memory = a.log(stream).ack(offset)
        self._unacked_bytes -= freed
        self._memory_bytes -= freed_memory

    def output_window(self, job_id: int, attempt: int, limit: int) -> None:
        a = self._attempts.get((job_id, attempt))
        if a is not None:
            a.read_limit = limit

    def read_limited(self, job_id: int, attempt: int) -> bool:
        """Whether the attempt has read all the output its window allows."""
        a = self._attempts.get((job_id, attempt))
        return a is not None and 0 < a.read_limit <= a.stdout.produced + a.stderr.produced

    def finished_ack(self, job_id: int, attempt: int) -> None:
        a = self._attempts.get((job_id, attempt))
        if a is None or a.phase is not Phase.FINISHED:
            return
        # The server acknowledges a finish only after storing all output before it.
        self._unacked_bytes -= a.stdout.unacked_bytes + a.stderr.unacked_bytes
        self._memory_bytes -= a.stdout.clear() + a.stderr.clear()
        del self._attempts[a.key]
        self._unsent.pop(a.key, None)
        self._finish_pending.discard(a.key)

    # -- stimuli from the processes --------------------------------------

    def started(self, job_id: int, attempt: int, pid: int) -> wpb.Started | None:
        """The process runs: its Started, or None for an unknown attempt. A
        promoted attempt's Started is not for sending now: next_message sends
        it once no Finished before it is unsent, so the server never sees a
        slot taken before it sees it freed."""
        a = self._attempts.get((job_id, attempt))
        if a is None or a.phase is not Phase.STARTING:
            return None
        a.phase = Phase.RUNNING
        a.pid = pid
        if a.promoted or self._finish_pending:
            a.promoted = True
            a.start_after = frozenset(self._finish_pending)
            self._starts[a.key] = None
        return wpb.Started(job_id=job_id, attempt=attempt, pid=pid)

    def exited(self, job_id: int, attempt: int) -> bool:
        """The process ended (its output may still be draining): its slot,
        cpus and RAM are free now, so a held attempt can start without
        waiting for the bookkeeping of this one. Whether it held a slot."""
        key = (job_id, attempt)
        a = self._attempts.get(key)
        if a is None or not a.holds_slot:
            return False
        a.exited = True
        self._release(key)
        self._finish_pending.add(key)
        return True

    def output(self, job_id: int, attempt: int, stream: int, data: bytes) -> bool:
        """A chunk of the job's output; whether there is now something to send."""
        key = (job_id, attempt)
        a = self._attempts.get(key)
        if a is None or not a.active or not data:
            return False
        spool = None
        if self._spool is not None and self._memory_bytes + len(data) > self.memory_limit:
            opener = self._spool

            def spool(offset: int) -> SpoolFile:
                return opener(key, stream, offset)

        self._memory_bytes += a.log(stream).append(data, spool)
        self._unacked_bytes += len(data)
        self._unsent[key] = None
        return True

    def finish(self, job_id: int, attempt: int, result: wpb.Finished) -> wpb.Finished | None:
        """The process ended (or never started); result carries what the runner measured."""
        a = self._attempts.get((job_id, attempt))
        if a is None or not a.active:
            return None
        finished = wpb.Finished()
        finished.CopyFrom(result)
        finished.job_id = job_id
        finished.attempt = attempt
        finished.stdout_bytes = a.stdout.produced
        finished.stderr_bytes = a.stderr.produced
        a.stdin.discard_rest()
        self._waiting.pop(a.key, None)
        self._release(a.key)
        a.phase = Phase.FINISHED
        a.finished = finished
        a.finished_sent = False
        self._finish_pending.add(a.key)
        self._unsent[a.key] = None
        return finished

    # -- after a reconnect -----------------------------------------------

    def reports(self) -> list[wpb.AttemptReport]:
        """What Register.attempts says: everything still held."""
        out = []
        for a in self._attempts.values():
            report = wpb.AttemptReport(
                job_id=a.job_id,
                attempt=a.attempt,
                stdout_offset=a.stdout.produced,
                stderr_offset=a.stderr.produced,
            )
            if a.finished is not None:
                report.finished.CopyFrom(a.finished)
            report.waiting = a.phase is Phase.WAITING
            out.append(report)
        return out

    def rewind(self) -> None:
        """A new stream: every unacknowledged Output, then each attempt's
        Finished, are to be sent again (see next_message)."""
        for a in self._attempts.values():
            a.stdout.rewind()
            a.stderr.rewind()
            a.finished_sent = False
            if a.finished is not None:
                self._finish_pending.add(a.key)
            self._unsent[a.key] = None

    def finishes_unsent(self) -> bool:
        """Whether some attempt's Finished has not gone out on the current
        stream, or is still to come from a process that exited."""
        return bool(self._finish_pending)

    def next_message(self, limit: int = SEND_CHUNK_BYTES) -> wpb.Output | wpb.Finished | wpb.Started | None:
        """What to send next: output merged up to limit bytes, taking turns
        between attempts and streams; an attempt's Finished after all its
        output; a promoted attempt's Started after every Finished."""
        item = self.next_parts(limit)
        if isinstance(item, tuple):
            head, data = item
            head.data = data
            return head
        return item

    def next_parts(
        self, limit: int = SEND_CHUNK_BYTES
    ) -> tuple[wpb.Output, bytes] | wpb.Finished | wpb.Started | None:
        """next_message with an Output's data apart from the rest of it, to be
        encoded without copies (kueue.wire)."""
        for key in list(self._starts):  # a few at most: those started since the last write
            a = self._attempts.get(key)
            if a is None:
                del self._starts[key]
            elif not (a.start_after & self._finish_pending):
                del self._starts[key]
                if a.finished is not None and not a.finished_sent and self._nothing_unsent(a):
                    # Over before its Started could go: the Finished says
                    # both (the server takes a Finished of an attempt it
                    # has not seen start as its start and end), one
                    # message and one state change fewer for a short job.
                    return self._finished_message(a)
                return wpb.Started(job_id=a.job_id, attempt=a.attempt, pid=a.pid)
        for key in list(self._unsent):
            a = self._attempts.get(key)
            if a is None:
                del self._unsent[key]
                continue
            if key in self._starts:
                continue  # nothing of it before its Started
            first = a.next_stream
            for stream in (first, STDERR if first == STDOUT else STDOUT):
                chunk = a.log(stream).take(limit)
                if chunk is not None:
                    a.next_stream = STDERR if stream == STDOUT else STDOUT
                    # To the back of the line: others get their turn.
                    del self._unsent[key]
                    self._unsent[key] = None
                    offset, data = chunk
                    return wpb.Output(job_id=a.job_id, attempt=a.attempt, stream=stream, offset=offset), data
            del self._unsent[key]
            if a.finished is not None and not a.finished_sent:
                return self._finished_message(a)
        return None

    @staticmethod
    def _nothing_unsent(a: Attempt) -> bool:
        return not a.stdout.unsent_bytes and not a.stderr.unsent_bytes

    def _finished_message(self, a: Attempt) -> wpb.Finished:
        assert a.finished is not None
        a.finished_sent = True
        self._finish_pending.discard(a.key)
        self._unsent.pop(a.key, None)
        return a.finished

    def stdin_positions(self) -> list[wpb.StdinAck]:
        """A StdinAck per attempt with a stdin pipe: acks sent on a broken stream may be lost."""
        out = []
        for a in self._attempts.values():
            if a.stdin_pipe:
                a.stdin.acked = a.stdin.written
                a.stdin.ack_owed = False
                out.append(wpb.StdinAck(job_id=a.job_id, attempt=a.attempt, offset=a.stdin.written))
        return out
