"""`kueue log`: a job's captured output, whole, its last lines, or followed live.

Bytes are written as they are with os.write (binary safe, no text layer that
would buffer or re-encode). With --both, stdout goes to stdout and stderr to
stderr, each in its own order.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Sequence
from typing import Any

from kueue.v1 import common_pb2

STREAM_FDS = {"stdout": 1, "stderr": 2}
STREAM_NUMBERS = {"stdout": common_pb2.OUTPUT_STREAM_STDOUT, "stderr": common_pb2.OUTPUT_STREAM_STDERR}
FIRST_TAIL_BYTES = 64 * 1024


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Writes every byte to `fd`; also when it was left non-blocking by someone else."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


def last_lines_start(data: bytes, lines: int) -> int | None:
    """Index in `data` where its last `lines` lines begin (a final line without
    newline counts, as for tail -n); None when `data` holds fewer lines."""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        newline = data.rfind(b"\n", 0, pos)
        if newline < 0:
            return None
        pos = newline
    return pos + 1 if lines else len(data)


def tail_start(client: Any, job_id: int, stream: str, lines: int) -> int:
    """Byte offset in `stream` where its last `lines` lines begin: reads
    backwards from the end, a growing span at a time."""
    span = FIRST_TAIL_BYTES
    while True:
        first: int | None = None
        data = bytearray()
        for chunk in client.read_output(job_id, [stream], offset=-span, follow=False):
            if chunk.data:
                if first is None:
                    first = chunk.offset
                data += chunk.data
        if first is None:
            return 0  # nothing captured (yet)
        start = last_lines_start(bytes(data), lines)
        if start is not None:
            return first + start
        if first == 0 or len(data) < span:
            return first  # all that is kept holds fewer lines
        span *= 4


class _Printer:
    """Writes one read's chunks to their descriptors, noticing a new attempt."""

    def __init__(self, job_id: int, fds: dict[int, int], starts: dict[int, int]) -> None:
        self.job_id = job_id
        self.fds = fds
        # A chunk without a stream (older servers) belongs to the first one asked for.
        self.default_stream = next(iter(starts))
        self.positions = dict(starts)
        self.finished: common_pb2.Job | None = None

    def consume(self, chunks: Any) -> None:
        restarted = False
        for chunk in chunks:
            if chunk.data:
                stream = chunk.stream if chunk.stream in self.fds else self.default_stream
                position = self.positions.get(stream, 0)
                if chunk.offset < position and not restarted:
                    # The server starts over at 0 when the job restarted elsewhere.
                    restarted = True
                    sys.stderr.flush()
                    write_all(
                        2,
                        f"kueue: job {self.job_id} restarted (a new attempt); "
                        "output above is from the lost attempt\n".encode(),
                    )
                    self.positions = dict.fromkeys(self.positions, 0)
                write_all(self.fds[stream], chunk.data)
                self.positions[stream] = chunk.offset + len(chunk.data)
            if chunk.HasField("finished_job"):
                self.finished = chunk.finished_job


def print_output(
    client: Any,
    job_id: int,
    streams: Sequence[str],
    *,
    tail_lines: int | None = None,
    follow: bool = False,
) -> common_pb2.Job | None:
    """Prints the captured `streams` of a job (one: to stdout; both: each to
    its own descriptor); returns the finished job when following (else None)."""
    if tail_lines is None:
        starts = dict.fromkeys(streams, 0)
    else:
        starts = {s: tail_start(client, job_id, s, tail_lines) for s in streams}
    # One stream is the output (`kueue log --stderr 42 | grep x`); with both,
    # each goes where the job wrote it.
    fds = {STREAM_NUMBERS[s]: STREAM_FDS[s] if len(streams) > 1 else 1 for s in streams}
    # A read has one start offset: streams starting elsewhere need a read each.
    groups = [list(streams)] if len(set(starts.values())) == 1 else [[s] for s in streams]

    def read(group: list[str]) -> _Printer:
        printer = _Printer(job_id, fds, {STREAM_NUMBERS[s]: starts[s] for s in group})
        printer.consume(client.read_output(job_id, group, offset=starts[group[0]], follow=follow))
        return printer

    if len(groups) == 1 or not follow:
        printers = [read(group) for group in groups]
    else:
        # Following two streams from different offsets: one reader each.
        printers = _in_threads(read, groups)
    return next((p.finished for p in printers if p.finished is not None), None)


def _in_threads(read: Any, groups: list[list[str]]) -> list[_Printer]:
    results: list[Any] = [None] * len(groups)

    def work(i: int) -> None:
        try:
            results[i] = read(groups[i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(1, len(groups))]
    for thread in threads:
        thread.start()
    # In this thread, so that Ctrl-C or a closed pipe ends it all at once.
    results[0] = read(groups[0])
    for thread in threads:
        # Short waits keep Ctrl-C working in the main thread.
        while thread.is_alive():
            thread.join(0.2)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
