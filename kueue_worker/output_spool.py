"""Spool files: job output the server has not acknowledged, past the
worker's memory bound, kept on disk until it is.

Each file is unlinked as soon as it is created and lives only as an open
descriptor: a worker that dies leaves nothing behind to clean up (its
attempts are given up anyway), and the kernel frees the space.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kueue_worker import identity
from kueue_worker.attempts import Key


class SpoolFile:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._size = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            # All or nothing: the caller keeps the data elsewhere.
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
            raise
        self._size += len(data)

    def read(self, position: int, size: int) -> bytes:
        parts = []
        while size > 0:
            data = os.pread(self._fd, size, position)
            if not data:
                raise OSError(f"spool file ends at {position}, {size} bytes short")
            parts.append(data)
            position += len(data)
            size -= len(data)
        return b"".join(parts)

    def remove(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def spool_path(data_dir: Path, name: str, hostname: str | None = None) -> Path:
    # Keyed like the id file, so a shared (NFS) home never mixes two hosts' spools.
    path = identity.id_path(data_dir, name, hostname)
    return path.with_name(path.name.removesuffix(".id") + ".spool")


class SpoolDir:
    """Where a worker's spool files go."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self, key: Key, stream: int, offset: int) -> SpoolFile:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        job_id, attempt = key
        fd, name = tempfile.mkstemp(prefix=f"{job_id}.{attempt}-{stream}-{offset}-", dir=self.path)
        os.unlink(name)
        return SpoolFile(fd)
