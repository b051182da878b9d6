"""When a process started, in a form that tells a reused pid apart.

psutil's create_time() is seconds since the epoch: the boot time plus the
start in clock ticks since boot. The boot time moves whenever the system
clock is stepped (NTP, a virtual machine resumed), so two readings of the
same process's create_time may differ by the step. On Linux the start since
boot, read from /proc, never changes: that is compared when known.
"""

from __future__ import annotations

import os

import psutil

# A recorded start time in seconds since boot matches within a clock tick.
SAME_START_SECONDS = 0.001
# Wall-clock start times may differ by clock steps between two readings, but
# not by a reboot's worth: this tells a pid after a reboot apart.
SAME_WALL_START_SECONDS = 60.0
# Where only wall-clock start times are known (not Linux).
SAME_WALL_START_WITHOUT_BOOT_SECONDS = 1.0


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100


# Like psutil's CLOCK_TICKS, so that the start times computed here equal its own.
CLOCK_TICKS = _clock_ticks()


def since_boot(pid: int) -> float:
    """The start of a process in seconds since boot, from /proc (Linux); -1 elsewhere."""
    try:
        # os.open/os.read: half the cost of open(), and the worker reads this at every job start.
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        # Fields after the command name (which may contain anything, even ")");
        # starttime is the 22nd field of the line, in clock ticks.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return int(fields[19]) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return -1.0


def start_times(proc: psutil.Process) -> tuple[float, float]:
    """The process's start in seconds since the epoch and since boot (-1 where unknown)."""
    return proc.create_time(), since_boot(proc.pid)


def same_start(
    proc: psutil.Process,
    create_time: float,
    started_since_boot: float,
    wall_tolerance: float = SAME_WALL_START_WITHOUT_BOOT_SECONDS,
) -> bool:
    """Whether proc started when recorded: by its start since boot where both
    are known, else by its wall-clock start within wall_tolerance."""
    wall, now_since_boot = start_times(proc)
    if started_since_boot >= 0 and now_since_boot >= 0:
        return abs(now_since_boot - started_since_boot) < SAME_START_SECONDS and (
            abs(wall - create_time) < SAME_WALL_START_SECONDS
        )
    return abs(wall - create_time) < wall_tolerance
