"""Plain records the scheduler core works on: jobs, workers, resource shapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from kueue.v1 import common_pb2


class State(IntEnum):
    # Values equal the kueue.v1.JobState enum numbers, so they convert 1:1.
    PENDING = common_pb2.JOB_STATE_PENDING
    OFFERED = common_pb2.JOB_STATE_OFFERED
    RUNNING = common_pb2.JOB_STATE_RUNNING
    SUCCEEDED = common_pb2.JOB_STATE_SUCCEEDED
    FAILED = common_pb2.JOB_STATE_FAILED
    CANCELED = common_pb2.JOB_STATE_CANCELED


ACTIVE = frozenset({State.OFFERED, State.RUNNING})
FINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELED})

# Ended attempts kept per job: a job rejected every few seconds for a day
# must not grow without bound.
MAX_PAST_ATTEMPTS = 20


class Outcome(IntEnum):
    """How an attempt ended; values equal the kueue.v1.AttemptOutcome numbers."""

    ACTIVE = common_pb2.ATTEMPT_OUTCOME_ACTIVE
    FINISHED = common_pb2.ATTEMPT_OUTCOME_FINISHED
    REJECTED = common_pb2.ATTEMPT_OUTCOME_REJECTED
    UNANSWERED = common_pb2.ATTEMPT_OUTCOME_UNANSWERED
    WORKER_LOST = common_pb2.ATTEMPT_OUTCOME_WORKER_LOST
    WORKER_STOPPED = common_pb2.ATTEMPT_OUTCOME_WORKER_STOPPED
    CANCELED = common_pb2.ATTEMPT_OUTCOME_CANCELED
    HANDED_BACK = common_pb2.ATTEMPT_OUTCOME_HANDED_BACK


@dataclass(frozen=True, slots=True)
class Shape:
    """What a job asks for; pending jobs with equal shapes share one queue group."""

    slots: int = 1
    cpus: int = 1
    ram_mb: int = 0
    global_: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, res: common_pb2.Resources) -> Shape:
        return cls(
            res.slots,
            res.cpus,
            res.ram_mb,
            tuple(sorted((k, v) for k, v in res.global_resources.items() if v)),
        )

    def describe(self) -> str:
        parts = [f"{self.cpus} cpus", f"{self.ram_mb} MB RAM"]
        if self.slots != 1:
            parts.insert(0, f"{self.slots} slots")
        parts += [f"{n} {name}" for name, n in self.global_]
        return ", ".join(parts)


@dataclass(slots=True)
class Amount:
    """Mutable resource amounts of a worker (capacity, reserved, external use)."""

    slots: int = 0
    cpus: int = 0
    ram_mb: int = 0

    def fits(self, shape: Shape) -> bool:
        return shape.slots <= self.slots and shape.cpus <= self.cpus and shape.ram_mb <= self.ram_mb

    def add(self, other: Shape | Amount, sign: int = 1) -> None:
        self.slots += sign * other.slots
        self.cpus += sign * other.cpus
        self.ram_mb += sign * other.ram_mb


@dataclass(frozen=True, slots=True)
class PastAttempt:
    """An attempt that ended without ending its job (the job went back to
    pending). The current or last attempt lives in the JobRecord's fields."""

    number: int
    worker_id: str
    worker_name: str
    offered_at: float | None
    started_at: float | None
    ended_at: float
    outcome: Outcome
    reason: str


@dataclass(slots=True)
class JobRecord:
    id: int
    spec_id: int
    # Shared by all jobs of one submission; env extended by extra_env.
    spec: common_pb2.JobSpec
    extra_env: dict[str, str] | None
    shape: Shape
    state: State = State.PENDING
    issued_at: float = 0.0
    offered_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 0
    worker_id: str = ""
    worker_name: str = ""
    exit_code: int | None = None
    signal: int = 0
    run_time: float = 0.0
    peak_memory: int = 0
    comment: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_truncated: bool = False
    kill_requested: bool = False
    # FAILED without starting: a common_pb2.StartFailure (0 otherwise).
    start_failure: int = 0
    # worker id -> time until which it is not offered this job again.
    rejected_by: dict[str, float] | None = None
    # Attempts that ended with the job queued again, oldest first (at most
    # MAX_PAST_ATTEMPTS); None for the many jobs that never had one.
    past_attempts: list[PastAttempt] | None = None
    # Offered beyond the worker's free room (prefetch): holds none of its
    # resources until it starts.
    prefetched: bool = False
    # The worker holds it for a free slot (accepted, queued): no offer timeout.
    waiting: bool = False
    # A Retract was sent for it (once is enough).
    retracting: bool = False
    # extra_env as stored (JSON), made at the first write of the row: the
    # row is written again at every state change, extra_env never changes.
    extra_env_json: str | None = None


@dataclass(slots=True)
class WorkerRecord:
    id: str
    name: str
    capacity: Amount = field(default_factory=Amount)
    reserved: Amount = field(default_factory=Amount)
    external: Amount = field(default_factory=Amount)
    system: common_pb2.SystemInfo = field(default_factory=common_pb2.SystemInfo)
    connected: bool = False
    connected_at: float | None = None
    last_seen: float = 0.0
    address: str = ""
    # Jobs offered to or running on this worker.
    jobs: set[int] = field(default_factory=set)
    # Incremented on each (re)connection so effects aimed at an old stream can be told apart.
    session: int = 0
    # No new jobs: asked by an operator (kueue drain), or by the worker itself
    # while it finishes its jobs before stopping.
    drained_by_operator: bool = False
    draining_itself: bool = False
    # How many jobs beyond its free room it takes (Register.prefetch), and
    # how many of its jobs are such (prefetched, not started).
    prefetch: int = 0
    prefetched: int = 0
    # What those will take once started: offers to its free room leave it to them.
    prefetched_amount: Amount = field(default_factory=Amount)
    # Their ids, oldest offer first: work stealing looks at these, not at
    # every job of the worker.
    held: dict[int, None] = field(default_factory=dict)
    # One of the processes of a worker split into several (Register.machine),
    # which share the machine's CPUs and RAM; None for a whole worker.
    machine: Machine | None = None

    @property
    def draining(self) -> bool:
        return self.drained_by_operator or self.draining_itself

    def free(self) -> Amount:
        """Free slots, and CPUs and RAM free on its machine: capacity minus
        reservations minus external use."""
        slots = max(0, self.capacity.slots - self.reserved.slots)
        if self.machine is not None:
            cpus, ram_mb = self.machine.free(claims=False)
            return Amount(slots, cpus, ram_mb)
        return Amount(
            slots,
            max(0, self.capacity.cpus - self.reserved.cpus - self.external.cpus),
            max(0, self.capacity.ram_mb - self.reserved.ram_mb - self.external.ram_mb),
        )

    def reach(self) -> Amount:
        """The CPUs and RAM one job on it may take: its machine's, for a process of one."""
        return self.machine.capacity if self.machine is not None else self.capacity

    def could_fit(self, shape: Shape) -> bool:
        """Whether it could ever run a job of this shape: its slots, and the CPUs and RAM in reach."""
        reach = self.reach()
        return (
            shape.slots <= self.capacity.slots and shape.cpus <= reach.cpus and shape.ram_mb <= reach.ram_mb
        )

    def claim(self) -> tuple[int, int]:
        """CPUs and RAM this process of a machine may come to use without a
        new offer: what its jobs hold, or more as the jobs it holds for a free
        slot start, which it starts only within its share (its capacity)."""
        res, held, share = self.reserved, self.prefetched_amount, self.capacity
        return (
            max(res.cpus, min(share.cpus, res.cpus + held.cpus)),
            max(res.ram_mb, min(share.ram_mb, res.ram_mb + held.ram_mb)),
        )

    def busy(self) -> float:
        """Share of the worker in use; less busy workers get offers first."""
        parts = [
            self.reserved.slots / self.capacity.slots if self.capacity.slots else 1.0,
            (self.reserved.cpus + self.external.cpus) / self.capacity.cpus if self.capacity.cpus else 1.0,
        ]
        return max(parts)


@dataclass(slots=True)
class Machine:
    """The processes of one worker split into several (worker_processes):
    each has slots of its own and takes jobs like a worker, but the CPUs and
    RAM are the machine's, so a job may take more than one process's share.

    A process starts a job it holds for a free slot (prefetched) only within
    its share; a job beyond that comes as a plain offer, which the machine's
    free room must fit, counting what each process may come to start from
    what it holds (WorkerRecord.claim)."""

    key: str
    # CPUs and RAM of the whole machine (Register.machine_capacity).
    capacity: Amount = field(default_factory=Amount)
    members: dict[str, WorkerRecord] = field(default_factory=dict)

    def free(self, claims: bool) -> tuple[int, int]:
        """CPUs and RAM free: capacity minus each process's reservations (or
        claims) and external use. External use is each process's share of
        the machine's load beyond its own jobs, summed: never below the true
        figure, above it while one process runs more than its share."""
        cpus, ram_mb = self.capacity.cpus, self.capacity.ram_mb
        for member in self.members.values():
            used_cpus, used_ram = member.claim() if claims else (member.reserved.cpus, member.reserved.ram_mb)
            cpus -= used_cpus
            ram_mb -= used_ram
            if member.connected:
                cpus -= member.external.cpus
                ram_mb -= member.external.ram_mb
        return max(0, cpus), max(0, ram_mb)
