"""The buffer between the worker stream and one attached client (kueue run)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

# Bytes of output one attached client may lag behind before chunks are
# dropped (and later refilled from the captured files).
TAP_BUDGET = 16 * 1024 * 1024


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
