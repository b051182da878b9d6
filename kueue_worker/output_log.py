"""One output stream of an attempt: bytes produced, sent and acknowledged.

Pure bookkeeping: the bytes are held in memory or, when the caller says so,
in spool files it opens (kueue_worker/output_spool.py does the I/O). Offsets
count from the attempt's start:

    [0, acked)        stored by the server, forgotten here
    [acked, sent)     handed to the current stream, kept until acknowledged
    [sent, produced)  waiting to be sent

A new stream to the server rewinds `sent` to `acked`, so everything not
acknowledged goes again; the server drops what it already has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Consecutive small reads of a chatty job are merged in memory up to this
# size, so a long outage leaves few segments behind, not one per read.
MERGE_BYTES = 64 * 1024


class SpoolFile(Protocol):
    """Append-only storage of one segment; a failed write must leave it unchanged."""

    def write(self, data: bytes) -> None: ...

    def read(self, position: int, size: int) -> bytes: ...

    def remove(self) -> None: ...


# Opens a new spool file for a segment starting at the given stream offset.
SpoolOpener = Callable[[int], SpoolFile]


@dataclass
class _Segment:
    offset: int
    length: int
    # A read as it came (bytes, kept without a copy), or small reads merged (bytearray).
    data: bytes | bytearray | None = None
    file: SpoolFile | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length


class StreamLog:
    def __init__(self) -> None:
        self.produced = 0
        self.acked = 0
        self.sent = 0
        # Unacknowledged bytes held in memory (the rest is in spool files).
        self.memory_bytes = 0
        # Segments in offset order; [_head:] are live, _cursor holds `sent`.
        self._segments: list[_Segment | None] = []
        self._head = 0
        self._cursor = 0

    @property
    def unacked_bytes(self) -> int:
        return self.produced - self.acked

    @property
    def unsent_bytes(self) -> int:
        return self.produced - self.sent

    @property
    def spooled_bytes(self) -> int:
        return self.unacked_bytes - self.memory_bytes

    def _last(self) -> _Segment | None:
        return self._segments[-1] if len(self._segments) > self._head else None

    def append(self, data: bytes, spool: SpoolOpener | None = None) -> int:
        """Keep data, in a spool file if `spool` is given and works; returns
        the bytes it added to memory."""
        if not data:
            return 0
        last = self._last()
        if spool is not None:
            try:
                if last is not None and last.file is not None:
                    last.file.write(data)
                    last.length += len(data)
                else:
                    f = spool(self.produced)
                    try:
                        f.write(data)
                    except OSError:
                        f.remove()
                        raise
                    self._segments.append(_Segment(self.produced, len(data), file=f))
                self.produced += len(data)
                return 0
            except OSError:
                # A full or broken disk: memory it is, and the caller's memory
                # ceiling pauses the job's output if this goes on.
                pass
        if (
            last is not None
            and last.data is not None
            and last.length < MERGE_BYTES
            and len(data) < MERGE_BYTES
        ):
            if not isinstance(last.data, bytearray):
                last.data = bytearray(last.data)
            last.data += data
            last.length += len(data)
        else:
            kept = data if type(data) is bytes else bytes(data)  # never the caller's buffer
            self._segments.append(_Segment(self.produced, len(data), data=kept))
        self.produced += len(data)
        self.memory_bytes += len(data)
        return len(data)

    def ack(self, offset: int) -> tuple[int, int]:
        """Forget everything below offset; returns (bytes freed, of which in memory)."""
        offset = min(offset, self.produced)
        if offset <= self.acked:
            return 0, 0
        freed = offset - self.acked
        memory_before = self.memory_bytes
        self.acked = offset
        # The server may hold more than this stream sent (acks lost with an
        # earlier stream): no need to send it again.
        self.sent = max(self.sent, offset)
        segments = self._segments
        while self._head < len(segments):
            seg = segments[self._head]
            assert seg is not None
            if seg.end <= offset:
                self._drop(seg)
                segments[self._head] = None
                self._head += 1
                continue
            if seg.data is not None and seg.offset < offset:
                cut = offset - seg.offset
                if isinstance(seg.data, bytearray):
                    del seg.data[:cut]
                else:
                    seg.data = seg.data[cut:]
                seg.offset = offset
                seg.length -= cut
                self.memory_bytes -= cut
            # A spool file is removed whole once all of it is acknowledged.
            break
        self._cursor = max(self._cursor, self._head)
        self._advance_cursor()
        if self._head > 64 and self._head * 2 > len(segments):
            del segments[: self._head]
            self._cursor -= self._head
            self._head = 0
        return freed, memory_before - self.memory_bytes

    def _drop(self, seg: _Segment) -> None:
        if seg.data is not None:
            self.memory_bytes -= seg.length
        if seg.file is not None:
            seg.file.remove()

    def _advance_cursor(self) -> None:
        segments = self._segments
        while self._cursor < len(segments):
            seg = segments[self._cursor]
            assert seg is not None
            if seg.end > self.sent:
                return
            self._cursor += 1

    def take(self, limit: int) -> tuple[int, bytes] | None:
        """The next unsent bytes (at most limit) with their offset, now counted as sent."""
        if self.sent >= self.produced:
            return None
        start = self.sent
        parts: list[bytes] = []
        size = 0
        i = self._cursor
        segments = self._segments
        # The segment holding `sent` may have grown since (merged appends).
        while i > self._head and segments[i - 1].end > start:  # type: ignore[union-attr]
            i -= 1
        while i < len(segments) and size < limit:
            seg = segments[i]
            assert seg is not None
            pos = start + size - seg.offset
            n = min(seg.length - pos, limit - size)
            if seg.data is not None:
                if pos == 0 and n == seg.length and type(seg.data) is bytes:
                    piece = seg.data  # a whole read: sent as it is, no copy
                else:
                    piece = bytes(memoryview(seg.data)[pos : pos + n])
            else:
                assert seg.file is not None
                piece = seg.file.read(pos, n)
            parts.append(piece)
            size += n
            if pos + n < seg.length:
                break
            i += 1
        self.sent = start + size
        self._cursor = i
        return start, parts[0] if len(parts) == 1 else b"".join(parts)

    def rewind(self) -> None:
        """A new stream: everything not acknowledged is to be sent again."""
        self.sent = self.acked
        self._cursor = self._head

    def clear(self) -> int:
        """Forget everything (the attempt is done with); returns memory bytes freed."""
        freed = self.memory_bytes
        for seg in self._segments[self._head :]:
            if seg is not None and seg.file is not None:
                seg.file.remove()
        self._segments = []
        self._head = self._cursor = 0
        self.memory_bytes = 0
        self.acked = self.sent = self.produced
        return freed
