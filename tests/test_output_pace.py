"""The pieces of paced output (kueue run holding a job to its reader's pace):
the server's read limit per attempt, and the worker's view of it. Pure, no I/O."""

from __future__ import annotations

import asyncio

from kueue.v1 import common_pb2
from kueue_server.attach_tap import OUTPUT_WINDOW, Tap, read_limit
from kueue_worker.attempts import Attempts, CwdCheck

OUT = common_pb2.OUTPUT_STREAM_STDOUT
ERR = common_pb2.OUTPUT_STREAM_STDERR


def tap(paced: bool = True) -> Tap:
    return Tap(1, asyncio.Event(), paced=paced)


def test_no_paced_client_no_limit() -> None:
    assert read_limit([], 1) == 0
    assert read_limit([tap(paced=False)], 1) == 0


def test_the_window_reaches_beyond_what_the_slowest_paced_client_consumed() -> None:
    fast, slow, unpaced = tap(), tap(), tap(paced=False)
    assert read_limit([fast, slow, unpaced], 1) == OUTPUT_WINDOW
    assert fast.output_ack(1, 10_000_000)
    assert slow.output_ack(1, 3_000)
    assert read_limit([fast, slow, unpaced], 1) == 3_000 + OUTPUT_WINDOW
    # A client that left no longer counts.
    assert read_limit([fast, unpaced], 1) == 10_000_000 + OUTPUT_WINDOW


def test_acks_only_grow_and_a_new_attempt_starts_from_nothing() -> None:
    t = tap()
    assert t.output_ack(1, 5_000)
    assert not t.output_ack(1, 4_000)  # late or repeated
    assert read_limit([t], 1) == 5_000 + OUTPUT_WINDOW
    # The job restarted: nothing of attempt 2 consumed yet.
    assert read_limit([t], 2) == OUTPUT_WINDOW
    assert t.output_ack(2, 100)
    assert not t.output_ack(1, 9_000)  # the lost attempt's last word
    assert read_limit([t], 2) == 100 + OUTPUT_WINDOW


def running(sm: Attempts, job_id: int) -> None:
    decision = sm.assign(job_id, 1, common_pb2.Resources(slots=1, cpus=1, ram_mb=10), "/", CwdCheck.OK)
    assert decision.start
    sm.started(job_id, 1, 100 + job_id)


def test_worker_holds_only_the_attempt_at_its_limit_counting_both_streams() -> None:
    sm = Attempts("w", max_slots=2)
    running(sm, 1)
    running(sm, 2)
    assert not sm.read_limited(1, 1)  # no window: no limit
    sm.output_window(1, 1, 1000)
    sm.output(1, 1, OUT, b"x" * 600)
    assert not sm.read_limited(1, 1)
    sm.output(1, 1, ERR, b"y" * 400)
    assert sm.read_limited(1, 1)
    sm.output(2, 1, OUT, b"z" * 5000)
    assert not sm.read_limited(2, 1)  # another job is not held back
    # Acknowledgements to the worker (durability) do not move the limit.
    sm.output_ack(1, 1, OUT, 600)
    assert sm.read_limited(1, 1)
    sm.output_window(1, 1, 2000)
    assert not sm.read_limited(1, 1)
    sm.output_window(1, 1, 1000)
    assert sm.read_limited(1, 1)
    sm.output_window(1, 1, 0)  # the client went away
    assert not sm.read_limited(1, 1)
    sm.output_window(9, 1, 10)  # unknown attempt: ignored
    assert not sm.read_limited(9, 1)
