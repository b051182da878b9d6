"""Queueing jobs that have ended again (`kueue retry`): the submissions that
do it, worked out from the jobs as the server lists them. No I/O here.

A job queued again runs the same command in the same directory with the
same environment, resources and output paths (an array member keeps its
$KUEUE_ARRAY_ID); it is a new job with an id of its own, submitted by
whoever asks. Consecutive jobs that differ only in their environment (the
members of an array) go in one submission, as the array did.

Asked for every failed (or canceled) job, it takes only those no later job
repeats: a failure queued again before, and maybe failed again, is not run
twice; its latest failure is the one taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kueue.v1 import common_pb2
from kueue_client.spec import ARRAY_ID_VARIABLE, ENTRY_VARIABLE, MAX_INSTANCE_ENV_BYTES, MAX_JOBS_PER_CALL

ARRAY_VARIABLES = (ARRAY_ID_VARIABLE, ENTRY_VARIABLE)

Submission = tuple[common_pb2.JobSpec, list[dict[str, str]] | None]


def submissions(jobs: Sequence[common_pb2.Job], user: str, host: str) -> list[Submission]:
    """(spec, instances) for each SubmitJobs call that queues `jobs` again,
    their new ids coming out in the order of `jobs`."""
    groups: list[tuple[bytes, list[common_pb2.JobSpec]]] = []
    size = 0
    for job in jobs:
        spec = common_pb2.JobSpec()
        spec.CopyFrom(job.spec)
        # Nobody is attached to it (a `kueue run` job's input was its
        # client's): it reads /dev/null like any queued job.
        spec.stdin_pipe = False
        spec.user, spec.submit_host = user, host
        key = _without_env(spec)
        env_size = sum(len(k) + len(v) for k, v in spec.env.items())
        if (
            groups
            and groups[-1][0] == key
            and len(groups[-1][1]) < MAX_JOBS_PER_CALL
            and size + env_size <= MAX_INSTANCE_ENV_BYTES
        ):
            groups[-1][1].append(spec)
            size += env_size
        else:
            groups.append((key, [spec]))
            size = env_size
    return [_submission(specs) for _, specs in groups]


def not_repeated(
    candidates: Sequence[common_pb2.Job], later: Iterable[common_pb2.Job]
) -> list[common_pb2.Job]:
    """The candidates that no job in `later` with a higher id repeats: the
    same command in the same directory with the same resources, output
    paths and array variables, whoever submitted it. `later` must hold
    every job newer than the oldest candidate; their environments beyond
    the array variables are not needed (ListJobs without include_env)."""
    newest: dict[bytes, int] = {}
    for job in later:
        key = _identity(job.spec)
        newest[key] = max(newest.get(key, 0), job.id)
    return [job for job in candidates if newest.get(_identity(job.spec), 0) <= job.id]


def _identity(spec: common_pb2.JobSpec) -> bytes:
    return _serialized_without(spec, ("user", "submit_host", "stdin_pipe", "env"), keep_env=ARRAY_VARIABLES)


def _without_env(spec: common_pb2.JobSpec) -> bytes:
    return _serialized_without(spec, ("env",))


def _serialized_without(
    spec: common_pb2.JobSpec, fields: Sequence[str], keep_env: Sequence[str] = ()
) -> bytes:
    """spec without `fields` (but with the env entries named in keep_env), as a dict key."""
    bare = common_pb2.JobSpec()
    bare.CopyFrom(spec)
    for name in fields:
        bare.ClearField(name)
    for name in keep_env:
        if name in spec.env:
            bare.env[name] = spec.env[name]
    return bare.SerializeToString(deterministic=True)


def _submission(specs: list[common_pb2.JobSpec]) -> Submission:
    envs = [dict(spec.env) for spec in specs]
    common = set(envs[0].items()).intersection(*(env.items() for env in envs[1:]))
    # What all of them share goes once in the spec, each job's own as its
    # instance; an array's variables always as the job's own, as `kueue cmd
    # --array` sent them (the server lists them without the environment).
    shared = {k: v for k, v in common if k not in ARRAY_VARIABLES}
    instances = [{k: v for k, v in env.items() if k not in shared} for env in envs]
    first = specs[0]
    first.env.clear()
    first.env.update(shared)
    if len(specs) == 1 and not instances[0]:
        return first, None
    return first, instances
