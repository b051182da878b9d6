"""kueue_worker.output_log.StreamLog: one output stream's bytes, kept until acknowledged."""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from kueue_worker import output_log
from kueue_worker.output_log import MERGE_BYTES, StreamLog


def test_a_large_read_is_sent_as_it_came_without_a_copy() -> None:
    log = StreamLog()
    data = bytes(range(256)) * (MERGE_BYTES // 256 + 1)
    log.append(data)
    offset, taken = log.take(len(data))  # type: ignore[misc]
    assert offset == 0 and taken is data
    assert log.memory_bytes == len(data)


def test_small_reads_are_merged_and_a_callers_buffer_is_never_kept() -> None:
    log = StreamLog()
    buf = bytearray(b"abc")
    log.append(buf)
    buf[:] = b"xyz"  # the caller reuses its buffer
    log.append(b"def")
    assert log.take(100) == (0, b"abcdef")


def test_a_partial_ack_of_a_large_read_keeps_the_rest() -> None:
    log = StreamLog()
    data = b"a" * MERGE_BYTES + b"b" * 10
    log.append(data)
    assert log.take(MERGE_BYTES) == (0, b"a" * MERGE_BYTES)
    assert log.ack(MERGE_BYTES - 5) == (MERGE_BYTES - 5, MERGE_BYTES - 5)
    assert log.memory_bytes == 15
    log.rewind()
    assert log.take(100) == (MERGE_BYTES - 5, b"a" * 5 + b"b" * 10)


_op = st.one_of(
    st.tuples(st.just("out"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("ack"), st.integers(0, 400)),
    st.tuples(st.just("send"), st.integers(1, 64)),
    st.tuples(st.just("rewind"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=80))
def test_random_histories_of_large_and_small_reads_deliver_every_byte(ops: list[tuple]) -> None:
    # A small merge size makes both kinds of segment (kept reads, merged
    # reads) and every mix of them out of short test data.
    with mock.patch.object(output_log, "MERGE_BYTES", 16):
        log = StreamLog()
        produced = b""
        stored = b""  # what the server would hold
        for kind, arg in ops:
            if kind == "out":
                log.append(arg)
                produced += arg
            elif kind == "ack":
                log.ack(min(arg, len(stored)))
            elif kind == "send":
                chunk = log.take(arg)
                if chunk is not None:
                    offset, data = chunk
                    assert 0 < len(data) <= arg
                    assert produced[offset : offset + len(data)] == data
                    if offset <= len(stored):
                        stored = produced[: max(len(stored), offset + len(data))]
            else:
                log.rewind()
            assert log.produced == len(produced)
            assert log.memory_bytes == log.unacked_bytes
        log.rewind()
        rest = b""
        while (chunk := log.take(64)) is not None:
            assert chunk[0] == log.acked + len(rest)
            rest += chunk[1]
        assert rest == produced[log.acked :]
