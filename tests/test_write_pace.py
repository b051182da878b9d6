"""The batching writers' pause after a write: short for a quiet stream, longer for a busy one."""

from __future__ import annotations

from kueue import write_pace


def test_a_quiet_stream_waits_briefly_and_a_busy_one_longer() -> None:
    quiet = [write_pace.after_batch(n) for n in range(1, write_pace.BUSY_MESSAGES)]
    busy = [write_pace.after_batch(n) for n in (write_pace.BUSY_MESSAGES, 100, 255)]
    assert set(quiet) == {write_pace.QUIET_SECONDS}
    assert set(busy) == {write_pace.BUSY_SECONDS}
    # An attached `kueue run` (a few messages at a time) is never slowed to the busy pace.
    assert write_pace.QUIET_SECONDS < write_pace.BUSY_SECONDS
    assert write_pace.BUSY_MESSAGES > 3
