"""Finding every living process of a job: what runs in its process group or
session, what it was seen to start, and all their descendants (children that
called setsid included). Shared by the runner's kill and memory samples and
the orphan reaper."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

import psutil

# (parent, group, session, zombie) of a process, as /proc/PID/stat gives them.
Stat = tuple[int, int, int, bool]


def _scan() -> dict[int, Stat] | None:
    """Every process's parent, group, session and whether it is a zombie,
    from one read of its /proc/PID/stat (None without /proc). A memory sample
    of a job scans them all: psutil plus getpgid() and getsid() for each took
    several times as long."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    found: dict[int, Stat] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # gone meanwhile
        try:
            data = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        try:
            # After the command name, which may hold anything, even ")".
            state, ppid, pgrp, sid = data[data.rindex(b")") + 2 :].split(None, 4)[:4]
            found[int(name)] = (int(ppid), int(pgrp), int(sid), state == b"Z")
        except ValueError:
            continue
    return found


def _scan_with_psutil() -> dict[int, Stat]:
    found: dict[int, Stat] = {}
    for proc in psutil.process_iter(["ppid"]):
        try:
            found[proc.pid] = (
                proc.info["ppid"] or 0,
                os.getpgid(proc.pid),
                os.getsid(proc.pid),
                proc.status() == psutil.STATUS_ZOMBIE,
            )
        except (OSError, psutil.Error):
            continue
    return found


def living_tree(
    group: int,
    *,
    admit: Callable[[psutil.Process], bool] = lambda proc: True,
    roots: Iterable[psutil.Process] = (),
) -> list[psutil.Process]:
    """Processes whose group or session is `group` (and that `admit` accepts),
    the `roots` still running, and their descendants; zombies and this process
    left out."""
    table = _scan()
    if table is None:
        table = _scan_with_psutil()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, psutil.Process | None] = {}
    for pid, (_, pgrp, sid, zombie) in table.items():
        if group in (pgrp, sid) and not zombie:
            try:
                proc = psutil.Process(pid)
            except psutil.Error:
                continue
            if admit(proc):
                found[pid] = proc
    for proc in roots:
        # is_running() also tells a reused pid from the process we saw.
        if proc.is_running():
            found[proc.pid] = proc
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found[child] = None
                stack.append(child)
    found.pop(os.getpid(), None)
    alive = []
    for pid, known in found.items():
        stat = table.get(pid)
        if stat is not None and stat[3]:
            continue  # a zombie
        with contextlib.suppress(psutil.Error):
            # A descendant gets its object now: seen in the scan, it was alive a moment ago.
            proc = known if known is not None else psutil.Process(pid)
            if stat is None and proc.status() == psutil.STATUS_ZOMBIE:
                continue  # a root the scan did not see
            alive.append(proc)
    return alive
