"""Captured stdout/stderr: append-only segment files per job, attempt and stream.

A file is named `<attempt>-<stream>-<offset>` under `output/<job id>/`, where
offset is the position of its first byte in the attempt's full stream. Segments
hold at most cap/4 bytes; when the kept bytes of a stream exceed the cap the
oldest segments are deleted, so the tail is kept and readers can always tell
from the names where the kept bytes start. Only the store's writer thread
writes; readers in other threads only list and read.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

STREAMS = {1: "stdout", 2: "stderr"}
MAX_OPEN_FILES = 128


def _segments(job_dir: Path, attempt: int, stream: int) -> list[tuple[int, Path]]:
    prefix = f"{attempt}-{STREAMS[stream]}-"
    try:
        names = os.listdir(job_dir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name.startswith(prefix):
            try:
                found.append((int(name[len(prefix) :]), job_dir / name))
            except ValueError:
                continue
    found.sort()
    return found


class OutputFiles:
    def __init__(self, root: Path, cap_bytes: int) -> None:
        self.root = root
        self.cap = cap_bytes
        self.segment_size = max(1, cap_bytes // 4)
        root.mkdir(parents=True, exist_ok=True)
        # (job, attempt, stream) -> (segment start offset, open file, bytes in it)
        self._open: OrderedDict[tuple[int, int, int], tuple[int, BinaryIO, int]] = OrderedDict()

    def job_dir(self, job_id: int) -> Path:
        return self.root / str(job_id)

    # ---------------------------------------------------------------- writing

    def append(self, job_id: int, attempt: int, stream: int, offset: int, data: bytes) -> bool:
        """Write data that starts at `offset` of the stream; True if head bytes were dropped."""
        key = (job_id, attempt, stream)
        truncated = False
        while data:
            start, f, size = self._current(key, offset)
            if start + size > offset:
                # A retried write after a failed commit: skip what is there.
                skip = start + size - offset
                data, offset = data[skip:], offset + skip
                continue
            room = self.segment_size - size
            if room <= 0:
                self._close(key)
                truncated |= self._new_segment(key, offset)
                continue
            part, data = data[:room], data[room:]
            f.write(part)
            self._open[key] = (start, f, size + len(part))
            offset += len(part)
        return truncated

    def _current(self, key: tuple[int, int, int], offset: int) -> tuple[int, BinaryIO, int]:
        entry = self._open.get(key)
        if entry is not None:
            if entry[0] + entry[2] >= offset:
                self._open.move_to_end(key)
                return entry
            # Not contiguous (a gap after a lost worker buffer): names must
            # stay exact offsets, so start a new segment.
            self._close(key)
            self._new_segment(key, offset)
            return self._open[key]
        job_id, attempt, stream = key
        job_dir = self.job_dir(job_id)
        segments = _segments(job_dir, attempt, stream)
        if not segments:
            self._drop_older_attempts(job_id, attempt)
            self._new_segment(key, offset)
            return self._open[key]
        start, path = segments[-1]
        f = open(path, "ab")  # noqa: SIM115 - kept open across appends
        if start + f.tell() < offset:
            f.close()
            self._new_segment(key, offset)
        else:
            self._remember(key, (start, f, f.tell()))
        return self._open[key]

    def _new_segment(self, key: tuple[int, int, int], offset: int) -> bool:
        job_id, attempt, stream = key
        job_dir = self.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        f = open(job_dir / f"{attempt}-{STREAMS[stream]}-{offset}", "ab")  # noqa: SIM115
        self._remember(key, (offset, f, f.tell()))
        # Keep at most cap bytes: whole old segments go first.
        segments = _segments(job_dir, attempt, stream)
        truncated = False
        while len(segments) > 1 and (offset - segments[0][0]) + self.segment_size > self.cap:
            segments.pop(0)[1].unlink(missing_ok=True)
            truncated = True
        return truncated

    def _remember(self, key: tuple[int, int, int], entry: tuple[int, BinaryIO, int]) -> None:
        self._open[key] = entry
        while len(self._open) > MAX_OPEN_FILES:
            _, (_, f, _) = self._open.popitem(last=False)
            f.close()

    def _close(self, key: tuple[int, int, int]) -> None:
        entry = self._open.pop(key, None)
        if entry is not None:
            entry[1].close()  # may raise (disk full): the entry is gone either way

    def _drop_older_attempts(self, job_id: int, attempt: int) -> None:
        job_dir = self.job_dir(job_id)
        try:
            names = os.listdir(job_dir)
        except FileNotFoundError:
            return
        for name in names:
            head = name.split("-", 1)[0]
            if head.isdigit() and int(head) < attempt:
                (job_dir / name).unlink(missing_ok=True)

    def trim(self, job_id: int, attempt: int, stream: int, end: int) -> None:
        """Cut bytes past `end` (written before a crash, never committed)."""
        for start, path in _segments(self.job_dir(job_id), attempt, stream):
            if start >= end:
                path.unlink(missing_ok=True)
            elif path.stat().st_size > end - start:
                os.truncate(path, end - start)

    def flush(self) -> None:
        for _, f, _ in self._open.values():
            f.flush()

    def remove_job(self, job_id: int) -> None:
        for key in [k for k in self._open if k[0] == job_id]:
            self._close(key)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def remove_all_but(self, job_ids: set[int]) -> list[int]:
        """Remove the output of every job not in job_ids; the ids removed."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        gone = [int(name) for name in names if name.isdigit() and int(name) not in job_ids]
        for job_id in gone:
            self.remove_job(job_id)
        return gone

    def close(self) -> None:
        for key in list(self._open):
            try:
                self._close(key)
            except OSError:
                self._open.pop(key, None)


def read(
    root: Path, job_id: int, attempt: int, stream: int, offset: int, end: int, limit: int
) -> tuple[int, bytes]:
    """Up to `limit` bytes of [offset, end) of a stream, from what is kept.

    Returns the offset actually read from (later than asked when the head was
    dropped by the cap) and the bytes.
    """
    for _ in range(5):  # a segment may be dropped by the cap while we read
        segments = _segments(root / str(job_id), attempt, stream)
        if not segments:
            return offset, b""
        start_at = max(offset, segments[0][0])
        try:
            return start_at, _read_segments(segments, start_at, min(end, start_at + limit))
        except FileNotFoundError:
            continue
    return offset, b""


def _read_segments(segments: list[tuple[int, Path]], pos: int, stop: int) -> bytes:
    chunks: list[bytes] = []
    for i, (start, path) in enumerate(segments):
        seg_end = segments[i + 1][0] if i + 1 < len(segments) else stop
        if pos >= stop:
            break
        if seg_end <= pos:
            continue
        with open(path, "rb") as f:
            f.seek(pos - start)
            chunk = f.read(min(seg_end, stop) - pos)
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)
