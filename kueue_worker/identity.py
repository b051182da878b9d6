"""The worker's stable id, kept across restarts so the server recognises it
(and the attempts it reports) after the worker process comes back.

Home directories are often shared over NFS between machines, so the file is
keyed by host and worker name: two machines never share an id.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import uuid
from pathlib import Path

from kueue import process_lock

log = logging.getLogger(__name__)


class IdentityError(Exception):
    """The id file cannot be read or written; the message says where."""


def id_path(data_dir: Path, name: str, hostname: str | None = None) -> Path:
    host = hostname or socket.gethostname()
    # A worker name may contain characters a file name must not.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{host}-{name}")
    return data_dir / "workers" / f"{safe}.id"


def lock(data_dir: Path, name: str, hostname: str | None = None) -> int | None:
    """Hold the lock on this host's worker `name` for the life of the process
    (returns its descriptor; None where the file system has no locks). Two
    workers with one identity would reap each other's jobs and fight over one
    stream; the second one must not start."""
    path = id_path(data_dir, name, hostname).with_suffix(".lock")
    try:
        return process_lock.hold(path, str(os.getpid()))
    except process_lock.Held as held:
        raise IdentityError(
            f"a kueue_worker named {name!r} already runs on this host"
            f"{f' (pid {held.holder})' if held.holder.isdigit() else ''} with data in {data_dir}; "
            "stop it first, or give this one another --name"
        ) from None
    except process_lock.Unsupported as exc:
        # Run unguarded rather than not at all.
        log.warning("%s: cannot lock (%s); not guarding against a second worker named %r", path, exc, name)
        return None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot open the worker's lock file: {exc.strerror}") from exc


def _valid(text: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{32}", text) is not None


def worker_id(data_dir: Path, name: str, hostname: str | None = None) -> str:
    """Read the id, creating it (a uuid4 hex) on first start."""
    path = id_path(data_dir, name, hostname)
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the worker id: {exc.strerror}") from exc
    if existing is not None and _valid(existing):
        return existing
    new = uuid.uuid4().hex
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed in place: a crash never leaves half an id.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(new + "\n")
        if existing is None:
            try:
                # link() fails if another worker with the same host and name
                # created the file meanwhile (over NFS too); then use theirs.
                os.link(tmp, path)
            except FileExistsError:
                return worker_id(data_dir, name, hostname)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        else:
            os.replace(tmp, path)
    except OSError as exc:
        raise IdentityError(f"{path}: cannot store the worker id: {exc.strerror}") from exc
    return new
