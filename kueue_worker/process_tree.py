"""Finding every living process of a job: what runs in its process group or
session, what it was seen to start, and all their descendants (children that
called setsid included). Shared by the runner's kill and the orphan reaper."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

import psutil


def living_tree(
    group: int,
    *,
    admit: Callable[[psutil.Process], bool] = lambda proc: True,
    roots: Iterable[psutil.Process] = (),
) -> list[psutil.Process]:
    """Processes whose group or session is `group` (and that `admit` accepts),
    the `roots` still running, and their descendants; zombies and this process
    left out."""
    children: dict[int, list[psutil.Process]] = {}
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info["ppid"]
        if ppid is not None:
            children.setdefault(ppid, []).append(proc)
        try:
            member = group in (os.getpgid(proc.pid), os.getsid(proc.pid))
        except OSError:
            continue
        if member and admit(proc):
            found[proc.pid] = proc
    for proc in roots:
        # is_running() also tells a reused pid from the process we saw.
        if proc.is_running():
            found[proc.pid] = proc
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child.pid not in found:
                found[child.pid] = child
                stack.append(child.pid)
    found.pop(os.getpid(), None)
    alive = []
    for proc in found.values():
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive
