"""Starting a job's process: one fork-and-exec, as subprocess.Popen does it,
without the Python Popen wraps around it.

On the worker's event loop every spawn blocks everything else, and for a
short job Popen's own Python (argument checks, encoding the environment and
every candidate path, /dev/null opened and closed, the error pipe, the
object) cost as much as the fork and exec. This calls the same
_posixsubprocess.fork_exec Popen calls, with the same arguments Popen would
pass for `start_new_session=True, close_fds=True, restore_signals=True` (so
the child gets the same default signal dispositions, session, closed file
descriptors and cwd change, done in the child before the exec), and reads
the exec's failure from the error pipe the way Popen does. The candidate
paths of a command without a slash are kept per PATH and name. Where
fork_exec's signature is not the one checked here (another Python), Popen
does the spawn.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

try:
    import _posixsubprocess
except ImportError:  # not POSIX
    _posixsubprocess = None  # type: ignore[assignment]

# fork_exec's positional arguments are the same from 3.11 to 3.13 (read off
# their subprocess.py); elsewhere Popen spawns.
LEAN = _posixsubprocess is not None and (3, 11) <= sys.version_info[:2] <= (3, 13)

_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()
# Candidate paths of a command without a slash, per (PATH, command), as
# Popen computes them at every spawn; bounded, since PATH comes from jobs.
# Each comes with when it was computed (see _executables).
_candidates: dict[tuple[str | None, str], tuple[tuple[bytes, ...], float]] = {}
MAX_CANDIDATE_ENTRIES = 256
# How long the directory a command was found in is tried first.
FOUND_SECONDS = 1.0
_devnull: tuple[int, int] = (-1, -1)  # (pid that opened it, fd)
# A split block: its entries, its PATH's value, the worker's own names encoded.
_Head = tuple[list[bytes], bytes | None, frozenset[bytes]]
# Environment blocks split, by all but their last entry and the names the
# worker sets (Environ.from_block); bounded in count and size, as the blocks
# come from jobs (an environment may take 4 MB): a larger one is split anew.
_heads: dict[tuple[bytes, tuple[str, ...]], _Head] = {}
MAX_HEADS = 32
MAX_HEAD_BYTES = 32 * 1024


def encode_environment(env: Mapping[str, str]) -> list[bytes]:
    """KEY=VALUE entries as the exec takes them (what Popen makes of env=)."""
    for key in env:
        if "=" in key:
            raise ValueError(f"illegal environment variable name {key!r}")
    entries = [f"{key}={value}" for key, value in env.items()]
    # One encode of the whole instead of one per entry: a third of the cost.
    joined = "\0".join(entries)
    if joined.count("\0") != len(entries) - 1:
        # A NUL inside: entry by entry, so that the exec refuses it as before.
        return [entry.encode(_ENCODING, _ERRORS) for entry in entries]
    return joined.encode(_ENCODING, _ERRORS).split(b"\0") if entries else []


# Whether a block the server encoded (UTF-8) is what encode_environment
# would make here.
BLOCKS_MATCH = (_ENCODING, _ERRORS) == ("utf-8", "surrogateescape")


@dataclass(slots=True)
class Environ:
    """A job's environment as the exec takes it, and its PATH (where the
    command is looked up)."""

    entries: list[bytes]
    path: str | None

    @classmethod
    def of(cls, env: Mapping[str, str]) -> Environ:
        return cls(encode_environment(env), env.get("PATH"))

    @classmethod
    def from_block(cls, block: bytes, own: Mapping[str, str]) -> Environ:
        """A block of KEY=VALUE entries each ended by a NUL (Assign.environ),
        with `own` added in place of any entries of the same names."""
        if block and not block.endswith(b"\0"):
            block += b"\0"
        # The members of an array differ in their last entry only (the
        # server appends KUEUE_ARRAY_ID or KUEUE_ENTRY): the rest is split
        # once per array. Splitting 38 entries cost the loop about 15 us a
        # job, the lookup of the split head and the last entry about 8.
        cut = block.rfind(b"\0", 0, len(block) - 1) + 1
        head, last = block[:cut], block[cut:-1]
        own_names = tuple(own)
        key = (head, own_names)
        parsed = _heads.get(key)
        if parsed is None:
            parsed = _split_head(head, own_names)
            if len(head) <= MAX_HEAD_BYTES:
                if len(_heads) >= MAX_HEADS:
                    _heads.clear()
                _heads[key] = parsed
        head_entries, path_value, names = parsed
        entries = head_entries.copy()
        if last:
            name, eq, value = last.partition(b"=")
            if not (eq and name in names):
                entries.append(last)
            if eq and name == b"PATH":
                path_value = value
        entries += encode_environment(own)
        path = own.get("PATH")
        if path is None and path_value is not None:
            path = path_value.decode(_ENCODING, _ERRORS)
        return cls(entries, path)

    def as_dict(self) -> dict[str, str]:
        pairs = (entry.decode(_ENCODING, _ERRORS).partition("=") for entry in self.entries)
        return {key: value for key, _, value in pairs}


def _split_head(block: bytes, own: tuple[str, ...]) -> _Head:
    """The entries of a block (each ended by a NUL) without those of the
    names in `own`, the value of its (last) PATH entry if any, and those
    names encoded."""
    # With a NUL in front every entry follows one: one search finds PATH
    # and any of the names in `own` (the server leaves those out).
    marked = b"\0" + block
    finder, names = _finder(own)
    found = {m[1]: m.end() for m in finder.finditer(marked)}
    entries = block.split(b"\0")
    entries.pop()  # what follows the last NUL: nothing
    if not names.isdisjoint(found):
        entries = [e for e in entries if not _named(e, names)]
    path = None
    if b"PATH" in found:
        start = found[b"PATH"]
        path = marked[start : marked.index(b"\0", start)]
    return entries, path, names


def _named(entry: bytes, names: frozenset[bytes]) -> bool:
    name, eq, _ = entry.partition(b"=")
    return bool(eq) and name in names


@functools.cache
def _finder(own: tuple[str, ...]) -> tuple[re.Pattern[bytes], frozenset[bytes]]:
    """What finds PATH and the names in `own` at the start of an entry; those names encoded."""
    names = frozenset(name.encode(_ENCODING, _ERRORS) for name in own)
    alternatives = sorted(names | {b"PATH"}, key=len, reverse=True)
    return re.compile(b"\\0(" + b"|".join(map(re.escape, alternatives)) + b")="), names


def devnull() -> int:
    """A descriptor of /dev/null kept open for the child's stdio (Popen opens one per spawn)."""
    global _devnull
    pid, fd = _devnull
    if pid != os.getpid():  # a forked test process gets its own
        fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        _devnull = (os.getpid(), fd)
    return fd


def _executables(program: str, path: str | None) -> tuple[bytes, ...]:
    """What the child tries to exec, in order (as Popen and os.execvpe search PATH).

    As a shell's command hash does, the directory the command was last found
    in comes first, for FOUND_SECONDS: the loop waits in the vfork while the
    child tries each directory before it (about 1.5 us each; PATHs of 15 are
    common). The whole PATH follows, so a command moved away is still found;
    one newly put in an earlier directory is seen within FOUND_SECONDS.
    """
    if "/" in program:
        return (os.fsencode(program),)
    key = (path, program)
    now = time.monotonic()
    cached = _candidates.get(key)
    if cached is not None and now - cached[1] < FOUND_SECONDS:
        return cached[0]
    name = os.fsencode(program)
    dirs = os.get_exec_path({"PATH": path} if path is not None else {})
    found = tuple(os.path.join(os.fsencode(d), name) for d in dirs)
    first = _first_executable(found)
    if first:
        found = (found[first], *found)
    if len(_candidates) >= MAX_CANDIDATE_ENTRIES:
        _candidates.clear()
    _candidates[key] = (found, now)
    return found


def existing_program(program: str, path: str | None, cwd: str | None) -> str | None:
    """The first file among the places the exec of `program` tried
    (_executables; relative ones from cwd) that exists, or None. After an
    exec that failed with ENOENT, a file found here had a #! interpreter
    that was not."""
    base = os.fsencode(cwd) if cwd else b""
    for candidate in _executables(program, path):
        full = os.path.join(base, candidate)
        if os.path.isfile(full):
            return os.fsdecode(full)
    return None


def interpreter_of(path: str) -> str | None:
    """The interpreter a script's #! line names, as the kernel reads it (up
    to a space, a tab or the line's end: a carriage return of Windows line
    ends is part of the name), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].lstrip(b" \t")
    name = line.replace(b"\t", b" ").split(b" ", 1)[0]
    return os.fsdecode(name) if name else None


def _first_executable(candidates: tuple[bytes, ...]) -> int | None:
    """Where the exec would succeed, as far as the worker can tell; None if
    not found or if a directory is relative (the child's cwd decides that)."""
    for i, candidate in enumerate(candidates):
        if not candidate.startswith(b"/"):
            return None
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return i
    return None


def spawn(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | Environ,
    stdin: int,
    stdout: int,
    stderr: int,
) -> tuple[int, tuple[int, int] | None]:
    """Start argv in a session of its own with these descriptors as 0, 1 and 2
    and every other one closed; its pid, and CLOCK_BOOTTIME (ns) just before
    and just after its fork, between which its start time lies (None where
    unknown).

    Raises OSError as Popen does when the exec or the chdir fails (the
    filename is the program, or the cwd for a failed chdir), ValueError for
    an environment Popen would refuse. The caller reaps the process.
    """
    if not LEAN:
        if isinstance(env, Environ):
            env = env.as_dict()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True
        )
        _forget(proc)
        return proc.pid, None
    if not isinstance(env, Environ):
        env = Environ.of(env)
    executables = _executables(argv[0], env.path)
    errpipe_read, errpipe_write = os.pipe2(os.O_CLOEXEC)
    # As Popen: the error pipe must not land on 0, 1 or 2 (a worker started
    # with those closed), which the child overwrites.
    low = []
    while errpipe_write < 3:
        low.append(errpipe_write)
        errpipe_write = os.dup(errpipe_write)
    for fd in low:
        os.close(fd)
    try:
        try:
            before = _boot_ns()
            pid = _posixsubprocess.fork_exec(
                argv,
                executables,
                True,  # close_fds
                (errpipe_write,),  # pass_fds
                cwd,
                env.entries,
                stdin,  # p2cread
                -1,  # p2cwrite
                -1,  # c2pread
                stdout,  # c2pwrite
                -1,  # errread
                stderr,  # errwrite
                errpipe_read,
                errpipe_write,
                True,  # restore_signals
                True,  # call_setsid
                -1,  # pgid_to_set
                None,  # gid
                None,  # extra_groups
                None,  # uid
                -1,  # child_umask
                None,  # preexec_fn
                getattr(subprocess, "_USE_VFORK", True),
            )
            after = _boot_ns()
        finally:
            os.close(errpipe_write)
        # EOF once the exec succeeded (the pipe is close-on-exec) or the child
        # gave up; with vfork that has happened before fork_exec returns.
        failure = bytearray()
        while part := os.read(errpipe_read, 50000):
            failure += part
            if len(failure) > 50000:
                break
    finally:
        os.close(errpipe_read)
    if failure:
        _reap_failed(pid)
        raise _child_error(bytes(failure), argv[0], cwd)
    return pid, ((before, after) if before >= 0 else None)


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def _boot_ns() -> int:
    """CLOCK_BOOTTIME in ns, the clock of a process's start time in /proc; -1 without it."""
    return -1 if _BOOTTIME is None else time.clock_gettime_ns(_BOOTTIME)


def _reap_failed(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _child_error(data: bytes, program: str, cwd: str | None) -> Exception:
    """The exception Popen raises for what the child wrote to the error pipe."""
    try:
        name, hex_errno, message = data.split(b":", 2)
        text = message.decode()
    except ValueError:
        return subprocess.SubprocessError(f"Bad exception data from child: {data!r}")
    kind = getattr(builtins, name.decode("ascii", "replace"), subprocess.SubprocessError)
    if isinstance(kind, type) and issubclass(kind, OSError) and hex_errno:
        number = int(hex_errno, 16)
        # "noexec": it failed before the exec, in the chdir.
        filename = cwd if text == "noexec" else program
        return kind(number, os.strerror(number) if number else "", filename)
    if isinstance(kind, type) and issubclass(kind, BaseException):
        return kind(text)
    return subprocess.SubprocessError(text)


def _forget(proc: subprocess.Popen[bytes]) -> None:
    # A Popen dropped while its process runs goes on subprocess's list of
    # processes to reap at the next Popen; the caller reaps this one itself.
    proc.returncode = 0
