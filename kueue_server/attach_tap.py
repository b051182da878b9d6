"""The buffer between the worker stream and one attached client (kueue run),
and the pace such a client sets for the job's output."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# Bytes of output one attached client may lag behind before chunks are
# dropped (and later refilled from the captured files). A paced client
# never gets there: its job is held to OUTPUT_WINDOW (plus a read or two).
TAP_BUDGET = 16 * 1024 * 1024
# Output a worker may read beyond what the slowest paced client has consumed,
# like a pipe's buffer; several messages' worth, so that a client that keeps
# up never waits for its acknowledgement to travel to the worker and back.
OUTPUT_WINDOW = 4 * 1024 * 1024


@dataclass
class Chunk:
    attempt: int
    stream: int
    offset: int
    data: bytes


@dataclass
class StdinAck:
    attempt: int
    offset: int


@dataclass(eq=False)
class Tap:
    """What one attached client has yet to be sent, besides job changes."""

    job_id: int
    event: asyncio.Event
    items: deque[Chunk | StdinAck] = field(default_factory=deque)
    size: int = 0
    dropped: bool = False
    # The client sets the job's pace (AttachStart.paced_output); it has
    # consumed `consumed` bytes (both streams) of attempt `consumed_attempt`.
    paced: bool = False
    consumed_attempt: int = 0
    consumed: int = 0

    def output_ack(self, attempt: int, consumed: int) -> bool:
        """The client's OutputAck; whether it moved anything."""
        if attempt > self.consumed_attempt:
            self.consumed_attempt, self.consumed = attempt, consumed
            return True
        if attempt == self.consumed_attempt and consumed > self.consumed:
            self.consumed = consumed
            return True
        return False

    def put_output(self, chunk: Chunk) -> None:
        if self.size + len(chunk.data) > TAP_BUDGET:
            self.dropped = True  # the reader refills the gap from the files
            return
        self.items.append(chunk)
        self.size += len(chunk.data)
        self.event.set()

    def put_ack(self, ack: StdinAck) -> None:
        self.items.append(ack)
        self.event.set()

    def pop(self) -> Chunk | StdinAck | None:
        if not self.items:
            return None
        item = self.items.popleft()
        if isinstance(item, Chunk):
            self.size -= len(item.data)
        return item


def read_limit(taps: Iterable[Tap], attempt: int) -> int:
    """How much of the attempt's output (both streams) its worker may read:
    OUTPUT_WINDOW beyond what the slowest paced client has consumed; 0 (no
    limit) when no client is paced."""
    return min(
        ((t.consumed if t.consumed_attempt == attempt else 0) + OUTPUT_WINDOW for t in taps if t.paced),
        default=0,
    )
