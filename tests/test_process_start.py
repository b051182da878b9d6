"""A process's start time tells it from a reused pid, whatever the clock does."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

from kueue import process_start


def test_a_clock_step_does_not_make_a_process_someone_else() -> None:
    me = psutil.Process(os.getpid())
    wall, since_boot = process_start.start_times(me)
    if since_boot < 0:
        pytest.skip("no start since boot on this system (/proc)")
    assert process_start.same_start(me, wall, since_boot)
    # Recorded before a clock step of 30 s, either way.
    assert process_start.same_start(me, wall + 30.0, since_boot)
    assert process_start.same_start(me, wall - 30.0, since_boot)
    # A process started a tick later is another one, as is the same start a boot away.
    assert not process_start.same_start(me, wall, since_boot + 1.0 / process_start.CLOCK_TICKS)
    assert not process_start.same_start(me, wall - 86400.0, since_boot)


def test_without_a_start_since_boot_the_wall_clock_decides() -> None:
    me = psutil.Process(os.getpid())
    wall, _ = process_start.start_times(me)
    assert process_start.same_start(me, wall + 0.5, -1.0)
    assert not process_start.same_start(me, wall + 2.0, -1.0)
    assert not process_start.same_start(me, wall + 0.05, -1.0, wall_tolerance=0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_the_start_since_boot_is_psutil_s_own() -> None:
    me = psutil.Process(os.getpid())
    wall, since_boot = process_start.start_times(me)
    assert abs(wall - (since_boot + psutil.boot_time())) < 1.0 / process_start.CLOCK_TICKS + 1e-6
