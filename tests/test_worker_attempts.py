"""The worker's attempt state machine, driven directly: no processes, no server."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker.attempts import STDIN_TAKE_BYTES, Attempts, CwdCheck, Key, Phase, Reservation, StdinResult

OUT = common_pb2.OUTPUT_STREAM_STDOUT
ERR = common_pb2.OUTPUT_STREAM_STDERR


def res(slots: int = 1, cpus: int = 1, ram_mb: int = 100) -> common_pb2.Resources:
    return common_pb2.Resources(slots=slots, cpus=cpus, ram_mb=ram_mb)


def accepted(sm: Attempts, job_id: int, attempt: int = 1, **kw: int) -> None:
    decision = sm.assign(job_id, attempt, res(**kw), "/work", CwdCheck.OK)
    # Started at once: the Started message is the acceptance.
    assert decision.start and decision.reply is None


def drain(sm: Attempts) -> list[wpb.Output | wpb.Finished]:
    """Everything the stream's writer would send now."""
    out = []
    for _ in range(10_000):
        msg = sm.next_message()
        if msg is None:
            return out
        out.append(msg)
    raise AssertionError("next_message never ran dry")


def resend(sm: Attempts) -> list[wpb.Output | wpb.Finished]:
    """What a new stream gets: everything unacknowledged."""
    sm.rewind()
    return drain(sm)


def exited(code: int) -> wpb.Finished:
    return wpb.Finished(exit_code=code, run_time_seconds=1.5, peak_memory_bytes=4096)


# -- accept / reject -------------------------------------------------------------


def test_accepts_and_reserves() -> None:
    sm = Attempts("w1", max_slots=4)
    decision = sm.assign(7, 1, res(slots=1, cpus=2, ram_mb=512), "/work", CwdCheck.OK)
    assert decision.start
    assert decision.reply is None  # Started answers it
    assert sm.get((7, 1)).phase is Phase.STARTING
    assert sm.reserved() == Reservation(slots=1, cpus=2, ram_mb=512)


def test_missing_cwd_is_a_permanent_rejection_naming_dir_and_worker() -> None:
    sm = Attempts("node7", max_slots=4)
    decision = sm.assign(7, 1, res(), "/no/such/dir", CwdCheck.MISSING)
    assert not decision.start
    assert not decision.reply.accepted
    assert not decision.reply.transient
    assert decision.reply.reason == "working directory /no/such/dir does not exist on node7"
    assert len(sm) == 0


def test_inaccessible_cwd_is_a_permanent_rejection() -> None:
    sm = Attempts("node7", max_slots=4)
    reply = sm.assign(7, 1, res(), "/root/x", CwdCheck.INACCESSIBLE).reply
    assert (reply.accepted, reply.transient) == (False, False)
    assert "/root/x" in reply.reason and "node7" in reply.reason


def test_full_slots_is_a_transient_rejection() -> None:
    sm = Attempts("w", max_slots=2)
    accepted(sm, 1)
    accepted(sm, 2)
    decision = sm.assign(3, 1, res(), "/work", CwdCheck.OK)
    assert not decision.start
    assert (decision.reply.accepted, decision.reply.transient) == (False, True)
    assert "2 of 2" in decision.reply.reason
    # A job needing more slots than are left is refused too.
    sm2 = Attempts("w", max_slots=3)
    accepted(sm2, 1)
    assert not sm2.assign(2, 1, res(slots=3), "/work", CwdCheck.OK).reply.accepted
    assert sm2.assign(2, 1, res(slots=2), "/work", CwdCheck.OK).start


def test_zero_slots_in_the_request_still_takes_one() -> None:
    sm = Attempts("w", max_slots=1)
    accepted(sm, 1, slots=0)
    assert not sm.assign(2, 1, res(slots=0), "/work", CwdCheck.OK).reply.accepted


def test_finish_frees_the_slot() -> None:
    sm = Attempts("w", max_slots=1)
    accepted(sm, 1)
    sm.started(1, 1, 100)
    sm.finish(1, 1, exited(0))
    assert sm.reserved() == Reservation()
    accepted(sm, 2)


def test_repeated_assign_is_accepted_without_a_second_start() -> None:
    sm = Attempts("w", max_slots=1)
    accepted(sm, 1)
    again = sm.assign(1, 1, res(), "/work", CwdCheck.OK)
    assert again.reply.accepted and not again.start
    assert len(sm) == 1


# -- prefetch: attempts held for the next free slot ------------------------------


def queued(sm: Attempts, job_id: int, attempt: int = 1, **kw: int) -> None:
    decision = sm.assign(job_id, attempt, res(**kw), "/work", CwdCheck.OK)
    assert not decision.start
    assert decision.reply == wpb.AssignmentReply(job_id=job_id, attempt=attempt, accepted=True, queued=True)


def test_full_slots_queue_up_to_prefetch_plus_slots_then_reject() -> None:
    sm = Attempts("w", max_slots=2, prefetch=1)
    accepted(sm, 1)
    accepted(sm, 2)
    # One for the prefetch, two for the slots the server may think free.
    for job_id in (3, 4, 5):
        queued(sm, job_id)
    assert sm.waiting == 3
    assert sm.get((3, 1)).phase is Phase.WAITING
    # Waiting attempts hold no reservation.
    assert sm.reserved().slots == 2
    decision = sm.assign(6, 1, res(), "/work", CwdCheck.OK)
    assert (decision.reply.accepted, decision.reply.transient, decision.start) == (False, True, False)
    # More slots than the worker has can never wait here.
    assert (
        not Attempts("w", max_slots=1, prefetch=4)
        .assign(1, 1, res(slots=2), "/w", CwdCheck.OK)
        .reply.accepted
    )


def test_waiting_attempts_start_oldest_first_as_slots_free() -> None:
    sm = Attempts("w", max_slots=1, prefetch=2)
    accepted(sm, 1)
    queued(sm, 2)
    queued(sm, 3)
    assert sm.next_to_start() is None  # the slot is taken
    sm.started(1, 1, 100)
    sm.finish(1, 1, exited(0))
    assert sm.next_to_start() == (2, 1)
    assert sm.get((2, 1)).phase is Phase.STARTING
    assert sm.next_to_start() is None  # 2 holds the only slot
    assert sm.started(2, 1, 101) == wpb.Started(job_id=2, attempt=1, pid=101)
    sm.finish(2, 1, exited(0))
    assert sm.next_to_start() == (3, 1)


def test_a_promoted_attempt_is_reported_started_after_the_finish_that_freed_its_slot() -> None:
    sm = Attempts("w", max_slots=1, prefetch=1)
    accepted(sm, 1)
    queued(sm, 2)
    sm.started(1, 1, 100)
    sm.output(1, 1, OUT, b"x" * 10)
    sm.finish(1, 1, exited(0))
    assert sm.next_to_start() == (2, 1)
    assert sm.started(2, 1, 101) == wpb.Started(job_id=2, attempt=1, pid=101)
    # Job 1's output and Finished first: the server sees the slot freed
    # before it sees it taken again.
    kinds = [type(m).__name__ for m in drain(sm)]
    assert kinds == ["Output", "Finished", "Started"]


def test_a_promoted_attempt_over_before_its_started_went_out_sends_only_its_finished() -> None:
    sm = Attempts("w", max_slots=1, prefetch=2)
    accepted(sm, 1)
    queued(sm, 2)
    queued(sm, 3)
    sm.started(1, 1, 100)
    sm.exited(1, 1)
    assert sm.next_to_start() == (2, 1)
    sm.started(2, 1, 101)
    sm.exited(2, 1)
    assert sm.next_to_start() == (3, 1)
    sm.started(3, 1, 102)
    sm.output(3, 1, OUT, b"x")
    sm.exited(3, 1)
    for job in (1, 2, 3):
        sm.finish(job, 1, exited(0))
    # Job 2 had no output: its Finished alone says it started and ended.
    # Job 3's output needs its Started before it.
    sent = [(type(m).__name__, m.job_id) for m in drain(sm)]
    assert sent == [("Finished", 1), ("Finished", 2), ("Started", 3), ("Output", 3), ("Finished", 3)]
    assert not sm.finishes_unsent()
    for job in (1, 2, 3):
        sm.finished_ack(job, 1)
    assert len(sm) == 0


def test_a_waiting_attempt_starts_only_when_its_cpus_and_ram_are_free_too() -> None:
    sm = Attempts("w", max_slots=4, prefetch=2)
    sm.capacity = Reservation(slots=4, cpus=4, ram_mb=1000)
    accepted(sm, 1, cpus=3)
    accepted(sm, 2, cpus=1)
    accepted(sm, 3, cpus=0)
    accepted(sm, 4, cpus=0)
    queued(sm, 5, cpus=2)
    sm.finish(3, 1, exited(0))
    assert sm.next_to_start() is None  # a slot is free, but 2 cpus are not
    sm.finish(1, 1, exited(0))
    assert sm.next_to_start() == (5, 1)


def test_a_job_offered_beyond_the_free_cpus_waits_instead_of_starting() -> None:
    # The server offers it only for the next free slot; a slot is free here
    # now, but its cpus are not: it must wait, not share them.
    sm = Attempts("w", max_slots=3, prefetch=2)
    sm.capacity = Reservation(slots=3, cpus=2, ram_mb=1000)
    accepted(sm, 1, cpus=2)
    queued(sm, 2, cpus=2)
    sm.finish(1, 1, exited(0))
    assert sm.next_to_start() == (2, 1)


def test_without_prefetch_a_job_whose_cpus_are_taken_is_refused_saying_so() -> None:
    sm = Attempts("w", max_slots=3)
    sm.capacity = Reservation(slots=3, cpus=2, ram_mb=1000)
    accepted(sm, 1, cpus=2)
    reply = sm.assign(2, 1, res(cpus=2), "/work", CwdCheck.OK).reply
    assert (reply.accepted, reply.transient) == (False, True)
    assert reply.reason == "its cpus or RAM are in use on w by running jobs"


def test_a_newcomer_does_not_overtake_waiting_attempts() -> None:
    sm = Attempts("w", max_slots=1, prefetch=2)
    accepted(sm, 1)
    queued(sm, 2)
    sm.started(1, 1, 100)
    sm.finish(1, 1, exited(0))
    # The slot is free, but job 2 was there first.
    queued(sm, 3)
    assert sm.next_to_start() == (2, 1)


def test_hand_back_takes_a_waiting_attempt_away_and_ignores_started_ones() -> None:
    sm = Attempts("w", max_slots=1, prefetch=2)
    accepted(sm, 1)
    queued(sm, 2)
    reply = sm.hand_back(2, 1)
    assert reply is not None and reply.handed_back and not reply.accepted
    assert (2, 1) not in sm and sm.waiting == 0
    assert sm.hand_back(1, 1) is None  # started: its Started tells the server
    assert sm.hand_back(9, 1) is None
    assert [r.job_id for r in sm.reports()] == [1]


def test_closing_hands_back_every_waiting_attempt_and_starts_none() -> None:
    sm = Attempts("w", max_slots=1, prefetch=3)
    accepted(sm, 1)
    queued(sm, 2)
    queued(sm, 3)
    sm.closing = True
    replies = sm.hand_back_all("worker w is draining")
    assert [(r.job_id, r.accepted, r.transient, r.reason) for r in replies] == [
        (2, False, True, "worker w is draining"),
        (3, False, True, "worker w is draining"),
    ]
    sm.finish(1, 1, exited(0))
    assert sm.next_to_start() is None


def test_waiting_attempts_are_reported_as_waiting_and_can_be_finished_unstarted() -> None:
    sm = Attempts("w", max_slots=1, prefetch=1)
    accepted(sm, 1)
    queued(sm, 2)
    reports = {r.job_id: r.waiting for r in sm.reports()}
    assert reports == {1: False, 2: True}
    # Killed before it started: it ends like any attempt, and frees its place.
    finished = sm.finish(2, 1, wpb.Finished(signal=9))
    assert finished is not None and finished.signal == 9
    assert sm.waiting == 0
    assert not [r for r in sm.reports() if r.waiting]


def test_without_prefetch_nothing_waits() -> None:
    sm = Attempts("w", max_slots=1)
    accepted(sm, 1)
    assert not sm.assign(2, 1, res(), "/work", CwdCheck.OK).reply.accepted
    assert sm.waiting == 0


def test_closing_turns_work_away_transiently() -> None:
    sm = Attempts("w", max_slots=4)
    sm.closing = True
    reply = sm.assign(1, 1, res(), "/work", CwdCheck.OK).reply
    assert (reply.accepted, reply.transient) == (False, True)
    assert "shutting down" in reply.reason


# -- lifecycle and output --------------------------------------------------------


def test_started_output_finish_messages() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 5, attempt=2)
    assert sm.started(5, 2, 4242) == wpb.Started(job_id=5, attempt=2, pid=4242)
    assert sm.started(5, 2, 4242) is None  # only once
    assert sm.output(5, 2, OUT, b"hello ")
    o1 = sm.next_message()
    assert (o1.job_id, o1.attempt, o1.stream, o1.offset, o1.data) == (5, 2, OUT, 0, b"hello ")
    assert sm.next_message() is None
    assert sm.output(5, 2, OUT, b"world\n")
    assert sm.output(5, 2, ERR, b"oops\n")
    # What waits is merged; the streams take turns.
    assert sm.next_message() == wpb.Output(job_id=5, attempt=2, stream=ERR, offset=0, data=b"oops\n")
    assert sm.next_message() == wpb.Output(job_id=5, attempt=2, stream=OUT, offset=6, data=b"world\n")
    assert sm.next_message() is None
    fin = sm.finish(5, 2, exited(3))
    assert fin.job_id == 5 and fin.attempt == 2
    assert fin.exit_code == 3 and fin.HasField("exit_code")
    assert (fin.stdout_bytes, fin.stderr_bytes) == (12, 5)
    assert fin.run_time_seconds == 1.5 and fin.peak_memory_bytes == 4096
    assert sm.get((5, 2)).phase is Phase.FINISHED
    assert drain(sm) == [fin]
    # Nothing more is accepted for a finished attempt.
    assert not sm.output(5, 2, OUT, b"late")
    assert sm.finish(5, 2, exited(0)) is None


def test_signal_finish_has_no_exit_code() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 1)
    sm.started(1, 1, 10)
    fin = sm.finish(1, 1, wpb.Finished(signal=9))
    assert not fin.HasField("exit_code") and fin.signal == 9


def test_start_failure_finishes_from_starting() -> None:
    sm = Attempts("w", max_slots=1)
    accepted(sm, 1)
    fin = sm.finish(1, 1, wpb.Finished(error="cannot start x: No such file or directory"))
    assert fin.error and not fin.HasField("exit_code")
    assert sm.reserved() == Reservation()


def test_messages_for_unknown_attempts_are_ignored() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 1, attempt=2)
    assert sm.started(1, 1, 5) is None
    assert not sm.output(1, 1, OUT, b"x")
    assert sm.finish(9, 1, exited(0)) is None
    sm.output_ack(9, 1, OUT, 10)
    sm.finished_ack(1, 1)
    assert not sm.kill(1, 1)
    assert len(sm) == 1


def test_kill_only_for_active_attempts() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 1)
    assert sm.kill(1, 1)
    assert sm.get((1, 1)).kill_requested
    sm.finish(1, 1, wpb.Finished(signal=15))
    assert not sm.kill(1, 1)


def test_acks_free_buffers_including_partial_chunks() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 1)
    sm.started(1, 1, 5)
    for part in (b"aaaa", b"bbbb", b"cccc"):
        sm.output(1, 1, OUT, part)
    sm.output(1, 1, ERR, b"EE")
    assert sm.unacked_bytes == 14
    sm.output_ack(1, 1, OUT, 6)  # in the middle of the second chunk
    log = sm.get((1, 1)).stdout
    assert (log.produced, log.acked, log.sent) == (12, 6, 6)
    assert sm.unacked_bytes == sm.memory_bytes == 8
    # Acknowledged bytes are not sent again, the rest from where the ack ends.
    assert resend(sm)[0] == wpb.Output(job_id=1, attempt=1, stream=OUT, offset=6, data=b"bbcccc")
    sm.output_ack(1, 1, OUT, 4)  # an old ack changes nothing
    assert sm.unacked_bytes == 8
    sm.output_ack(1, 1, OUT, 1000)  # beyond what was produced: clamp
    assert (log.acked, log.memory_bytes) == (12, 0)
    sm.output_ack(1, 1, ERR, 2)
    assert sm.unacked_bytes == sm.memory_bytes == 0


def test_finished_ack_forgets_the_attempt() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 1)
    sm.started(1, 1, 5)
    sm.output(1, 1, OUT, b"data")
    sm.finished_ack(1, 1)  # not finished yet: ignored
    assert (1, 1) in sm
    sm.finish(1, 1, exited(0))
    # The server acks a finish only after storing all output before it.
    sm.finished_ack(1, 1)
    assert (1, 1) not in sm
    assert sm.unacked_bytes == 0
    assert sm.reports() == [] and resend(sm) == []


# -- after a reconnect -------------------------------------------------------------


def test_reports_and_resend_after_reconnect() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 1)  # running with output partly acked
    sm.started(1, 1, 11)
    sm.output(1, 1, OUT, b"0123")
    sm.output(1, 1, OUT, b"4567")
    sm.output(1, 1, ERR, b"err")
    sm.output_ack(1, 1, OUT, 2)
    sm.output_ack(1, 1, ERR, 3)
    accepted(sm, 2)  # finished, not acked
    sm.started(2, 1, 12)
    sm.output(2, 1, ERR, b"bye")
    fin2 = sm.finish(2, 1, exited(1))
    accepted(sm, 3)  # accepted, not yet spawned

    reports = {(r.job_id, r.attempt): r for r in sm.reports()}
    assert set(reports) == {(1, 1), (2, 1), (3, 1)}
    r1 = reports[(1, 1)]
    assert (r1.stdout_offset, r1.stderr_offset, r1.HasField("finished")) == (8, 3, False)
    r2 = reports[(2, 1)]
    assert (r2.stdout_offset, r2.stderr_offset) == (0, 3)
    assert r2.finished == fin2
    assert not reports[(3, 1)].HasField("finished")

    again = resend(sm)
    assert again == [
        # Only from the first unacknowledged offset; small chunks merged.
        wpb.Output(job_id=1, attempt=1, stream=OUT, offset=2, data=b"234567"),
        wpb.Output(job_id=2, attempt=1, stream=ERR, offset=0, data=b"bye"),
        fin2,
    ]
    # Resending changes nothing: it is all still unacknowledged.
    assert resend(sm) == again


def test_resend_splits_large_backlogs() -> None:
    sm = Attempts("w", max_slots=1)
    accepted(sm, 1)
    sm.started(1, 1, 2)
    chunk = b"x" * (300 * 1024)
    for _ in range(10):
        sm.output(1, 1, OUT, chunk)
    msgs = resend(sm)
    assert len(msgs) > 1
    assert all(len(m.data) <= 1024 * 1024 for m in msgs)
    assert b"".join(m.data for m in msgs) == chunk * 10
    offsets = [m.offset for m in msgs]
    assert offsets == [sum(len(m.data) for m in msgs[:i]) for i in range(len(msgs))]


# -- stdin -------------------------------------------------------------------------


def piped(sm: Attempts, job_id: int, attempt: int = 1) -> None:
    decision = sm.assign(job_id, attempt, res(), "/work", CwdCheck.OK, stdin_pipe=True)
    assert decision.start


def ack(sm: Attempts, job_id: int, attempt: int = 1) -> int | None:
    msg = sm.stdin_ack(job_id, attempt)
    if msg is None:
        return None
    assert (msg.job_id, msg.attempt) == (job_id, attempt)
    return msg.offset


def test_stdin_is_queued_before_the_start_and_taken_merged() -> None:
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    assert sm.get((1, 1)).phase is Phase.STARTING
    assert sm.stdin_take(1, 1) is None  # nothing yet
    assert sm.stdin(1, 1, 0, b"ab", False) is StdinResult.QUEUED
    assert sm.stdin(1, 1, 2, b"cd", False) is StdinResult.QUEUED
    assert sm.stdin(1, 1, 4, b"ef", True) is StdinResult.QUEUED
    assert ack(sm, 1) is None  # nothing written, nothing owed
    sm.started(1, 1, 10)
    assert sm.stdin_take(1, 1) == b"abcdef"  # one write for many small messages
    sm.stdin_written(1, 1, 4)
    sm.stdin_written(1, 1, 2)
    assert ack(sm, 1) == 6
    assert ack(sm, 1) is None  # acks only when the position moves
    assert sm.stdin_take(1, 1) == b""  # end of file: close the pipe
    sm.stdin_closed(1, 1)
    assert ack(sm, 1) is None


def test_stdin_take_respects_the_limit_but_never_splits_a_chunk() -> None:
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    big = b"x" * (STDIN_TAKE_BYTES + 1)
    sm.stdin(1, 1, 0, big, False)
    sm.stdin(1, 1, len(big), b"y" * 10, False)
    sm.stdin(1, 1, len(big) + 10, b"z" * (STDIN_TAKE_BYTES - 5), False)
    assert sm.stdin_take(1, 1) == big
    assert sm.stdin_take(1, 1) == b"y" * 10  # the next one would pass the limit
    assert sm.stdin_take(1, 1) == b"z" * (STDIN_TAKE_BYTES - 5)
    assert sm.stdin_take(1, 1) is None


def test_stdin_repeats_and_overlaps_are_dropped_and_reacknowledged() -> None:
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    sm.stdin(1, 1, 0, b"hello", False)
    assert sm.stdin_take(1, 1) == b"hello"
    sm.stdin_written(1, 1, 5)
    assert ack(sm, 1) == 5
    # A resend after a reconnect: the sender may have missed the ack.
    assert sm.stdin(1, 1, 0, b"hello", False) is StdinResult.REPEAT
    assert ack(sm, 1) == 5
    assert sm.stdin(1, 1, 3, b"lo world", False) is StdinResult.QUEUED
    assert sm.stdin_take(1, 1) == b" world"
    assert sm.get((1, 1)).stdin.received == 11


def test_stdin_gap_is_not_written_but_its_eof_holds() -> None:
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    sm.stdin(1, 1, 0, b"abc", False)
    assert sm.stdin(1, 1, 5, b"fgh", True) is StdinResult.GAP
    assert ack(sm, 1) == 0  # tells the sender where we are
    assert sm.stdin_take(1, 1) == b"abc"
    assert sm.stdin_take(1, 1) == b""


def test_stdin_eof_at_offset_zero_closes_after_what_was_received() -> None:
    # The server's "the client is gone" comes as an empty eof at offset 0.
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    sm.stdin(1, 1, 0, b"abc", False)
    assert sm.stdin(1, 1, 0, b"", True) is StdinResult.QUEUED
    assert sm.stdin_take(1, 1) == b"abc"
    assert sm.stdin_take(1, 1) == b""
    assert sm.stdin(1, 1, 3, b"more", False) is StdinResult.AFTER_EOF


def test_stdin_after_the_pipe_closed_is_discarded_and_acknowledged() -> None:
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    sm.started(1, 1, 10)
    sm.stdin(1, 1, 0, b"x" * 100, False)
    assert sm.stdin_take(1, 1) == b"x" * 100
    sm.stdin_written(1, 1, 40)
    sm.stdin(1, 1, 100, b"y" * 50, False)
    sm.stdin_closed(1, 1)  # the job closed its stdin mid-write
    assert ack(sm, 1) == 150
    assert sm.stdin_take(1, 1) == b""
    assert sm.stdin(1, 1, 150, b"z" * 7, False) is StdinResult.DISCARDED
    assert ack(sm, 1) == 157
    assert sm.stdin(1, 1, 157, b"", True) is StdinResult.DISCARDED
    assert ack(sm, 1) == 157  # owed, though nothing moved
    sm.stdin_written(1, 1, 5)  # a late report changes nothing
    assert ack(sm, 1) is None


def test_finish_discards_unwritten_stdin_and_later_stdin_is_acknowledged() -> None:
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    sm.started(1, 1, 10)
    sm.stdin(1, 1, 0, b"a" * 10, False)
    sm.finish(1, 1, exited(0))
    assert ack(sm, 1) == 10
    assert sm.stdin(1, 1, 10, b"b" * 5, True) is StdinResult.DISCARDED
    assert ack(sm, 1) == 15
    sm.finished_ack(1, 1)
    assert sm.stdin(1, 1, 15, b"c", False) is StdinResult.UNKNOWN
    assert ack(sm, 1) is None


def test_stdin_without_a_pipe_is_discarded_and_unknown_attempts_ignored() -> None:
    sm = Attempts("w", max_slots=4)
    accepted(sm, 1)
    assert sm.stdin(1, 1, 0, b"abc", False) is StdinResult.DISCARDED
    assert sm.stdin_take(1, 1) == b""
    assert ack(sm, 1) == 3
    assert sm.stdin(2, 1, 0, b"abc", False) is StdinResult.UNKNOWN
    assert sm.stdin_take(2, 1) == b""
    assert ack(sm, 2) is None
    assert sm.stdin_positions() == []  # only attempts with a pipe report one


def test_stdin_positions_after_a_reconnect() -> None:
    sm = Attempts("w", max_slots=4)
    piped(sm, 1)
    piped(sm, 2)
    sm.stdin(1, 1, 0, b"abcd", False)
    sm.stdin_take(1, 1)
    sm.stdin_written(1, 1, 3)
    assert sm.stdin_positions() == [
        wpb.StdinAck(job_id=1, attempt=1, offset=3),
        wpb.StdinAck(job_id=2, attempt=1, offset=0),
    ]
    assert ack(sm, 1) is None  # the position was just reported


_stdin_op = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 60), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("take"), st.integers(1, 30)),
    st.tuples(st.just("write"), st.integers(0, 30)),
    st.tuples(st.just("close")),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=60, max_size=60), st.lists(_stdin_op, max_size=60))
def test_random_stdin_histories_write_a_prefix_of_the_stream(truth: bytes, ops: list[tuple]) -> None:
    sm = Attempts("w", max_slots=1)
    piped(sm, 1)
    taken = b""  # what the writer was given, in order
    written = 0
    last_ack = 0
    for op in ops:
        s = sm.get((1, 1)).stdin
        if op[0] == "send":
            offset, size = op[1], op[2]
            sm.stdin(1, 1, offset, truth[offset : offset + size], op[3])
        elif op[0] == "take":
            data = sm.stdin_take(1, 1, op[1])
            if data:
                taken += data
        elif op[0] == "write":
            before = s.written
            sm.stdin_written(1, 1, op[1])
            written = s.written
            assert written - before <= op[1]
        else:
            sm.stdin_closed(1, 1)
        s = sm.get((1, 1)).stdin
        assert s.written <= s.taken <= s.received <= len(truth)
        if not s.closed:
            assert taken == truth[: s.taken]
            assert b"".join(s.chunks) == truth[s.taken : s.received]
            assert s.written == written
        offset = ack(sm, 1)
        if offset is not None:
            assert offset >= last_ack
            last_ack = offset


# -- invariants over random histories ------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("assign"), st.integers(1, 4), st.integers(0, 2), st.booleans()),
    st.tuples(st.just("start"), st.integers(1, 4)),
    st.tuples(st.just("out"), st.integers(1, 4), st.sampled_from([OUT, ERR]), st.binary(max_size=20)),
    st.tuples(st.just("ack"), st.integers(1, 4), st.sampled_from([OUT, ERR]), st.integers(0, 100)),
    st.tuples(st.just("finish"), st.integers(1, 4)),
    st.tuples(st.just("fack"), st.integers(1, 4)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=60))
def test_random_histories_keep_the_books(ops: list[tuple]) -> None:
    sm = Attempts("w", max_slots=3)
    # What the job produced per (job, stream), to compare resends against.
    produced: dict[tuple[int, int], bytes] = {}
    for op in ops:
        kind, job = op[0], op[1]
        if kind == "assign":
            sm.assign(job, 1, res(slots=op[2]), "/w", CwdCheck.OK if op[3] else CwdCheck.MISSING)
        elif kind == "start":
            sm.started(job, 1, 100 + job)
        elif kind == "out":
            if sm.output(job, 1, op[2], op[3]):
                produced[(job, op[2])] = produced.get((job, op[2]), b"") + op[3]
        elif kind == "ack":
            sm.output_ack(job, 1, op[2], op[3])
        elif kind == "finish":
            sm.finish(job, 1, exited(0))
        else:
            a = sm.get((job, 1))
            sm.finished_ack(job, 1)
            if a is not None and a.phase is Phase.FINISHED:
                for stream in (OUT, ERR):
                    produced.pop((job, stream), None)

        assert sm.reserved().slots <= 3
        holders = [a.reservation for a in sm.active() if a.holds_slot]
        assert sm.reserved() == sum(holders, Reservation())
        total_unacked = 0
        for a in [sm.get(k) for k in [(j, 1) for j in range(1, 5)]]:
            if a is None:
                continue
            for stream, log in ((OUT, a.stdout), (ERR, a.stderr)):
                data = produced.get((a.job_id, stream), b"")
                assert log.produced == len(data)
                total_unacked += log.unacked_bytes
        assert sm.unacked_bytes == total_unacked
        for msg in resend(sm):
            if isinstance(msg, wpb.Output):
                data = produced[(msg.job_id, msg.stream)]
                assert data[msg.offset : msg.offset + len(msg.data)] == msg.data
            else:
                assert msg.stdout_bytes == len(produced.get((msg.job_id, OUT), b""))
                assert msg.stderr_bytes == len(produced.get((msg.job_id, ERR), b""))


# -- spilling past the memory bound ----------------------------------------------------


class Disk:
    """Spool files in memory on a disk of a given capacity (ENOSPC beyond it)."""

    def __init__(self, capacity: int = 1 << 40) -> None:
        self.capacity = capacity
        self.files: list[DiskFile] = []

    @property
    def used(self) -> int:
        return sum(len(f.data) for f in self.files if not f.removed)

    def open(self, key: tuple[int, int], stream: int, offset: int) -> DiskFile:
        f = DiskFile(self)
        self.files.append(f)
        return f


class DiskFile:
    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.data = bytearray()
        self.removed = False

    def write(self, data: bytes) -> None:
        assert not self.removed
        if self.disk.used + len(data) > self.disk.capacity:
            raise OSError(28, "No space left on device")
        self.data += data

    def read(self, position: int, size: int) -> bytes:
        assert not self.removed
        return bytes(self.data[position : position + size])

    def remove(self) -> None:
        self.removed = True


def test_output_beyond_the_memory_limit_goes_to_spool_files() -> None:
    disk = Disk()
    sm = Attempts("w", max_slots=2, memory_limit=100, spool=disk.open)
    accepted(sm, 1)
    sm.started(1, 1, 5)
    payload = bytes(range(256)) * 4
    for i in range(0, len(payload), 30):
        sm.output(1, 1, OUT, payload[i : i + 30])
    assert sm.unacked_bytes == len(payload)
    assert sm.memory_bytes <= 100
    assert disk.used == len(payload) - sm.memory_bytes
    # Everything goes out in order, memory and spool alike.
    msgs = drain(sm)
    assert b"".join(m.data for m in msgs) == payload
    # Once the server has the spooled part, its files go.
    sm.output_ack(1, 1, OUT, len(payload))
    assert sm.unacked_bytes == sm.memory_bytes == 0
    assert all(f.removed for f in disk.files)
    # With memory free again, new output stays in memory.
    sm.output(1, 1, OUT, b"more")
    assert sm.memory_bytes == 4 and len(disk.files) == 1


def test_spooled_output_is_resent_after_a_reconnect_and_freed_on_finish() -> None:
    disk = Disk()
    sm = Attempts("w", max_slots=2, memory_limit=10, spool=disk.open)
    accepted(sm, 1)
    sm.started(1, 1, 5)
    for i in range(20):
        sm.output(1, 1, ERR, b"%03d\n" % i)
    first = drain(sm)
    sm.output_ack(1, 1, ERR, 12)
    again = resend(sm)
    expected = b"".join(b"%03d\n" % i for i in range(20))
    assert b"".join(m.data for m in first) == expected
    assert again[0].offset == 12 and b"".join(m.data for m in again) == expected[12:]
    fin = sm.finish(1, 1, exited(0))
    assert resend(sm)[-1] == fin
    sm.finished_ack(1, 1)
    assert all(f.removed for f in disk.files)
    assert sm.unacked_bytes == sm.memory_bytes == 0


def test_a_full_disk_keeps_output_in_memory() -> None:
    disk = Disk(capacity=25)
    sm = Attempts("w", max_slots=2, memory_limit=10, spool=disk.open)
    accepted(sm, 1)
    sm.started(1, 1, 5)
    for _ in range(10):
        sm.output(1, 1, OUT, b"0123456789")
    # The disk took what fit (whole writes only); the rest is held in memory,
    # for the worker's memory ceiling to pause the job.
    assert disk.used == 20
    assert sm.memory_bytes == 80 and sm.unacked_bytes == 100
    assert b"".join(m.data for m in drain(sm)) == b"0123456789" * 10


def test_attempts_take_turns_and_a_finish_follows_its_output() -> None:
    sm = Attempts("w", max_slots=2)
    for job in (1, 2):
        accepted(sm, job)
        sm.started(job, 1, job)
    sm.output(1, 1, OUT, b"a" * 10)
    sm.output(2, 1, OUT, b"b" * 10)
    fin = sm.finish(1, 1, exited(0))
    msgs = [(m.job_id, len(m.data) if isinstance(m, wpb.Output) else "fin") for m in drain_limited(sm, 4)]
    assert msgs == [(1, 4), (2, 4), (1, 4), (2, 4), (1, 2), (2, 2), (1, "fin")]
    assert fin is not None


def drain_limited(sm: Attempts, limit: int) -> list[wpb.Output | wpb.Finished]:
    out = []
    for _ in range(1000):
        msg = sm.next_message(limit)
        if msg is None:
            return out
        out.append(msg)
    raise AssertionError("next_message never ran dry")


_spill_op = st.one_of(
    st.tuples(st.just("out"), st.sampled_from([OUT, ERR]), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("ack"), st.sampled_from([OUT, ERR]), st.integers(0, 400)),
    st.tuples(st.just("send"), st.integers(1, 64)),
    st.tuples(st.just("rewind"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_spill_op, max_size=80), st.integers(0, 120), st.integers(0, 200))
def test_random_spilling_histories_deliver_every_byte_once_acked(
    ops: list[tuple], memory_limit: int, capacity: int
) -> None:
    disk = Disk(capacity)
    sm = Attempts("w", max_slots=1, memory_limit=memory_limit, spool=disk.open)
    accepted(sm, 1)
    sm.started(1, 1, 5)
    produced = {OUT: b"", ERR: b""}
    # What the server would hold: contiguous prefix per stream.
    stored = {OUT: b"", ERR: b""}
    for kind, arg, *rest in ops:
        if kind == "out":
            sm.output(1, 1, arg, rest[0])
            produced[arg] += rest[0]
        elif kind == "ack":
            sm.output_ack(1, 1, arg, min(rest[0], len(stored[arg])))
        elif kind == "send":
            msg = sm.next_message(arg)
            if isinstance(msg, wpb.Output):
                data = produced[msg.stream]
                assert data[msg.offset : msg.offset + len(msg.data)] == msg.data
                if msg.offset <= len(stored[msg.stream]):
                    stored[msg.stream] = data[: max(len(stored[msg.stream]), msg.offset + len(msg.data))]
        else:
            sm.rewind()
        a = sm.get((1, 1))
        assert sm.unacked_bytes == a.stdout.unacked_bytes + a.stderr.unacked_bytes
        assert sm.memory_bytes == a.stdout.memory_bytes + a.stderr.memory_bytes
        assert 0 <= sm.memory_bytes <= sm.unacked_bytes
        assert disk.used <= capacity
    # A new stream gets exactly what is not acknowledged.
    for stream in (OUT, ERR):
        log = sm.get((1, 1)).log(stream)
        assert log.produced == len(produced[stream])
    by_stream = {OUT: b"", ERR: b""}
    for msg in resend(sm):
        log = sm.get((1, 1)).log(msg.stream)
        assert msg.offset == log.acked + len(by_stream[msg.stream])
        by_stream[msg.stream] += msg.data
    for stream in (OUT, ERR):
        log = sm.get((1, 1)).log(stream)
        assert by_stream[stream] == produced[stream][log.acked :]
    sm.finish(1, 1, exited(0))
    sm.finished_ack(1, 1)
    assert all(f.removed for f in disk.files)


_admit_op = st.tuples(
    st.sampled_from(["assign", "finish", "retract", "close"]),
    st.integers(0, 3),  # cpus asked for
    st.integers(0, 30),  # pick
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_admit_op, max_size=80), st.integers(0, 3))
def test_held_attempts_never_overcommit_slots_or_cpus(ops: list[tuple[str, int, int]], prefetch: int) -> None:
    """Whatever the server offers (it may offer beyond the free room, or from a
    stale view), the attempts holding a process never need more slots than the
    worker has, nor more cpus unless a single one runs; and held attempts
    start oldest first."""
    sm = Attempts("w", max_slots=2, prefetch=prefetch)
    sm.capacity = Reservation(slots=2, cpus=3, ram_mb=1000)
    next_id = 1
    order: list[Key] = []  # held, in the order accepted
    for kind, cpus, pick in ops:
        if kind == "assign":
            decision = sm.assign(next_id, 1, res(cpus=cpus, ram_mb=0), "/work", CwdCheck.OK)
            if decision.reply is not None and decision.reply.queued:
                order.append((next_id, 1))
            next_id += 1
        elif kind == "finish":
            running = [a for a in sm.active() if a.holds_slot]
            if running:
                a = running[pick % len(running)]
                sm.started(a.job_id, a.attempt, 100)
                sm.finish(a.job_id, a.attempt, exited(0))
        elif kind == "retract" and order:
            key = order[pick % len(order)]
            if sm.hand_back(*key) is not None:
                order.remove(key)
        elif kind == "close" and pick == 0:
            sm.closing = True
            sm.hand_back_all("closing")
            order.clear()
        while (key := sm.next_to_start()) is not None:
            assert key == order.pop(0), "a held attempt overtook an older one"
        held = sm.reserved()
        assert held.slots <= 2
        holders = [a for a in sm.active() if a.holds_slot]
        assert held == sum((a.reservation for a in holders), Reservation())
        assert len(holders) <= 1 or held.cpus <= 3
        assert sm.waiting == len(order) <= (prefetch + 2 if prefetch else 0)


_order_op = st.tuples(st.sampled_from(["assign", "started", "exit", "finish", "send"]), st.integers(0, 30))


@settings(max_examples=300, deadline=None)
@given(st.lists(_order_op, max_size=100), st.integers(0, 3))
def test_the_server_never_sees_more_jobs_running_than_slots(
    ops: list[tuple[str, int]], prefetch: int
) -> None:
    """A slot is free the moment its process exits, and a held attempt starts
    in it before the Finished of the one that left exists; in the messages the
    server reads, a Started still never comes before the Finished that freed
    its slot."""
    sm = Attempts("w", max_slots=2, prefetch=prefetch)
    seen_running: set[Key] = set()  # what the server makes of the messages

    def deliver(msg: wpb.Started | wpb.Finished | wpb.Output) -> None:
        if isinstance(msg, wpb.Started):
            seen_running.add((msg.job_id, msg.attempt))
        elif isinstance(msg, wpb.Finished):
            seen_running.discard((msg.job_id, msg.attempt))
        assert len(seen_running) <= 2, "the server sees more jobs running than the worker has slots"

    def send_all() -> None:
        while (msg := sm.next_message()) is not None:
            deliver(msg)

    next_id = 1
    for kind, pick in ops:
        if kind == "assign":
            sm.assign(next_id, 1, res(cpus=0, ram_mb=0), "/work", CwdCheck.OK)
            next_id += 1
        elif kind == "started":
            starting = [a for a in sm.active() if a.phase is Phase.STARTING]
            if starting:
                a = starting[pick % len(starting)]
                msg = sm.started(a.job_id, a.attempt, 100)
                assert msg is not None
                if not a.promoted:
                    deliver(msg)  # the worker writes it at once (Worker._emit)
        elif kind == "exit":
            running = [a for a in sm.active() if a.phase is Phase.RUNNING and not a.exited]
            if running:
                a = running[pick % len(running)]
                assert sm.exited(a.job_id, a.attempt)
                assert not sm.exited(a.job_id, a.attempt)  # once
        elif kind == "finish":
            gone = [a for a in sm.active() if a.exited]
            if gone:
                a = gone[pick % len(gone)]
                sm.finish(a.job_id, a.attempt, exited(0))
        else:
            send_all()
        while sm.next_to_start() is not None:
            pass
        assert sm.reserved().slots == sum(1 for a in sm.active() if a.holds_slot) <= 2
    # Everything ends and is said: the server's view is the worker's.
    for _ in range(4 * next_id):
        for a in sm.active():
            if a.phase is Phase.STARTING:
                msg = sm.started(a.job_id, a.attempt, 100)
                if msg is not None and not a.promoted:
                    deliver(msg)
            elif a.phase is Phase.RUNNING:
                sm.exited(a.job_id, a.attempt)
                sm.finish(a.job_id, a.attempt, exited(0))
        send_all()
        while sm.next_to_start() is not None:
            pass
    assert not sm.active() and not seen_running
