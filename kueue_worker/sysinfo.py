"""What the worker tells the server about its machine: system facts, capacity,
and the resources used by others than its own jobs.

Probing runs at every heartbeat, so facts that do not change while the worker
runs (host name, kernel, distribution, core count, total RAM) are read once.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import socket
import time
from pathlib import Path

import psutil

from kueue.config import WorkerSettings
from kueue.v1 import common_pb2

MB = 1024 * 1024


@functools.cache
def _static() -> tuple[str, str, str, int, int]:
    return (
        socket.gethostname(),
        platform.release(),
        distribution(),
        psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        psutil.virtual_memory().total // MB,
    )


def distribution(os_release: Path = Path("/etc/os-release")) -> str:
    """PRETTY_NAME from os-release, else the OS name."""
    try:
        lines = os_release.read_text().splitlines()
    except OSError:
        return platform.system()
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "PRETTY_NAME":
            return value.strip().strip("\"'")
    return platform.system()


def _cpu_frequency_mhz() -> float:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, RuntimeError):
        return 0.0
    return float(freq.current) if freq is not None and freq.current > 0 else 0.0


def probe() -> common_pb2.SystemInfo:
    hostname, kernel, distro, cores, total_mb = _static()
    load_1, load_5, load_15 = os.getloadavg()
    return common_pb2.SystemInfo(
        hostname=hostname,
        kernel=kernel,
        distribution=distro,
        cpu_cores=cores,
        cpu_frequency_mhz=_cpu_frequency_mhz(),
        memory_total_mb=total_mb,
        memory_available_mb=psutil.virtual_memory().available // MB,
        load_1=load_1,
        load_5=load_5,
        load_15=load_15,
        uptime_seconds=max(0.0, time.time() - psutil.boot_time()),
    )


def capacity(settings: WorkerSettings, system: common_pb2.SystemInfo) -> common_pb2.Resources:
    return common_pb2.Resources(
        slots=settings.worker_max_parallel_jobs, cpus=system.cpu_cores, ram_mb=system.memory_total_mb
    )


def external_use(
    settings: WorkerSettings, system: common_pb2.SystemInfo, reserved_cpus: int, jobs_rss_bytes: int
) -> common_pb2.Resources:
    """Load and memory beyond what this worker's own jobs account for."""
    if not settings.dynamic_check_free_resources:
        return common_pb2.Resources()
    busy_cpus = math.floor(system.load_1 * settings.dynamic_cpu_load_scale_factor)
    used_mb = system.memory_total_mb - system.memory_available_mb
    return common_pb2.Resources(
        cpus=max(0, busy_cpus - reserved_cpus),
        ram_mb=max(0, used_mb - jobs_rss_bytes // MB),
    )
