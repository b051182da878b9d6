"""A lock file held for the life of a process, so that a second copy of a
program on the same state (a worker identity, a server's store) does not
start. flock: on NFS it maps to a byte-range lock, which works across hosts
where the server supports locks."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Held(Exception):
    """Another process holds the lock; `holder` is what it wrote there."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class Unsupported(Exception):
    """The file system has no locks (some NFS set-ups); the OSError is the cause."""


def hold(path: Path, owner: str) -> int:
    """Lock `path` (created, with its directory) and write `owner` in it; the
    descriptor, to keep open for as long as the lock is to hold.

    Raises Held, Unsupported, or OSError when the file cannot be opened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        raise Held(holder) from None
    except OSError as exc:
        os.close(fd)
        raise Unsupported(str(exc)) from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{owner}\n".encode(), 0)
    return fd
