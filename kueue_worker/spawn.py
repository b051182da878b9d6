"""Starting a job's process: what subprocess.Popen does for the runner, at a
third of the worker's CPU.

Popen spends about 0.4 ms of the parent's CPU on a spawn (building the
environment and the list of PATH candidates in Python, an error pipe, a
/dev/null it opens itself), more than a short job costs anywhere else in the
worker. os.posix_spawn does the same in C. Its semantics are kept those of
the Popen call the runner made (`start_new_session=True`, `close_fds=True`,
`restore_signals=True`, `cwd`, `env`):

- the executable is looked up in the job's PATH as Popen does: candidates in
  order, the first error other than "not found" reported if none starts;
- SIGPIPE and SIGXFSZ (which Python ignores) are at their default in the job;
  what has a handler here is at its default, what is ignored stays ignored.
  One difference: glibc leaves its two internal signals (32 and 33, below
  SIGRTMIN, which glibc programs handle themselves) ignored, as in every
  program started by its system() or by Rust's Command;
- descriptors: Python's are not inheritable (PEP 446); any that is (made by
  an extension) is closed in the child, found by a look at /proc/self/fd;
- the working directory: posix_spawn has no chdir in Python 3.11, so the
  worker changes its own for the instant of the spawn (and the lookup, which
  Popen does in the new directory too) and returns at once. Only absolute
  working directories take this way; the worker's other threads (gRPC's, and
  the executor's check of a job's absolute cwd) use no relative paths.

Where posix_spawn cannot keep these (not Linux, a relative cwd, our stdio
descriptors numbered 0-2), Popen is used as before.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Python ignores these; subprocess's restore_signals puts them back to the default.
RESTORED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, n))
_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR)

_usable = sys.platform == "linux" and hasattr(os, "posix_spawn") and hasattr(os, "O_PATH")


class Child(Protocol):
    """What the runner needs of a started process (a Popen has it too)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """The exit status once it ended (and is reaped), negative for a signal; None while it runs."""
        ...

    def wait(self) -> int: ...


class SpawnedChild:
    """A process started by os.posix_spawn, reaped by poll() or wait()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:
            # Reaped by someone else (SIGCHLD ignored): as Popen, count it a success.
            self.returncode = 0
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


def start(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdin: int,
    stdout: int,
    stderr: int,
) -> Child:
    """Start argv in a new session with stdio from the given descriptors
    (or subprocess.DEVNULL); raises OSError as Popen does if it cannot."""
    global _usable
    stdio = (stdin, stdout, stderr)
    if (
        _usable
        and (not cwd or os.path.isabs(cwd))
        and all(fd == subprocess.DEVNULL or fd > 2 for fd in stdio)
    ):
        try:
            return SpawnedChild(_posix_spawn(argv, cwd, env, stdio))
        except NotImplementedError as exc:  # setsid: a C library without POSIX_SPAWN_SETSID
            log.info("posix_spawn cannot start a session here (%s); using subprocess", exc)
            _usable = False
    return subprocess.Popen(
        argv,
        cwd=cwd or None,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def _posix_spawn(argv: Sequence[str], cwd: str, env: Mapping[str, str], stdio: tuple[int, int, int]) -> int:
    actions: list[tuple[Any, ...]] = []
    for target, fd in enumerate(stdio):
        if fd == subprocess.DEVNULL:
            actions.append((os.POSIX_SPAWN_OPEN, target, os.devnull, os.O_RDWR, 0))
        else:
            actions.append((os.POSIX_SPAWN_DUP2, fd, target))
    # After the dup2s: one of our own may be among them.
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in inheritable_fds()]
    if not cwd:
        return _spawn_first(argv, env, actions)
    home = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(cwd)
        try:
            return _spawn_first(argv, env, actions)
        finally:
            _return_to(home)
    finally:
        os.close(home)


def _return_to(home: int) -> None:
    try:
        os.fchdir(home)
    except OSError as exc:  # pragma: no cover - the worker's own directory lost its search permission
        log.error("cannot return to the worker's working directory: %s", exc)


def _spawn_first(argv: Sequence[str], env: Mapping[str, str], actions: list[tuple[Any, ...]]) -> int:
    """Spawn the first of the executable's candidates that starts, like Popen's child."""
    executable = argv[0]
    if os.path.dirname(executable):
        candidates = [executable]
    else:
        # os.get_exec_path(env), without its warnings context: env has str keys only.
        path_list = env.get("PATH")
        dirs = (os.defpath if path_list is None else path_list).split(os.pathsep)
        candidates = [os.path.join(d, executable) for d in dirs]
    first_error: OSError | None = None
    for path in candidates:
        try:
            if len(candidates) > 1:
                os.stat(path)  # a missing one costs a stat here, not a spawn
            return os.posix_spawn(
                path, argv, env, file_actions=actions, setsid=True, setsigdef=RESTORED_SIGNALS
            )
        except OSError as exc:
            if len(candidates) == 1:
                raise
            if exc.errno not in _NOT_FOUND and first_error is None:
                first_error = exc
    if first_error is not None:
        raise first_error
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), executable)


def inheritable_fds() -> list[int]:
    """Our descriptors above 2 that a child would inherit (Popen's close_fds closes them)."""
    found = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    found.append(fd)
            except OSError:
                pass  # the directory's own descriptor, closed by now
    return found
