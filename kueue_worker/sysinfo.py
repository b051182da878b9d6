"""What the worker tells the server about its machine: system facts, capacity,
and the resources used by others than its own jobs.

Probing runs at every heartbeat (up to ten a second while short jobs start
and end), so facts that do not change while the worker runs (host name,
kernel, distribution, core count, total RAM) are read once, the CPU frequency
(shown, not scheduled on) every few seconds, and the rest without psutil's
parsing of whole files where Linux offers a cheaper way.
"""

from __future__ import annotations

import contextlib
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
from kueue_worker.shares import WHOLE, Share

MB = 1024 * 1024
# How long a CPU frequency reading is shown before it is read again.
FREQUENCY_SECONDS = 5.0
_frequency: tuple[float, float] = (-1.0, 0.0)  # (read at, monotonic; MHz)


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


def _recent_cpu_frequency_mhz() -> float:
    global _frequency
    read_at, mhz = _frequency
    now = time.monotonic()
    if read_at < 0 or now - read_at > FREQUENCY_SECONDS:
        mhz = _cpu_frequency_mhz()
        _frequency = (now, mhz)
    return mhz


def _available_mb() -> int:
    """MemAvailable, as psutil.virtual_memory().available reports it on Linux
    (where it takes one line of /proc/meminfo rather than the whole file)."""
    try:
        fd = os.open("/proc/meminfo", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 8192)
        finally:
            os.close(fd)
        start = data.index(b"MemAvailable:") + len(b"MemAvailable:")
        return int(data[start : data.index(b"kB", start)]) * 1024 // MB
    except (OSError, ValueError):  # not Linux, or a kernel before 3.14
        return psutil.virtual_memory().available // MB


def _uptime_seconds() -> float:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        with contextlib.suppress(OSError):
            return time.clock_gettime(boottime)
    return max(0.0, time.time() - psutil.boot_time())


def probe() -> common_pb2.SystemInfo:
    hostname, kernel, distro, cores, total_mb = _static()
    load_1, load_5, load_15 = os.getloadavg()
    return common_pb2.SystemInfo(
        hostname=hostname,
        kernel=kernel,
        distribution=distro,
        cpu_cores=cores,
        cpu_frequency_mhz=_recent_cpu_frequency_mhz(),
        memory_total_mb=total_mb,
        memory_available_mb=_available_mb(),
        load_1=load_1,
        load_5=load_5,
        load_15=load_15,
        uptime_seconds=_uptime_seconds(),
    )


def capacity(
    settings: WorkerSettings, system: common_pb2.SystemInfo, share: Share = WHOLE
) -> common_pb2.Resources:
    """What this worker offers: its share (all, for one process) of the
    configured slots and of the machine's CPUs and RAM."""
    return common_pb2.Resources(
        slots=share.part(settings.worker_max_parallel_jobs),
        cpus=share.part(system.cpu_cores),
        ram_mb=share.part(system.memory_total_mb),
    )


def external_use(
    settings: WorkerSettings,
    system: common_pb2.SystemInfo,
    reserved_cpus: int,
    jobs_rss_bytes: int,
    share: Share = WHOLE,
) -> common_pb2.Resources:
    """Load and memory beyond what this worker's own jobs account for. A
    worker of several processes sees the load of its siblings' jobs too: each
    counts its share of the machine's load and memory in use, as if spread
    evenly, against its own jobs."""
    if not settings.dynamic_check_free_resources:
        return common_pb2.Resources()
    cpu_share = share.fraction(system.cpu_cores)
    ram_share = share.fraction(system.memory_total_mb)
    busy_cpus = math.floor(system.load_1 * settings.dynamic_cpu_load_scale_factor * cpu_share)
    used_mb = math.floor((system.memory_total_mb - system.memory_available_mb) * ram_share)
    return common_pb2.Resources(
        cpus=max(0, busy_cpus - reserved_cpus),
        ram_mb=max(0, used_mb - jobs_rss_bytes // MB),
    )
