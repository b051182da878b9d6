"""Attempts left behind by a previous run of this worker, and their end.

Each job runs in a session of its own, so when the worker process dies
(SIGKILL, a crash, the OOM killer) its jobs keep running with nobody reading
their output or reporting their end. The server learns of the death (the
worker times out, or comes back and reports no attempts) and queues those
jobs again: without more care the same job would then run twice at once.

So the worker keeps a small ledger of its running attempts next to its id
file: JSON lines, the owning worker first, then for each attempt a "spawn"
entry written before its process is started, a "start" entry once it runs
(pid, the process's create_time, its process group) and an "end" entry when
it is over; compacted by an atomic rewrite once it has grown well beyond the
attempts it holds. An append is one write(2) of short lines, so a crash of
the worker never leaves half an entry; rewriting the whole file at every
start and end cost a millisecond each, more than a short job. The "start"
and "end" entries wait for the next write or the end of the loop's turn (a
job's entries take one or two writes rather than three), and what a crash
meanwhile loses is covered (see Ledger._append).

Every job process carries the worker's id in its environment
(KUEUE_WORKER_ID, beside KUEUE_JOB_ID and KUEUE_ATTEMPT). On start-up, before
it registers, the worker kills every attempt its ledger holds as not ended:
the recorded job tree, and every process of this user whose environment names
this worker and that attempt, with the trees of their sessions. The "spawn"
entry is what closes the window between a spawn and its "start" entry: a
worker killed in that instant leaves an attempt without a pid, whose
processes are found by their environment. Then the worker registers
reporting no attempts, and the server queues those jobs again at once.

Environments are read only at that start-up, and only after a crash that
left attempts not ended: one pass over the processes (about 50 ms for 500 of
them on a busy 2-core machine). The cost per job is one more short append
(about 10 us). Looking for every process with this worker's id instead would
need no "spawn" entry, but would also kill what jobs that ended normally left
behind on purpose (a daemon a job started); only attempts not ended are at
stake here.

Semantics, honestly: the attempts of a crashed worker are lost and run again.
A lost attempt may have had side effects (it may even have completed just
before the crash, its Finished never acknowledged), so for those effects a
job runs at least once, not exactly once; its attempt number tells the runs
apart. Reattaching a restarted worker to its old attempts (their output pipes
died with it) is future work.

Pid reuse: a recorded process counts as ours only if its start time matches
(since boot on Linux, so that clock steps do not matter); a process found by
its environment is ours by what it holds now, whatever its pid.
If the job's main process is gone but members of its group or session remain
(a background child), they count as ours only if their environment still
names the job and attempt.

What can still escape: processes of an attempt whose "start" entry was not
written (the worker killed in the instant after the spawn) that no longer
carry the environment, with no process that does in their session or among
their ancestors: a job run as `env -i ...`, say (or a process still between
fork and exec when the restarted worker looks, if its exec hangs for longer
than a restart takes). And nothing is known of attempts whose "spawn" entry
could not be written (the ledger's disk full or unwritable; the worker says
so in its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from kueue import process_start
from kueue.process_start import CLOCK_TICKS, start_times
from kueue.process_start import since_boot as _since_boot
from kueue_worker import identity
from kueue_worker.process_tree import living_tree
from kueue_worker.shares import Share

log = logging.getLogger(__name__)

Key = tuple[int, int]

# Bounds on the start-up kill: the worker must come back, even if a process
# in uninterruptible sleep (hung NFS) survives SIGKILL.
MAX_GRACE_SECONDS = 10.0
SIGKILL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05


# Appended lines beyond twice the running attempts before the ledger is
# rewritten (three a job: spawn, start, end).
COMPACT_LINES = 300

# Set in every job's environment to the worker's id (runner.environment).
WORKER_ID_VARIABLE = "KUEUE_WORKER_ID"


@dataclass(frozen=True)
class Record:
    job_id: int
    attempt: int
    # 0 while the process is being spawned: nothing known of it yet.
    pid: int = 0
    # Seconds since the epoch (subject to clock steps) and since boot (not).
    create_time: float = 0.0
    pgid: int = 0
    started_since_boot: float = -1.0

    @property
    def key(self) -> Key:
        return (self.job_id, self.attempt)


# The boot time (seconds since the epoch) moves with clock steps; it is read
# again after this long.
BOOT_TIME_SECONDS = 10.0


# Nanoseconds per clock tick, where a tick is a whole number of them.
_TICK_NS = 1_000_000_000 // CLOCK_TICKS if 1_000_000_000 % CLOCK_TICKS == 0 else 0


def _start_tick(spawned_between: tuple[int, int]) -> float:
    """The start in seconds since boot as /proc/PID/stat gives it (whole
    clock ticks, truncated), of a process started between these two
    CLOCK_BOOTTIME readings in ns; -1 if they fall in different ticks."""
    before, after = spawned_between
    if _TICK_NS == 0 or before < 0 or before // _TICK_NS != after // _TICK_NS:
        return -1.0
    return (before // _TICK_NS) / CLOCK_TICKS


_boot_time: tuple[float, float] = (-1.0, 0.0)  # (read at, in monotonic seconds; value)


def _boot_time_now() -> float:
    """psutil.boot_time(), read at most every BOOT_TIME_SECONDS: it scans all of /proc/stat."""
    global _boot_time
    read_at, value = _boot_time
    now = time.monotonic()
    if read_at < 0 or now - read_at > BOOT_TIME_SECONDS:
        value = psutil.boot_time()
        _boot_time = (now, value)
    return value


def _same_start(proc: psutil.Process, create_time: float, since_boot: float) -> bool:
    # Without a start since boot, the worker recorded create_time itself: exact.
    return process_start.same_start(proc, create_time, since_boot, wall_tolerance=0.01)


def ledger_path(data_dir: Path, name: str, hostname: str | None = None) -> Path:
    # Keyed like the id file, so a shared (NFS) home never mixes two hosts' ledgers.
    path = identity.id_path(data_dir, name, hostname)
    return path.with_name(path.name.removesuffix(".id") + ".attempts.json")


class Ledger:
    """The running attempts of this worker process, as kept on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # None: being spawned, its process not known yet.
        self._records: dict[Key, Record | None] = {}
        self._warned = False
        self._me: dict[str, float] | None = None
        # Open for appending once this process has written the file afresh.
        self._file: BinaryIO | None = None
        self._lines = 0
        # "start" and "end" entries not written yet (see _append).
        self._pending: list[str] = []
        # The loop whose turn's end writes them (None: none asked yet).
        self._flush_loop: asyncio.AbstractEventLoop | None = None

    def spawning(self, job_id: int, attempt: int) -> None:
        """Before the attempt's process is spawned: should this worker die
        before record(), a restart still knows to look for the attempt."""
        self._records[(job_id, attempt)] = None
        self._append(f'{{"spawn": [{job_id:d}, {attempt:d}]}}\n')

    def record(
        self, job_id: int, attempt: int, pid: int, spawned_between: tuple[int, int] | None = None
    ) -> None:
        """The attempt's process runs. With spawned_between (CLOCK_BOOTTIME in
        ns just before and after spawning it in a session of its own) its start
        time is known without reading /proc, unless a clock tick fell between."""
        since_boot = _start_tick(spawned_between) if spawned_between is not None else -1.0
        if since_boot >= 0:
            pgid = pid  # the leader of its own session and group
        else:
            # One read of /proc/PID/stat: this runs at every job start, where
            # psutil.Process(pid) cost more than the rest of the entry.
            since_boot = _since_boot(pid)
            try:
                pgid = os.getpgid(pid)
            except OSError:
                pgid = pid
        if since_boot >= 0:
            # As psutil.Process.create_time() computes it.
            create_time = since_boot + _boot_time_now()
        else:
            try:
                create_time, since_boot = start_times(psutil.Process(pid))
            except psutil.Error:
                # Already gone (and reaped by us, as its parent); the "spawn" entry
                # stays, for what it may have left running in the background.
                return
        rec = Record(job_id, attempt, pid, create_time, pgid, since_boot)
        self._records[(job_id, attempt)] = rec
        self._append(_start_line(rec), defer=True)

    def forget(self, job_id: int, attempt: int) -> None:
        if self._records.pop((job_id, attempt), None) is not None:
            self._append(f'{{"end": [{job_id:d}, {attempt:d}]}}\n', defer=True)

    def flush(self) -> None:
        """Write the entries held back (the worker's loop does at the end of its turn)."""
        self._flush_loop = None
        if self._pending:
            self._append("")

    def _owner(self) -> dict[str, float]:
        # Read once per process (a fork in a test gets its own).
        if self._me is None or self._me["pid"] != os.getpid():
            me = psutil.Process()
            wall, since_boot = start_times(me)
            self._me = {"pid": me.pid, "create_time": wall, "started_since_boot": since_boot}
        return self._me

    def records(self) -> list[Record]:
        """The attempts whose process is known."""
        return [r for r in self._records.values() if r is not None]

    def close(self) -> None:
        self.flush()
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _append(self, entry: str, defer: bool = False) -> None:
        """Append entries, lines of JSON made by the caller (json.dumps cost
        more than the write), in one write.

        A deferred entry ("start", "end") waits for the next write or the end
        of the loop's turn, so that a job's three entries take one or two
        writes rather than three. What a crash meanwhile loses is covered:
        without its "start" an attempt's processes are found by their
        environment, and without its "end" an ended attempt is only looked
        for again (as when the crash comes just before the end was known)."""
        if defer:
            self._pending.append(entry)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: at once
                self.flush()
                return
            if self._flush_loop is not loop:
                self._flush_loop = loop
                loop.call_soon(self.flush)
            return
        pending = self._pending
        lines = len(pending) + (1 if entry else 0)
        if pending:
            entry = "".join(pending) + entry
            pending.clear()
        if self._file is None or self._lines > COMPACT_LINES + 2 * len(self._records):
            self._rewrite()  # from the records, which hold what was pending
            return
        data = entry.encode()
        try:
            written = self._file.write(data)
            if written != len(data):
                # Cut short (a full disk): the rest must not follow on the same line.
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            self._failed(exc)
            self._close_file()  # the next change rewrites the whole file
        else:
            self._lines += lines

    def _rewrite(self) -> None:
        self._pending.clear()  # the records hold what they said
        self._close_file()
        lines = [json.dumps({"worker": self._owner()})]
        lines += [
            json.dumps({"spawn": list(key)} if r is None else {"start": _as_dict(r)})
            for key, r in self._records.items()
        ]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("\n".join(lines) + "\n")
            # Renamed in place: a crash mid-write never leaves half a ledger.
            os.replace(tmp, self.path)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open for appends
        except OSError as exc:
            self._failed(exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
        else:
            self._lines = len(lines)
            self._warned = False

    def _failed(self, exc: OSError) -> None:
        # Jobs go on; only the clean-up after a crash of this worker is at stake.
        if not self._warned:
            log.warning(
                "%s: cannot record the running attempts (%s); jobs of this worker may outlive a crash of it",
                self.path,
                exc.strerror,
            )
            self._warned = True


def _as_dict(rec: Record) -> dict[str, Any]:
    # dataclasses.asdict deep-copies.
    return {f: getattr(rec, f) for f in _RECORD_FIELDS}


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


def _start_line(rec: Record) -> str:
    """The "start" entry, as json.dumps({"start": _as_dict(rec)}) writes it, with a newline."""
    # repr() of a float is what json writes for it; the times are finite.
    return (
        f'{{"start": {{"job_id": {rec.job_id:d}, "attempt": {rec.attempt:d}, "pid": {rec.pid:d}, '
        f'"create_time": {float(rec.create_time)!r}, "pgid": {rec.pgid:d}, '
        f'"started_since_boot": {float(rec.started_since_boot)!r}}}}}\n'
    )


def _parse(text: str) -> tuple[dict[str, Any], dict[Key, dict[str, Any]]]:
    """The owner and the running attempts in a ledger's text (raises ValueError,
    KeyError, ...). Also reads the single JSON object older workers wrote."""
    lines = text.splitlines()
    if len(lines) == 1 and '"attempts"' in lines[0]:
        data = json.loads(lines[0])
        return data["worker"], {(int(r["job_id"]), int(r["attempt"])): r for r in data["attempts"]}
    owner = json.loads(lines[0])["worker"]
    running: dict[Key, dict[str, Any]] = {}
    for number, line in enumerate(lines[1:], 2):
        try:
            entry = json.loads(line)
        except ValueError:
            if number == len(lines):
                break  # cut short by a full disk: that entry never took effect
            raise
        if "start" in entry:
            r = entry["start"]
            running[(int(r["job_id"]), int(r["attempt"]))] = r
        elif "spawn" in entry:
            job_id, attempt = entry["spawn"]
            running[(int(job_id), int(attempt))] = {"job_id": job_id, "attempt": attempt}
        else:
            job_id, attempt = entry["end"]
            running.pop((int(job_id), int(attempt)), None)
    return owner, running


def _owner_alive(path: Path) -> int | None:
    """The pid of the worker that wrote the ledger if it still runs (and is not us)."""
    try:
        owner, _ = _parse(path.read_text())
        pid, create_time = int(owner["pid"]), float(owner["create_time"])
        since_boot = float(owner.get("started_since_boot", -1.0))
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if pid == os.getpid():
        return None
    with contextlib.suppress(psutil.Error):
        if _same_process(psutil.Process(pid), create_time, since_boot):
            return pid
    return None


def read(path: Path) -> list[Record]:
    """The recorded attempts; none if the file is missing or unreadable."""
    try:
        _, running = _parse(path.read_text())
        return [
            Record(
                job_id=int(r["job_id"]),
                attempt=int(r["attempt"]),
                pid=int(r.get("pid", 0)),
                create_time=float(r.get("create_time", 0.0)),
                pgid=int(r.get("pgid", 0)),
                started_since_boot=float(r.get("started_since_boot", -1.0)),
            )
            for r in running.values()
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        log.warning("%s: ignoring the unreadable record of running attempts: %s", path, exc)
        return []


def _same_process(proc: psutil.Process, create_time: float, since_boot: float) -> bool:
    with contextlib.suppress(psutil.Error):
        return _same_start(proc, create_time, since_boot) and proc.status() != psutil.STATUS_ZOMBIE
    return False


def _names_attempt(proc: psutil.Process, rec: Record) -> bool:
    try:
        env = proc.environ()
    except psutil.Error:
        return False
    return env.get("KUEUE_JOB_ID") == str(rec.job_id) and env.get("KUEUE_ATTEMPT") == str(rec.attempt)


def _leader_alive(rec: Record) -> bool:
    with contextlib.suppress(psutil.Error):
        return _same_process(psutil.Process(rec.pid), rec.create_time, rec.started_since_boot)
    return False


def tree(rec: Record) -> list[psutil.Process]:
    """Living processes of the recorded attempt: its group and session and their descendants."""
    if rec.pid <= 0:
        return []  # never got as far as its "start" entry: found_by_environment() looks for it
    leader_alive = _leader_alive(rec)
    # Without the live leader the group id may have been reused by strangers.
    return living_tree(rec.pgid, admit=lambda proc: leader_alive or _names_attempt(proc, rec))


def found_by_environment(worker_id: str, records: list[Record]) -> list[Record]:
    """The attempts' processes found by their environment (this worker's id,
    the job and the attempt), as records of their own: one for each session
    they are in that no record of the same attempt covers already.

    One pass over the processes; only this user's environments can be read.
    A process found this way lives now, so the id of its session cannot
    belong to a stranger: all that session holds is the attempt's.
    """
    wanted = {r.key for r in records}
    # tree() takes in all of a group whose recorded leader lives; without it, only what names the attempt.
    covered = {(r.key, r.pgid) for r in records if r.pid > 0 and _leader_alive(r)}
    found: dict[tuple[Key, int], Record] = {}
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            # Empty for a zombie; AccessDenied for another user's process.
            env = proc.environ()
            if env.get(WORKER_ID_VARIABLE) != worker_id:
                continue
            key = (int(env["KUEUE_JOB_ID"]), int(env["KUEUE_ATTEMPT"]))
            if key not in wanted:
                continue  # an attempt that ended: its leftovers are not at stake
            sid = os.getsid(proc.pid)
            wall, since_boot = start_times(proc)
        except (psutil.Error, OSError, KeyError, ValueError):
            continue
        if (key, sid) in covered:
            continue
        # The session's leader, if it is one of them, stands for the session.
        if (key, sid) not in found or proc.pid == sid:
            found[(key, sid)] = Record(key[0], key[1], proc.pid, wall, sid, since_boot)
    return list(found.values())


def _signal(procs: list[psutil.Process], signum: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signum)


def kill_trees(records: list[Record], grace_seconds: float) -> list[Record]:
    """SIGTERM the attempts' trees, SIGKILL what is left after the grace; the attempts that were alive.

    All at once, so that a restart waits for one grace time, not one per attempt.
    """
    alive = []
    # Every process seen stays a target: one that called setsid and lost its
    # parent is no longer found from the group, but is still the job's.
    known: dict[int, psutil.Process] = {}
    # Every tree is found before any signal: a process standing for a group
    # must not die before that group has been seen.
    for rec, procs in [(rec, tree(rec)) for rec in records]:
        if procs:
            known.update((p.pid, p) for p in procs)
            alive.append(rec)
    _signal(list(known.values()), signal.SIGTERM)

    def survivors() -> list[psutil.Process]:
        for rec in alive:
            known.update((p.pid, p) for p in tree(rec))
        # is_running() also tells a reused pid from the process we saw.
        for pid, proc in list(known.items()):
            try:
                gone = not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
            except psutil.Error:
                gone = True
            if gone:
                del known[pid]
        return list(known.values())

    deadline = time.monotonic() + min(max(grace_seconds, 0.0), MAX_GRACE_SECONDS)
    killed_at: float | None = None
    while procs := survivors():
        now = time.monotonic()
        if killed_at is None and now >= deadline:
            _signal(procs, signal.SIGKILL)
            killed_at = now
        elif killed_at is not None and now - killed_at > SIGKILL_WAIT_SECONDS:
            pids = ", ".join(str(p.pid) for p in procs)
            log.warning(
                "processes %s of a previous run of this worker survive SIGKILL; giving up on them", pids
            )
            break
        time.sleep(POLL_SECONDS)
    return alive


def previous_attempts(path: Path) -> list[Record]:
    """Attempts a previous run of this worker started and the server did not
    acknowledge the end of (read before reap(); none while that run is still
    alive)."""
    if _owner_alive(path) is not None:
        return []
    return [r for r in read(path) if r.pid > 0]


def reap(path: Path, grace_seconds: float, worker_id: str = "") -> list[Record]:
    """Kill the attempts a previous run of this worker left running, then clear the record.

    Called before registering, so the server queues those jobs again only once
    nothing of them runs here any more. With the worker's id, the processes
    of those attempts are also looked for by their environment. Returns the
    attempts that were killed (one record each).
    """
    owner = _owner_alive(path)
    if owner is not None:
        # A second worker of the same name on this host: its jobs are
        # supervised, and not ours to kill.
        log.error(
            "%s: worker process %d of the same name still runs; leaving its jobs alone "
            "(run one worker per name and host)",
            path,
            owner,
        )
        return []
    records = read(path)
    started = {r.key for r in records if r.pid > 0}
    if worker_id and records:
        records += found_by_environment(worker_id, records)
    killed: dict[Key, Record] = {}
    for rec in kill_trees(records, grace_seconds):
        killed.setdefault(rec.key, rec)
    for key in killed:
        log.warning(
            "job %d attempt %d from a previous run of this worker killed: it cannot be supervised again%s",
            *key,
            "" if key in started else " (its start was not recorded; found by its environment)",
        )
    # Left in place, the next ledger write replaces it anyway.
    with contextlib.suppress(OSError):
        path.unlink()
    return list(killed.values())


# Process names looked for beyond those running now: NAME/2 ... NAME/this.
MAX_PROCESSES = 256


def reap_dropped_processes(data_dir: Path, base_name: str, count: int, grace_seconds: float) -> list[Record]:
    """Kill the attempts that processes NAME/k, k > count, of an earlier run
    with more worker_processes left running when they crashed. No process of
    such a name starts now to reap them, and the server queues their jobs
    again once the name has been silent for worker_timeout_seconds: left
    running, they would run twice. A name whose process runs (its lock is
    held: another worker, or a supervisor not yet stopped) is left alone."""
    killed: list[Record] = []
    for index in range(count + 1, MAX_PROCESSES + 1):
        name = Share(index, index).worker_name(base_name)
        path = ledger_path(data_dir, name)
        if not path.exists():
            continue
        try:
            fd = identity.lock(data_dir, name)
        except identity.IdentityError:
            continue
        try:
            ended = reap(path, grace_seconds, identity.worker_id(data_dir, name))
        finally:
            if fd is not None:
                os.close(fd)
        if ended:
            # The lines of each job say "this worker": say which one.
            log.warning(
                "worker process %s is not run any more (%d process(es) now): the %d job(s) it left "
                "running were ended",
                name,
                count,
                len(ended),
            )
        killed += ended
    return killed
