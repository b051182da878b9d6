"""Records <-> protobuf messages and store rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]
from typing import Any

from kueue import wire
from kueue.timestamps import timestamp
from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_server.model import ACTIVE, JobRecord, Outcome, PastAttempt, Shape, State, WorkerRecord


def full_spec(job: JobRecord, *, include_env: bool = True) -> common_pb2.JobSpec:
    spec = common_pb2.JobSpec()
    spec.CopyFrom(job.spec)
    if not include_env:
        spec.ClearField("env")
    elif job.extra_env:
        spec.env.update(job.extra_env)
    return spec


def _key(field: object) -> bytes:
    return wire.varint(field.number << 3 | 2)  # type: ignore[attr-defined]  # length-delimited


_ASSIGN_KEY = _key(wpb.ConnectResponse.DESCRIPTOR.fields_by_name["assign"])
_SPEC_KEY = _key(wpb.Assign.DESCRIPTOR.fields_by_name["spec"])
_ENVIRON_KEY = _key(wpb.Assign.DESCRIPTOR.fields_by_name["environ"])
# Encoded specs kept, by spec id; an array has one, so few are needed.
MAX_ENCODED_SPECS = 64


# What the worker sets in every job's environment, over the submitter's
# values (worker_service.proto, Assign.environ): left out of the block.
WORKER_SETS = frozenset({"KUEUE_JOB_ID", "KUEUE_ATTEMPT", "KUEUE_WORKER", "KUEUE_WORKER_ID", "PWD"})


def environ_block(env: Mapping[str, str]) -> bytes | None:
    """env as Assign.environ carries it, without what the worker sets; None
    where a block cannot say it (a key with "=", a NUL): such a spec goes
    with its env, for the worker to refuse."""
    entries = []
    for key, value in env.items():
        if key not in WORKER_SETS:
            if "=" in key or "\0" in key or "\0" in value:
                return None
            entries.append(f"{key}={value}\0")
    return "".join(entries).encode()


@dataclass(slots=True)
class _Encoded:
    spec: common_pb2.JobSpec
    full: bytes  # the spec, env included
    # For workers that take Assign.environ, made at the first such Assign:
    # the spec without its env, the env's block (None: it cannot be one), and its keys.
    bare: bytes | None = None
    block: bytes | None = None
    keys: frozenset[str] = frozenset()


class AssignEncoder:
    """Assign messages, encoded by hand around each submission's spec encoded
    once: encoding a spec with a few dozen environment variables was the
    largest cost of an offer. A message that appears twice on the wire is
    merged, so the job's extra env follows the spec as a JobSpec of its own:
    its keys win, as with full_spec's env.update. A worker that takes
    Assign.environ gets the environment there instead, as one block made
    once per submission."""

    def __init__(self) -> None:
        self._specs: dict[int, _Encoded] = {}

    def encode(self, job: JobRecord, *, environ_block: bool = False) -> bytes:
        cached = self._specs.get(job.spec_id)
        if cached is None or cached.spec is not job.spec:
            if len(self._specs) >= MAX_ENCODED_SPECS:
                self._specs.clear()
            cached = self._specs[job.spec_id] = _Encoded(job.spec, job.spec.SerializeToString())
        block = self._block(cached, job.extra_env) if environ_block and not job.spec.use_worker_env else None
        if block is not None:
            assert cached.bare is not None
            spec = cached.bare
            tail = (_ENVIRON_KEY, wire.varint(len(block)), block)
        else:
            spec = cached.full
            if job.extra_env:
                spec += common_pb2.JobSpec(env=job.extra_env).SerializeToString()
            tail = ()
        inner = b"".join(
            (
                wpb.Assign(job_id=job.id, attempt=job.attempt).SerializeToString(),
                _SPEC_KEY,
                wire.varint(len(spec)),
                spec,
                *tail,
            )
        )
        return b"".join((_ASSIGN_KEY, wire.varint(len(inner)), inner))

    @staticmethod
    def _block(cached: _Encoded, extra: dict[str, str] | None) -> bytes | None:
        if cached.bare is None:
            bare = common_pb2.JobSpec()
            bare.CopyFrom(cached.spec)
            bare.ClearField("env")
            cached.bare = bare.SerializeToString()
            cached.block = environ_block(cached.spec.env)
            cached.keys = frozenset(cached.spec.env)
        if cached.block is None or not extra:
            return cached.block
        if cached.keys.isdisjoint(extra):
            more = environ_block(extra)
            return None if more is None else cached.block + more
        # The job's own values replace the spec's (rare: arrays add new names).
        return environ_block({**cached.spec.env, **extra})


def job_message(
    job: JobRecord, *, include_env: bool = False, include_attempts: bool = False
) -> common_pb2.Job:
    msg = common_pb2.Job(
        id=job.id,
        state=int(job.state),
        spec=full_spec(job, include_env=include_env),
        issued_at=timestamp(job.issued_at),
        offered_at=timestamp(job.offered_at),
        started_at=timestamp(job.started_at),
        finished_at=timestamp(job.finished_at),
        attempt=job.attempt,
        worker_id=job.worker_id,
        worker_name=job.worker_name,
        signal=job.signal,
        run_time_seconds=job.run_time,
        peak_memory_bytes=job.peak_memory,
        comment=job.comment,
        stdout_bytes=job.stdout_bytes,
        stderr_bytes=job.stderr_bytes,
        output_truncated=job.output_truncated,
        kill_requested=job.kill_requested,
        held=job.state is State.OFFERED and (job.prefetched or job.waiting),
        start_failure=job.start_failure,
    )
    if job.exit_code is not None:
        msg.exit_code = job.exit_code
    if not include_env and job.extra_env:
        # Array members differ only by these; show them even without the env.
        msg.spec.env.update(job.extra_env)
    if include_attempts:
        msg.attempts.extend(attempt_messages(job))
    return msg


def summary_message(counts: dict[State, int], avg: float, eta: float) -> common_pb2.JobSummary:
    return common_pb2.JobSummary(
        pending=counts[State.PENDING],
        offered=counts[State.OFFERED],
        running=counts[State.RUNNING],
        succeeded=counts[State.SUCCEEDED],
        failed=counts[State.FAILED],
        canceled=counts[State.CANCELED],
        average_run_time_seconds=avg,
        eta_seconds=eta,
    )


def attempt_messages(job: JobRecord) -> list[common_pb2.Attempt]:
    """The job's attempt history: the ended ones kept, then the current or
    last one, which is described by the job's own fields."""
    past = job.past_attempts or []
    messages = [
        common_pb2.Attempt(
            number=a.number,
            worker_id=a.worker_id,
            worker_name=a.worker_name,
            offered_at=timestamp(a.offered_at),
            started_at=timestamp(a.started_at),
            ended_at=timestamp(a.ended_at),
            outcome=int(a.outcome),
            reason=a.reason,
        )
        for a in past
    ]
    # A job queued again has no current attempt until its next offer.
    if job.attempt > (past[-1].number if past else 0) and job.state is not State.PENDING:
        current = common_pb2.Attempt(
            number=job.attempt,
            worker_id=job.worker_id,
            worker_name=job.worker_name,
            offered_at=timestamp(job.offered_at),
            started_at=timestamp(job.started_at),
        )
        if job.state in ACTIVE:
            current.outcome = Outcome.ACTIVE
        else:
            current.outcome = Outcome.CANCELED if job.state is State.CANCELED else Outcome.FINISHED
            current.ended_at.CopyFrom(timestamp(job.finished_at or job.issued_at))
            current.reason = job.comment
        messages.append(current)
    return messages


def worker_message(worker: WorkerRecord) -> common_pb2.Worker:
    free = worker.free()
    reach = worker.reach()
    return common_pb2.Worker(
        id=worker.id,
        name=worker.name,
        system=worker.system,
        capacity=common_pb2.Resources(slots=worker.capacity.slots, cpus=reach.cpus, ram_mb=reach.ram_mb),
        free=common_pb2.Resources(slots=free.slots, cpus=free.cpus, ram_mb=free.ram_mb),
        running_jobs=len(worker.jobs),
        connected=worker.connected,
        connected_at=timestamp(worker.connected_at),
        last_seen_at=timestamp(worker.last_seen),
        address=worker.address,
        draining=worker.draining,
        machine=worker.machine.key if worker.machine is not None else "",
    )


JOB_COLUMNS = (
    "id, spec_id, extra_env, state, issued_at, offered_at, started_at, finished_at, attempt, worker_id, "
    "worker_name, exit_code, signal, run_time, peak_memory, comment, stdout_bytes, stderr_bytes, "
    "output_truncated, kill_requested, past_attempts, start_failure"
)
# Added after the first release: older stores get the column on open.
ADDED_JOB_COLUMNS = (("past_attempts", "TEXT"), ("start_failure", "INTEGER"))


def job_row(job: JobRecord) -> tuple[Any, ...]:
    env = job.extra_env_json
    if env is None and job.extra_env:
        env = job.extra_env_json = _env_json(job.extra_env)
    return (
        job.id,
        job.spec_id,
        env,
        int(job.state),
        job.issued_at,
        job.offered_at,
        job.started_at,
        job.finished_at,
        job.attempt,
        job.worker_id,
        job.worker_name,
        job.exit_code,
        job.signal,
        job.run_time,
        job.peak_memory,
        job.comment,
        job.stdout_bytes,
        job.stderr_bytes,
        int(job.output_truncated),
        int(job.kill_requested),
        _past_attempts_json(job.past_attempts),
        job.start_failure,
    )


# job_row()'s columns after the fifth for a job as submitted: a row that
# ends so is written as its first five columns, the rest as SQL literals
# (store, NEW_JOB_DEFAULTS). sqlite3 binds each parameter at a cost (a None
# about 0.8 us), and an array of 2 000 jobs is written before its first job
# may start.
SUBMITTED_TAIL: tuple[Any, ...] = (None, None, None, 0, "", "", None, 0, 0.0, 0, "", 0, 0, 0, 0, None, 0)
NEW_JOB_COLUMNS = 5


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


NEW_JOB_DEFAULTS = ", ".join(map(_sql_literal, SUBMITTED_TAIL))


def _env_json(env: dict[str, str]) -> str:
    """json.dumps(env), for the str-to-str map it is, in a quarter of the time:
    it is written again with every state change of the job."""
    return "{" + ", ".join([_quote(k) + ": " + _quote(v) for k, v in env.items()]) + "}"


def _past_attempts_json(past: list[PastAttempt] | None) -> str | None:
    if not past:
        return None
    return json.dumps(
        [
            [
                a.number,
                a.worker_id,
                a.worker_name,
                a.offered_at,
                a.started_at,
                a.ended_at,
                int(a.outcome),
                a.reason,
            ]
            for a in past
        ]
    )


def _past_attempts(text: str | None) -> list[PastAttempt] | None:
    if not text:
        return None
    return [
        PastAttempt(number, worker_id, worker_name, offered, started, ended, Outcome(outcome), reason)
        for number, worker_id, worker_name, offered, started, ended, outcome, reason in json.loads(text)
    ]


def job_from_row(row: tuple[Any, ...], specs: dict[int, common_pb2.JobSpec]) -> JobRecord:
    (id_, spec_id, extra_env, state, issued, offered, started, finished, attempt, worker_id, worker_name,
     exit_code, signal, run_time, peak, comment, out_b, err_b, truncated, kill, past, start_failure) = row  # fmt: skip
    spec = specs[spec_id]
    return JobRecord(
        id=id_,
        spec_id=spec_id,
        spec=spec,
        extra_env=json.loads(extra_env) if extra_env else None,
        shape=Shape.of(spec.resources),
        state=State(state),
        issued_at=issued,
        offered_at=offered,
        started_at=started,
        finished_at=finished,
        attempt=attempt,
        worker_id=worker_id,
        worker_name=worker_name,
        exit_code=exit_code,
        signal=signal,
        run_time=run_time,
        peak_memory=peak,
        comment=comment,
        stdout_bytes=out_b,
        stderr_bytes=err_b,
        output_truncated=bool(truncated),
        kill_requested=bool(kill),
        past_attempts=_past_attempts(past),
        extra_env_json=extra_env or None,
        start_failure=start_failure or 0,  # NULL in rows of servers before the column
    )
