"""The scheduling core: a plain object without I/O.

Events come in as method calls (job submitted, worker connected, heartbeat,
assignment reply, attempt started/finished, worker gone, timer tick); effects
go out through `take_effects()` (assign attempt X to worker W, kill attempt Y,
persist and announce these jobs, forget those). The gRPC layer translates
protobuf to events and carries out effects; the core is only touched from the
event loop, so it needs no locks.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kueue.v1 import common_pb2
from kueue_server.model import (
    ACTIVE,
    FINAL,
    MAX_PAST_ATTEMPTS,
    Amount,
    JobRecord,
    Machine,
    Outcome,
    PastAttempt,
    Shape,
    State,
    WorkerRecord,
)
from kueue_server.pending_queue import PendingQueue

# The kinds of StartFailure a job records: every one this server knows.
START_FAILURES = frozenset(common_pb2.StartFailure.values()) - {common_pb2.START_FAILURE_UNSPECIFIED}

# A worker that rejected a job for good (directory missing) is not offered it
# again for this long; a transient reject (busy right now) for much less.
REJECT_COOLDOWN = 600.0
TRANSIENT_REJECT_COOLDOWN = 5.0

# recent() with a state filter first walks this many jobs per row wanted,
# newest first (cheap when matches are dense there, as pending jobs are),
# then falls back to the per-state index (cheap when matches are few).
RECENT_SCAN_FACTOR = 8


class SchedulerError(Exception):
    """A request the core refuses; `code` names the gRPC status to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Limits:
    global_max_parallel_jobs: int = 100
    worker_timeout: float = 300.0
    offer_timeout: float = 60.0
    cleanup_after: float = 2880 * 60.0
    global_resources: dict[str, int] = field(default_factory=dict)


@dataclass
class Assignment:
    worker_id: str
    session: int
    job: JobRecord


@dataclass
class KillOrder:
    worker_id: str
    job_id: int
    attempt: int


# The same fields: which queued attempt to take back from which worker.
RetractOrder = KillOrder


@dataclass(slots=True)
class JobChange:
    """A job changed state; worker_name is where the attempt was (or is) placed."""

    job: JobRecord
    old: State
    new: State
    attempt: int
    worker_name: str


@dataclass(slots=True)
class WorkerChange:
    """Something happened to a worker that the core noticed ("lost", "draining")."""

    worker_id: str
    name: str
    what: str
    detail: str = ""


@dataclass
class Effects:
    assign: list[Assignment] = field(default_factory=list)
    kill: list[KillOrder] = field(default_factory=list)
    retract: list[RetractOrder] = field(default_factory=list)
    # Jobs whose record changed: persist, then notify watchers.
    dirty: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)
    # Workers whose record changed (connected, lost): persist identity.
    workers: set[str] = field(default_factory=set)
    # Workers to disconnect (timed out while their stream still looks open).
    drop_workers: set[str] = field(default_factory=set)
    # What happened, in order: logged and counted once committed.
    job_changes: list[JobChange] = field(default_factory=list)
    worker_changes: list[WorkerChange] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.assign
            or self.kill
            or self.retract
            or self.dirty
            or self.removed
            or self.workers
            or self.drop_workers
            or self.job_changes
            or self.worker_changes
        )


class Scheduler:
    def __init__(self, limits: Limits, next_job_id: int = 1) -> None:
        self.limits = limits
        self.jobs: dict[int, JobRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        # Processes of split workers, by Register.machine.
        self.machines: dict[str, Machine] = {}
        self.next_job_id = next_job_id
        self.queue = PendingQueue(self._is_pending)
        self.global_used: Counter[str] = Counter()
        self.counts: Counter[State] = Counter()
        # Ids per state: a filtered listing looks at the matching jobs only.
        self.by_state: dict[State, dict[int, None]] = {state: {} for state in State}
        self._run_time_sum = 0.0
        self._run_time_n = 0
        # Offered jobs awaiting the worker's reply: (deadline, job id, attempt).
        self._offer_deadlines: list[tuple[float, int, int]] = []
        # Jobs offered beyond their worker's free room and not started yet.
        self.prefetched_total = 0
        # Final jobs in order of finishing, for cleanup without scanning.
        self._finished_order: deque[tuple[float, int]] = deque()
        self._effects = Effects()

    # ----------------------------------------------------------------- helpers

    def _is_pending(self, job_id: int) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.state is State.PENDING

    def take_effects(self) -> Effects:
        effects, self._effects = self._effects, Effects()
        return effects

    def put_back(self, effects: Effects) -> None:
        """Effects whose commit failed: carried out after the retried commit."""
        mine = self._effects
        mine.assign[:0] = effects.assign
        mine.kill[:0] = effects.kill
        mine.retract[:0] = effects.retract
        mine.dirty |= effects.dirty
        mine.removed |= effects.removed
        mine.workers |= effects.workers
        mine.drop_workers |= effects.drop_workers
        mine.job_changes[:0] = effects.job_changes
        mine.worker_changes[:0] = effects.worker_changes

    def _set_state(self, job: JobRecord, state: State) -> None:
        self.counts[job.state] -= 1
        self.counts[state] += 1
        del self.by_state[job.state][job.id]
        self.by_state[state][job.id] = None
        self._effects.job_changes.append(JobChange(job, job.state, state, job.attempt, job.worker_name))
        job.state = state
        self._effects.dirty.add(job.id)

    def _note_draining(self, worker: WorkerRecord, draining: bool) -> None:
        if draining and not worker.draining_itself:
            self._effects.worker_changes.append(WorkerChange(worker.id, worker.name, "draining"))
        worker.draining_itself = draining
        if draining:
            # The worker hands them back itself; this covers an older one.
            self._retract_all(worker)

    def _account_final(self, job: JobRecord) -> None:
        if job.state in (State.SUCCEEDED, State.FAILED) and job.run_time > 0:
            self._run_time_sum += job.run_time
            self._run_time_n += 1
        self._finished_order.append((job.finished_at or 0.0, job.id))

    def _forget_final(self, job: JobRecord) -> None:
        if job.state in (State.SUCCEEDED, State.FAILED) and job.run_time > 0:
            self._run_time_sum -= job.run_time
            self._run_time_n -= 1

    def _reserve(self, worker: WorkerRecord | None, job: JobRecord, sign: int) -> None:
        """Place the job on the worker (sign +1) or take it off (-1); a
        prefetched job counts there but holds no resources."""
        if worker is not None:
            if sign > 0:
                worker.jobs.add(job.id)
            else:
                worker.jobs.discard(job.id)
            if job.prefetched:
                worker.prefetched += sign
                worker.prefetched_amount.add(job.shape, sign)
                self.prefetched_total += sign
                if sign > 0:
                    worker.held[job.id] = None
                else:
                    worker.held.pop(job.id, None)
            else:
                worker.reserved.add(job.shape, sign)
        if not job.prefetched:
            for name, n in job.shape.global_:
                self.global_used[name] += sign * n

    def _release(self, job: JobRecord) -> None:
        self._reserve(self.workers.get(job.worker_id), job, -1)
        job.prefetched = job.waiting = job.retracting = False

    def _take_slot(self, job: JobRecord) -> None:
        """A prefetched job started: from now on it holds its resources."""
        job.waiting = job.retracting = False
        if not job.prefetched:
            return
        job.prefetched = False
        worker = self.workers.get(job.worker_id)
        if worker is not None:
            worker.prefetched -= 1
            worker.prefetched_amount.add(job.shape, -1)
            self.prefetched_total -= 1
            worker.held.pop(job.id, None)
            worker.reserved.add(job.shape)
        for name, n in job.shape.global_:
            self.global_used[name] += n

    # ------------------------------------------------------------------ loading

    def load(self, jobs: Iterable[JobRecord], workers: Iterable[WorkerRecord], now: float) -> None:
        """Take over the state of a previous run. Jobs that were active stay
        with their worker, which is given worker_timeout to come back."""
        for worker in workers:
            worker.connected = False
            worker.last_seen = now
            self.workers[worker.id] = worker
            if worker.machine is not None:
                self._join_machine(worker, worker.machine.key, None)
        for job in sorted(jobs, key=lambda j: j.id):
            self.jobs[job.id] = job
            self.counts[job.state] += 1
            self.by_state[job.state][job.id] = None
            self.next_job_id = max(self.next_job_id, job.id + 1)
            if job.state is State.PENDING:
                self.queue.push(job.shape, job.id)
            elif job.state in ACTIVE:
                worker = self.workers.get(job.worker_id)
                if worker is None:
                    worker = self.workers[job.worker_id] = WorkerRecord(
                        id=job.worker_id, name=job.worker_name, last_seen=now
                    )
                self._reserve(worker, job, +1)
                if job.state is State.OFFERED:
                    heapq.heappush(
                        self._offer_deadlines, (now + self.limits.offer_timeout, job.id, job.attempt)
                    )
            else:
                self._account_final(job)
        self._finished_order = deque(sorted(self._finished_order))

    # -------------------------------------------------------------- submission

    def validate(self, spec: common_pb2.JobSpec) -> list[str]:
        """Refuse what can never be a job; return warnings for what may never run."""
        if not spec.command or not spec.command[0]:
            raise SchedulerError("INVALID_ARGUMENT", "empty command: give the program to run")
        if not spec.cwd.startswith("/"):
            cwd = spec.cwd if len(spec.cwd) <= 200 else spec.cwd[:200] + "..."
            raise SchedulerError("INVALID_ARGUMENT", f"working directory must be absolute, got {cwd!r}")
        res = spec.resources
        if res.slots < 1:
            raise SchedulerError("INVALID_ARGUMENT", "a job needs at least 1 slot")
        unknown = sorted(set(res.global_resources) - set(self.limits.global_resources))
        if unknown:
            known = ", ".join(sorted(self.limits.global_resources)) or "none are configured"
            raise SchedulerError(
                "INVALID_ARGUMENT", f"unknown global resource {', '.join(unknown)} (known: {known})"
            )
        shape = Shape.of(res)
        warnings = []
        for name, n in shape.global_:
            total = self.limits.global_resources[name]
            if n > total:
                warnings.append(
                    f"the job asks for {n} {name} but the cluster has only {total}; it will not run"
                )
        connected = [w for w in self.workers.values() if w.connected and not w.draining]
        if not connected:
            warnings.append("no worker is connected and taking jobs; the job waits until one is")
        elif not any(w.could_fit(shape) for w in connected):
            biggest = max(connected, key=lambda w: (w.reach().cpus, w.reach().ram_mb))
            reach = biggest.reach()
            warnings.append(
                f"no connected worker could ever fit {shape.describe()} (largest: {biggest.name} with "
                f"{reach.cpus} cpus, {reach.ram_mb} MB RAM, {biggest.capacity.slots} slots); "
                "it waits for a bigger worker"
            )
        return warnings

    def submit(
        self, spec_id: int, spec: common_pb2.JobSpec, extra_envs: list[dict[str, str] | None], now: float
    ) -> list[JobRecord]:
        """Queue one job per entry of extra_envs (validate() first)."""
        shape = Shape.of(spec.resources)
        first = self.next_job_id
        created = [
            JobRecord(
                id=first + i, spec_id=spec_id, spec=spec, extra_env=extra or None, shape=shape, issued_at=now
            )
            for i, extra in enumerate(extra_envs)
        ]
        ids = list(range(first, first + len(created)))
        self.next_job_id = first + len(created)
        # All at once: an array may bring thousands, before its first may start.
        self.jobs.update(zip(ids, created, strict=True))
        self.counts[State.PENDING] += len(created)
        self.by_state[State.PENDING].update(dict.fromkeys(ids))
        self.queue.push_new(shape, ids)
        self._effects.dirty.update(ids)
        # From PENDING to PENDING at attempt 0: submitted.
        self._effects.job_changes.extend(
            JobChange(job, State.PENDING, State.PENDING, 0, "") for job in created
        )
        return created

    # ----------------------------------------------------------------- workers

    def connect_worker(
        self,
        worker_id: str,
        name: str,
        capacity: Amount,
        system: common_pb2.SystemInfo,
        address: str,
        running: Iterable[tuple[int, int]],
        now: float,
        finished: Iterable[tuple[int, int]] = (),
        draining: bool = False,
        waiting: Iterable[tuple[int, int]] = (),
        prefetch: int = 0,
        killed: dict[tuple[int, int], float] | None = None,
        machine: str = "",
        machine_capacity: Amount | None = None,
    ) -> WorkerRecord:
        """A worker (re)registered, reporting the attempts it still runs and
        those it finished without an acknowledgement (recorded by finished()
        right after).

        Attempts the server placed on it that it reports neither way (nor as
        waiting for a slot) are given up at once; running attempts it reports
        that are not current are killed. `killed` maps attempts whose process
        a crashed previous run left and the restarted worker killed to when
        they started (0: unknown): given up too, with that start recorded.
        `machine` names the machine a process of a split worker shares with
        its siblings (empty: a whole worker), with its capacity.
        """
        worker = self.workers.get(worker_id)
        if worker is None:
            worker = self.workers[worker_id] = WorkerRecord(id=worker_id, name=name)
        worker.name, worker.capacity, worker.system, worker.address = name, capacity, system, address
        worker.connected, worker.connected_at, worker.last_seen = True, now, now
        worker.draining_itself = False
        self._note_draining(worker, draining)
        worker.external = Amount()
        worker.session += 1
        worker.prefetch = prefetch
        if machine and machine_capacity is not None:
            # Never less than the process's own share, whatever the message says.
            machine_capacity = Amount(
                0, max(machine_capacity.cpus, capacity.cpus), max(machine_capacity.ram_mb, capacity.ram_mb)
            )
        self._join_machine(worker, machine, machine_capacity)
        running = set(running)
        waiting = set(waiting)
        known = running | set(finished) | waiting
        for job_id in list(worker.jobs):
            job = self.jobs[job_id]
            if (job_id, job.attempt) in running:
                if job.state is State.OFFERED:
                    self._mark_started(job, now)
            elif (job_id, job.attempt) in waiting:
                if job.state is State.OFFERED:
                    job.waiting = True
            elif killed and (job_id, job.attempt) in killed:
                started = killed[(job_id, job.attempt)]
                if job.started_at is None:
                    job.started_at = started if 0 < started <= now else now
                why = f"worker {name} crashed while it ran (ended when the worker restarted)"
                self._requeue(job, why, now, Outcome.WORKER_LOST)
            elif (job_id, job.attempt) not in known:
                self._requeue(
                    job, f"worker {name} restarted without attempt {job.attempt}", now, Outcome.WORKER_LOST
                )
        for job_id, attempt in running | waiting:
            if not self.is_current(worker_id, job_id, attempt):
                self._effects.kill.append(KillOrder(worker_id, job_id, attempt))
        self._effects.workers.add(worker_id)
        return worker

    def _join_machine(self, worker: WorkerRecord, key: str, capacity: Amount | None) -> None:
        """Make the worker a process of machine `key` (empty: of none)."""
        old = worker.machine
        if old is not None and old.key != key:
            old.members.pop(worker.id, None)
            if not old.members and self.machines.get(old.key) is old:
                del self.machines[old.key]
        if not key:
            worker.machine = None
            return
        machine = self.machines.get(key)
        if machine is None:
            machine = self.machines[key] = Machine(key)
        if capacity is not None:
            machine.capacity = Amount(0, capacity.cpus, capacity.ram_mb)
        machine.members[worker.id] = worker
        worker.machine = machine

    def heartbeat(
        self,
        worker_id: str,
        system: common_pb2.SystemInfo,
        external: Amount,
        now: float,
        draining: bool = False,
    ) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or not worker.connected:
            return
        worker.system = system
        worker.external = external
        worker.last_seen = now
        self._note_draining(worker, draining)

    def drain(self, worker_id: str, drain: bool) -> None:
        """An operator stops (or resumes) new offers to a worker."""
        worker = self.workers[worker_id]
        worker.drained_by_operator = drain
        self._effects.workers.add(worker_id)  # kept across restarts
        if drain:
            self._retract_all(worker)

    def _retract_all(self, worker: WorkerRecord) -> None:
        """Take back what the worker holds for a free slot: it takes no new work."""
        for job_id in worker.jobs:
            job = self.jobs[job_id]
            if (job.prefetched or job.waiting) and not job.retracting and job.state is State.OFFERED:
                job.retracting = True
                self._effects.retract.append(RetractOrder(worker.id, job.id, job.attempt))

    def disconnect_worker(self, worker_id: str, session: int, now: float) -> None:
        """The stream closed. Its jobs stay: it may come back within the timeout."""
        worker = self.workers.get(worker_id)
        if worker is not None and worker.session == session and worker.connected:
            worker.connected = False
            worker.last_seen = now
            self._effects.workers.add(worker_id)

    def worker_leaving(self, worker_id: str, now: float) -> None:
        """The worker shut down cleanly after stopping its attempts: requeue now."""
        worker = self.workers.get(worker_id)
        if worker is None:
            return
        for job_id in list(worker.jobs):
            self._requeue(self.jobs[job_id], f"worker {worker.name} shut down", now, Outcome.WORKER_STOPPED)
        worker.connected = False
        self._effects.workers.add(worker_id)

    def _lose_worker(self, worker: WorkerRecord, now: float) -> None:
        silent = now - worker.last_seen
        self._effects.worker_changes.append(
            WorkerChange(worker.id, worker.name, "lost", f"silent for {silent:.0f} s")
        )
        for job_id in list(worker.jobs):
            why = f"worker {worker.name} lost (silent for {silent:.0f} s)"
            self._requeue(self.jobs[job_id], why, now, Outcome.WORKER_LOST)
        if worker.connected:
            self._effects.drop_workers.add(worker.id)
        worker.connected = False
        self._effects.workers.add(worker.id)

    # ------------------------------------------------------------- attempt life

    def is_current(self, worker_id: str, job_id: int, attempt: int) -> bool:
        job = self.jobs.get(job_id)
        return (
            job is not None and job.attempt == attempt and job.worker_id == worker_id and job.state in ACTIVE
        )

    def assignment_reply(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        accepted: bool,
        reason: str,
        transient: bool,
        now: float,
        queued: bool = False,
        handed_back: bool = False,
    ) -> None:
        if not self.is_current(worker_id, job_id, attempt):
            return
        job = self.jobs[job_id]
        if accepted:
            if job.state is State.OFFERED:
                if queued:
                    job.waiting = True
                else:
                    self._mark_started(job, now)
            return
        worker = self.workers[worker_id]
        if handed_back:
            self._requeue(
                job, "", now, Outcome.HANDED_BACK, f"handed back by {worker.name} for an idle worker"
            )
            return
        cooldown = TRANSIENT_REJECT_COOLDOWN if transient else REJECT_COOLDOWN
        if job.rejected_by is None:
            job.rejected_by = {}
        job.rejected_by[worker_id] = now + cooldown
        self._requeue(job, "", now, Outcome.REJECTED, reason)
        job.comment = self._rejection_comment(job, worker, reason, now)

    def _rejection_comment(self, job: JobRecord, worker: WorkerRecord, reason: str, now: float) -> str:
        connected = [w for w in self.workers.values() if w.connected]
        rejected = job.rejected_by or {}
        if connected and all(rejected.get(w.id, 0) > now for w in connected):
            return f"rejected by every connected worker; last: {worker.name}: {reason}"
        return f"rejected by {worker.name}: {reason}"

    def started(self, worker_id: str, job_id: int, attempt: int, now: float) -> None:
        if self.is_current(worker_id, job_id, attempt):
            job = self.jobs[job_id]
            if job.state is State.OFFERED:
                self._mark_started(job, now)

    def output(
        self, worker_id: str, job_id: int, attempt: int, stream: int, offset: int, size: int
    ) -> tuple[int, int] | None:
        """Output of an attempt arrived: (bytes to skip as already stored, new end
        offset), or None for a stale attempt. Repeats after a reconnect are cut
        off by offset, so the stored stream has no repeats."""
        if not self.is_current(worker_id, job_id, attempt):
            return None
        job = self.jobs[job_id]
        have = job.stdout_bytes if stream == 1 else job.stderr_bytes
        end = offset + size
        if end <= have:
            return size, have
        if stream == 1:
            job.stdout_bytes = end
        else:
            job.stderr_bytes = end
        self._effects.dirty.add(job_id)
        return max(0, have - offset), end

    def touch(self, worker_id: str, now: float) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and worker.connected:
            worker.last_seen = now

    def _mark_started(self, job: JobRecord, now: float) -> None:
        self._take_slot(job)
        job.started_at = now
        job.comment = ""
        self._set_state(job, State.RUNNING)

    def finished(
        self,
        worker_id: str,
        job_id: int,
        attempt: int,
        exit_code: int | None,
        signal: int,
        run_time: float,
        peak_memory: int,
        error: str,
        now: float,
        start_failure: int = 0,
    ) -> bool:
        """Record the end of the current attempt. False for a stale attempt
        (ignored: a job is recorded as finished once, by its current attempt).
        With error (it did not start), start_failure says what kind of
        failure it was (common_pb2.StartFailure)."""
        if not self.is_current(worker_id, job_id, attempt):
            return False
        job = self.jobs[job_id]
        self._release(job)
        job.exit_code, job.signal, job.run_time, job.peak_memory = exit_code, signal, run_time, peak_memory
        job.finished_at = now
        if job.started_at is None:
            # Its start was not reported (it ended before its Started went
            # out, and the worker said both in this Finished; or it never
            # started): it began run_time ago, and not before it was offered.
            job.started_at = max(now - run_time, job.offered_at or now) if run_time > 0 else now
        if job.kill_requested:
            state = State.CANCELED
            job.comment = "killed on request"
        elif error:
            state = State.FAILED
            job.comment = f"failed to start: {error}"
            # Unsaid (a worker before the field) or unknown (a newer one): 0,
            # and clients read the comment as they did before.
            job.start_failure = start_failure if start_failure in START_FAILURES else 0
        elif exit_code == 0:
            state = State.SUCCEEDED
        else:
            state = State.FAILED
        self._set_state(job, state)
        self._account_final(job)
        return True

    def _requeue(
        self, job: JobRecord, why: str, now: float, outcome: Outcome, reason: str | None = None
    ) -> None:
        """The current attempt ends without ending the job: queue it again
        (`why` goes into the comment, `reason` (default `why`) into the
        attempt's history), or cancel it if a kill was asked for."""
        if job.state not in ACTIVE:
            return
        self._release(job)
        if job.kill_requested:
            job.finished_at = now
            job.comment = f"canceled; {why}" if why else "canceled"
            self._set_state(job, State.CANCELED)
            self._account_final(job)
            return
        past = PastAttempt(
            job.attempt,
            job.worker_id,
            job.worker_name,
            job.offered_at,
            job.started_at,
            now,
            outcome,
            why if reason is None else reason,
        )
        if job.past_attempts is None:
            job.past_attempts = [past]
        else:
            job.past_attempts.append(past)
            del job.past_attempts[:-MAX_PAST_ATTEMPTS]
        if why:
            job.comment = f"{why}; queued again"
        job.offered_at = job.started_at = None
        self._set_state(job, State.PENDING)
        self.queue.push(job.shape, job.id)

    # ------------------------------------------------------------- client acts

    def cancel(self, job_id: int, kill: bool, now: float) -> JobRecord:
        job = self.jobs.get(job_id)
        if job is None:
            raise SchedulerError("NOT_FOUND", f"no job {job_id}")
        if job.state in FINAL:
            raise SchedulerError(
                "FAILED_PRECONDITION", f"job {job_id} has already ended ({job.state.name.lower()})"
            )
        if job.state is State.RUNNING and not kill:
            raise SchedulerError(
                "FAILED_PRECONDITION", f"job {job_id} is running on {job.worker_name}; use --kill to stop it"
            )
        if job.state is State.PENDING:
            job.finished_at = now
            self._set_state(job, State.CANCELED)
            self._account_final(job)
        elif job.state is State.OFFERED:
            self._effects.kill.append(KillOrder(job.worker_id, job.id, job.attempt))
            self._release(job)
            job.finished_at = now
            self._set_state(job, State.CANCELED)
            self._account_final(job)
        else:
            job.kill_requested = True
            self._effects.dirty.add(job.id)
            self._effects.kill.append(KillOrder(job.worker_id, job.id, job.attempt))
        return job

    def retract(self, job_ids: Iterable[int]) -> None:
        """Undo a submission whose commit failed: the client was told it
        failed, so the jobs must not run or appear later."""
        for job_id in job_ids:
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if job.state in ACTIVE:
                self._effects.kill.append(KillOrder(job.worker_id, job.id, job.attempt))
                self._release(job)
            self._remove(job_id)

    def clean(self, include_failed: bool) -> list[int]:
        states = {State.SUCCEEDED, State.CANCELED} | ({State.FAILED} if include_failed else set())
        removed = [job.id for job in self.jobs.values() if job.state in states]
        for job_id in removed:
            self._remove(job_id)
        return removed

    def _remove(self, job_id: int) -> None:
        job = self.jobs.pop(job_id)
        self.counts[job.state] -= 1
        del self.by_state[job.state][job_id]
        self._forget_final(job)
        self._effects.removed.add(job_id)
        self._effects.dirty.discard(job_id)

    # -------------------------------------------------------------------- time

    def tick(self, now: float) -> None:
        """Timeouts: silent workers, unanswered offers, old finished jobs."""
        for worker in list(self.workers.values()):
            if now - worker.last_seen > self.limits.worker_timeout and (worker.connected or worker.jobs):
                self._lose_worker(worker, now)
        deadlines = self._offer_deadlines
        while deadlines and deadlines[0][0] <= now:
            _, job_id, attempt = heapq.heappop(deadlines)
            job = self.jobs.get(job_id)
            if job is not None and job.attempt == attempt and job.state is State.OFFERED and not job.waiting:
                self._effects.kill.append(KillOrder(job.worker_id, job.id, job.attempt))
                self._requeue(job, f"offer to {job.worker_name} not answered", now, Outcome.UNANSWERED)
        horizon = now - self.limits.cleanup_after
        while self._finished_order and self._finished_order[0][0] < horizon:
            _, job_id = self._finished_order.popleft()
            job = self.jobs.get(job_id)
            if job is not None and job.state in FINAL and (job.finished_at or 0.0) < horizon:
                self._remove(job_id)

    # ---------------------------------------------------------------- dispatch

    def dispatch(self, now: float) -> None:
        """Offer pending jobs to workers with room, less busy workers first;
        then to workers that hold jobs for their next free slot; then let
        idle workers take back what others hold."""
        if self.counts[State.PENDING] == 0:
            self._steal()
            return
        active = self.counts[State.OFFERED] + self.counts[State.RUNNING]
        heap = [
            (w.busy(), w.id)
            for w in self.workers.values()
            if w.connected and not w.draining and self._room(w).slots > 0
        ]
        heapq.heapify(heap)
        while heap and active < self.limits.global_max_parallel_jobs:
            _, worker_id = heapq.heappop(heap)
            worker = self.workers[worker_id]
            free = self._room(worker)
            job_id = self._pick(
                worker, lambda shape, free=free: free.fits(shape) and self._globals_fit(shape), now
            )
            if job_id is None:
                continue
            self._assign(self.jobs[job_id], worker, now)
            active += 1
            if self._room(worker).slots > 0:
                heapq.heappush(heap, (worker.busy(), worker_id))
        if self.counts[State.PENDING] and active < self.limits.global_max_parallel_jobs:
            self._prefetch(now, active)
        self._steal()

    def _prefetch(self, now: float, active: int) -> None:
        """Offer what no worker has room for now to workers that hold jobs for
        their next free slot, fewest held first: they start them without a
        round trip. Jobs using global resources wait here, where their
        resources are counted."""
        heap = [
            (w.prefetched, w.id)
            for w in self.workers.values()
            if w.connected and not w.draining and w.prefetched < w.prefetch
        ]
        heapq.heapify(heap)
        while heap and active < self.limits.global_max_parallel_jobs:
            _, worker_id = heapq.heappop(heap)
            worker = self.workers[worker_id]
            job_id = self._pick(worker, self._holdable(worker), now)
            if job_id is None:
                continue
            self._assign(self.jobs[job_id], worker, now, prefetch=True)
            active += 1
            if worker.prefetched < worker.prefetch:
                heapq.heappush(heap, (worker.prefetched, worker_id))

    def _steal(self) -> None:
        """Work stealing: a worker with room and nothing held for it takes
        back jobs that busy workers hold for their next free slot."""
        if not self.prefetched_total:
            return
        idle = [
            w
            for w in self.workers.values()
            if w.connected and not w.draining and w.prefetched == 0 and w.free().slots > 0
        ]
        if not idle:
            return
        held = [
            job
            for w in self.workers.values()
            if w.prefetched
            for job in (self.jobs[j] for j in w.held)
            if not job.retracting and job.state is State.OFFERED
        ]
        if not held:
            return
        for worker in idle:
            room = worker.free()
            for job in held:
                if job.retracting or job.worker_id == worker.id or not room.fits(job.shape):
                    continue
                job.retracting = True
                self._effects.retract.append(RetractOrder(job.worker_id, job.id, job.attempt))
                room.add(job.shape, -1)
                if room.slots <= 0:
                    break

    def _room(self, worker: WorkerRecord) -> Amount:
        """Free resources not spoken for: jobs the worker holds for its next
        free slot take those first, without asking."""
        if worker.machine is not None:
            cpus, ram_mb = worker.machine.free(claims=True)
            slots = worker.capacity.slots - worker.reserved.slots - worker.prefetched_amount.slots
            return Amount(max(0, slots), cpus, ram_mb)
        free = worker.free()
        free.add(worker.prefetched_amount, -1)
        return free

    def _holdable(self, worker: WorkerRecord) -> Callable[[Shape], bool]:
        """Which jobs the worker may be offered beyond its free room, to hold
        for its next free slot: none using global resources (counted here
        only once started), none bigger than the worker. A process of a
        machine starts them within its share only, and takes no more than
        its siblings' claims leave of the machine."""
        capacity = worker.capacity
        machine = worker.machine
        if machine is None:
            return lambda shape: not shape.global_ and capacity.fits(shape)
        cpus_left, ram_left = machine.capacity.cpus, machine.capacity.ram_mb
        for member in machine.members.values():
            if member is not worker:
                cpus, ram_mb = member.claim()
                cpus_left -= cpus
                ram_left -= ram_mb
        res, held = worker.reserved, worker.prefetched_amount

        def fits(shape: Shape) -> bool:
            return (
                not shape.global_
                and capacity.fits(shape)
                and max(res.cpus, min(capacity.cpus, res.cpus + held.cpus + shape.cpus)) <= cpus_left
                and max(res.ram_mb, min(capacity.ram_mb, res.ram_mb + held.ram_mb + shape.ram_mb)) <= ram_left
            )

        return fits

    def _pick(self, worker: WorkerRecord, fits: Callable[[Shape], bool], now: float) -> int | None:
        """The oldest pending job that fits, taken from the queue.

        For a process of a machine, the oldest job the machine could ever run
        (and whose global resources are free): if that does not fit now,
        nothing newer is taken either. A whole worker gets the same order from
        the jobs it holds; without it a job asking for most of the machine
        would wait behind every smaller one that can start sooner."""
        eligible = functools.partial(self._eligible, worker_id=worker.id, now=now)
        machine = worker.machine
        if machine is None:
            return self.queue.pick(fits, eligible)
        found = self.queue.peek(lambda shape: worker.could_fit(shape) and self._globals_fit(shape), eligible)
        if found is None or not fits(found[1]):
            return None
        self.queue.take(*found)
        return found[0]

    def _globals_fit(self, shape: Shape) -> bool:
        totals = self.limits.global_resources
        return all(self.global_used[name] + n <= totals.get(name, 0) for name, n in shape.global_)

    def _eligible(self, job_id: int, worker_id: str, now: float) -> bool:
        rejected = self.jobs[job_id].rejected_by
        return rejected is None or rejected.get(worker_id, 0.0) <= now

    def _assign(self, job: JobRecord, worker: WorkerRecord, now: float, prefetch: bool = False) -> None:
        job.attempt += 1
        job.prefetched = prefetch
        job.worker_id, job.worker_name = worker.id, worker.name
        job.offered_at = now
        job.exit_code, job.signal, job.run_time, job.peak_memory = None, 0, 0.0, 0
        job.stdout_bytes = job.stderr_bytes = 0
        job.output_truncated = False
        self._reserve(worker, job, +1)
        self._set_state(job, State.OFFERED)
        heapq.heappush(self._offer_deadlines, (now + self.limits.offer_timeout, job.id, job.attempt))
        self._effects.assign.append(Assignment(worker.id, worker.session, job))

    # ----------------------------------------------------------------- queries

    def summary(self) -> tuple[dict[State, int], float, float]:
        """Counts per state, average run time, ETA of the remaining work."""
        avg = self._run_time_sum / self._run_time_n if self._run_time_n else 0.0
        running = self.counts[State.RUNNING] + self.counts[State.OFFERED]
        remaining = running + self.counts[State.PENDING]
        eta = avg * remaining / max(1, running) if avg and remaining else 0.0
        return {s: self.counts[s] for s in State}, avg, eta

    def matching(self, states: frozenset[State] | None) -> int:
        """Number of jobs in `states` (None: all)."""
        return sum(self.counts[s] for s in states) if states else len(self.jobs)

    def recent(self, states: frozenset[State] | None, limit: int) -> list[JobRecord]:
        """The `limit` (0: all) most recent jobs in `states` (None: all),
        newest first. Costs about `limit` steps, never a walk over every job
        when few of them match."""
        jobs = self.jobs
        if not states or len(states) == len(State):
            # Ids are given in increasing order, so the dict is in id order.
            return [jobs[i] for i in itertools.islice(reversed(jobs), limit or None)]
        index = [self.by_state[s] for s in states]
        if not limit or limit >= self.matching(states):
            return [jobs[i] for i in sorted(itertools.chain.from_iterable(index), reverse=True)]
        found = []
        for job_id in itertools.islice(reversed(jobs), RECENT_SCAN_FACTOR * limit):
            job = jobs[job_id]
            if job.state in states:
                found.append(job)
                if len(found) == limit:
                    return found
        return [jobs[i] for i in heapq.nlargest(limit, itertools.chain.from_iterable(index))]
