"""Bounds on what one request may ask for, so no input can exhaust the server."""

from __future__ import annotations

from kueue.v1 import common_pb2
from kueue_server.scheduler import SchedulerError

MAX_JOBS_PER_SUBMIT = 100_000
MAX_COMMAND_BYTES = 1024 * 1024
MAX_ENV_BYTES = 4 * 1024 * 1024
MAX_CPUS = 1_000_000
MAX_RAM_MB = 1 << 40


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
    res = spec.resources
    if res.cpus > MAX_CPUS or res.ram_mb > MAX_RAM_MB or res.slots > MAX_CPUS:
        raise SchedulerError("INVALID_ARGUMENT", "absurd resource request (cpus, ram or slots out of range)")
