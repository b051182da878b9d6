"""Bounds on what one request may ask for, so no input can exhaust the server."""

from __future__ import annotations

from collections.abc import Mapping

from kueue.v1 import common_pb2
from kueue_server.scheduler import SchedulerError

MAX_JOBS_PER_SUBMIT = 100_000
MAX_COMMAND_BYTES = 1024 * 1024
MAX_ENV_BYTES = 4 * 1024 * 1024
MAX_CPUS = 1_000_000
MAX_RAM_MB = 1 << 40
MAX_GLOBAL_AMOUNT = 1_000_000
# cwd, stdout_path, stderr_path, user, submit_host: each at most this long.
# (Small enough that an error message quoting one fits gRPC's metadata limit.)
MAX_FIELD_BYTES = 8 * 1024
MAX_GLOBAL_NAMES = 64
MAX_GLOBAL_NAME_BYTES = 256
# All instance environments of one submission together.
MAX_ARRAY_ENV_BYTES = 8 * 1024 * 1024
# What Linux lets one exec take: each argument or environment entry at most
# 32 pages (MAX_ARG_STRLEN), all of them together (with a pointer each) a
# quarter of the stack limit (ARG_MAX). With 4 KiB pages and the default
# 8 MiB stack, as on nearly every worker (x86-64, most arm64), that is 128
# KiB and 2 MiB. A job over them is queued, but warned about: it fails to
# start on such a worker (the worker then says why in numbers).
EXEC_STRING_BYTES = 32 * 4096
EXEC_TOTAL_BYTES = 8 * 1024 * 1024 // 4


def check_sizes(spec: common_pb2.JobSpec, instances: int) -> None:
    if instances > MAX_JOBS_PER_SUBMIT:
        raise SchedulerError(
            "RESOURCE_EXHAUSTED",
            f"{instances} jobs in one call; at most {MAX_JOBS_PER_SUBMIT} per submission",
        )
    if sum(len(a) for a in spec.command) > MAX_COMMAND_BYTES:
        raise SchedulerError("RESOURCE_EXHAUSTED", f"command longer than {MAX_COMMAND_BYTES} bytes")
    if sum(len(k) + len(v) for k, v in spec.env.items()) > MAX_ENV_BYTES:
        raise SchedulerError("RESOURCE_EXHAUSTED", f"environment larger than {MAX_ENV_BYTES} bytes")
    for name in ("cwd", "stdout_path", "stderr_path", "user", "submit_host"):
        if len(getattr(spec, name)) > MAX_FIELD_BYTES:
            raise SchedulerError("RESOURCE_EXHAUSTED", f"{name} longer than {MAX_FIELD_BYTES} characters")
    res = spec.resources
    if res.cpus > MAX_CPUS or res.ram_mb > MAX_RAM_MB or res.slots > MAX_CPUS:
        raise SchedulerError("INVALID_ARGUMENT", "absurd resource request (cpus, ram or slots out of range)")
    if len(res.global_resources) > MAX_GLOBAL_NAMES or any(
        len(name) > MAX_GLOBAL_NAME_BYTES for name in res.global_resources
    ):
        raise SchedulerError(
            "INVALID_ARGUMENT",
            f"at most {MAX_GLOBAL_NAMES} global resources of at most {MAX_GLOBAL_NAME_BYTES} characters each",
        )
    if any(n > MAX_GLOBAL_AMOUNT for n in res.global_resources.values()):
        raise SchedulerError(
            "INVALID_ARGUMENT", f"absurd global resource amount (more than {MAX_GLOBAL_AMOUNT})"
        )


def check_spawnable(spec: common_pb2.JobSpec) -> None:
    """Refuse what no exec could take (a NUL byte in an argument, a path or
    the environment; a variable name with "="): such a job would only fail,
    or be rejected by every worker, after it was queued."""
    for i, arg in enumerate(spec.command):
        if "\0" in arg:
            raise SchedulerError("INVALID_ARGUMENT", f"argument {i} of the command contains a NUL byte")
    for name in ("cwd", "stdout_path", "stderr_path"):
        if "\0" in getattr(spec, name):
            raise SchedulerError("INVALID_ARGUMENT", f"{name} contains a NUL byte")
    _check_env(spec.env)


def _check_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise SchedulerError("INVALID_ARGUMENT", f"bad environment variable name {key[:200]!r}")
        if "\0" in value:
            raise SchedulerError("INVALID_ARGUMENT", f"environment variable {key[:200]} contains a NUL byte")


def check_instance_envs(spec: common_pb2.JobSpec, envs: list[dict[str, str]]) -> None:
    """Each job's environment (spec plus instance) and all instance
    environments together stay bounded, and each can be exec'ed."""
    base = sum(len(k) + len(v) for k, v in spec.env.items())
    total = 0
    for env in envs:
        _check_env(env)
        size = sum(len(k) + len(v) for k, v in env.items())
        total += size
        if base + size > MAX_ENV_BYTES:
            raise SchedulerError("RESOURCE_EXHAUSTED", f"environment larger than {MAX_ENV_BYTES} bytes")
        if total > MAX_ARRAY_ENV_BYTES:
            raise SchedulerError(
                "RESOURCE_EXHAUSTED",
                f"instance environments larger than {MAX_ARRAY_ENV_BYTES} bytes in one submission",
            )


def exec_size_warnings(spec: common_pb2.JobSpec, envs: list[dict[str, str]] | None) -> list[str]:
    """What an exec on a typical Linux worker refuses in these jobs: one
    warning, or none. For the total, the instance with the most environment
    stands for all of an array."""
    argv = [arg.encode("utf-8", "surrogateescape") for arg in spec.command]
    for i, arg in enumerate(argv):
        if len(arg) + 1 > EXEC_STRING_BYTES:
            what = "the shell command line" if spec.shell else f"argument {i} of the command"
            return [_too_long(f"{what} takes {len(arg) + 1} bytes", EXEC_STRING_BYTES, _ONE)]
    if spec.use_worker_env:
        return []  # the worker's own environment: unknown here
    for env in (spec.env, *(envs or ())):
        for key, value in env.items():
            # A character takes at most 4 bytes: most entries need no encoding to pass.
            if 4 * (len(key) + len(value) + 2) > EXEC_STRING_BYTES:
                size = len(f"{key}={value}".encode("utf-8", "surrogateescape")) + 1
                if size > EXEC_STRING_BYTES:
                    what = f"environment variable {key[:200]} takes {size} bytes"
                    return [_too_long(what, EXEC_STRING_BYTES, _ONE)]
    env = dict(spec.env)
    if envs:
        env.update(max(envs, key=lambda e: sum(len(k) + len(v) for k, v in e.items())))
    # Each string with its NUL and its pointer in the vector the kernel builds.
    total = sum(len(s) + 9 for s in argv) + sum(
        len(f"{k}={v}".encode("utf-8", "surrogateescape")) + 9 for k, v in env.items()
    )
    if total > EXEC_TOTAL_BYTES:
        return [_too_long(f"the command line and environment take {total} bytes", EXEC_TOTAL_BYTES, _ALL)]
    return []


def _too_long(what: str, limit: int, why: str) -> str:
    return (
        f"{what}, over the {limit} bytes Linux allows {why}: the job will fail to start there; "
        "pass the data in a file instead"
    )


# What _too_long says each limit is.
_ONE = "for one argument or environment variable (32 pages of 4 KiB, as on most workers)"
_ALL = "for all of them together (a quarter of the default 8 MiB stack limit, as on most workers)"
