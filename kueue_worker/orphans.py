"""Attempts left behind by a previous run of this worker, and their end.

Each job runs in a session of its own, so when the worker process dies
(SIGKILL, a crash, the OOM killer) its jobs keep running with nobody reading
their output or reporting their end. The server learns of the death (the
worker times out, or comes back and reports no attempts) and queues those
jobs again: without more care the same job would then run twice at once.

So the worker keeps a small ledger of its running attempts next to its id
file (pid, the process's create_time, its process group): a line appended
whenever an attempt starts or ends (JSON lines: the owning worker first, then
"start" and "end" entries), compacted by an atomic rewrite once it has grown
well beyond the attempts it holds. An append is one write(2) of a short line,
so a crash of the worker never leaves half an entry; rewriting the whole file
at every start and end cost a millisecond each, more than a short job.
On start-up, before it
registers, the worker kills every recorded job tree still alive, then
registers reporting no attempts, and the server queues those jobs again at
once.

Semantics, honestly: the attempts of a crashed worker are lost and run again.
A lost attempt may have had side effects (it may even have completed just
before the crash, its Finished never acknowledged), so for those effects a
job runs at least once, not exactly once; its attempt number tells the runs
apart. Reattaching a restarted worker to its old attempts (their output pipes
died with it) is future work.

Pid reuse: a recorded process counts as ours only if its start time matches
(since boot on Linux, so that clock steps do not matter).
If the job's main process is gone but members of its group or session remain
(a background child), they count as ours only if their environment still
names the job and attempt. A worker killed in the instant between a spawn and
the ledger write leaves that one attempt unrecorded; such a job can still run
twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from kueue_worker import identity
from kueue_worker.process_tree import living_tree

log = logging.getLogger(__name__)

Key = tuple[int, int]

# Bounds on the start-up kill: the worker must come back, even if a process
# in uninterruptible sleep (hung NFS) survives SIGKILL.
MAX_GRACE_SECONDS = 10.0
SIGKILL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.05


# A recorded start time in seconds since boot matches within a clock tick.
SAME_START_SECONDS = 0.001
# Wall-clock start times may differ by clock steps (NTP) between the runs of
# a worker, but not by a reboot's worth: this tells a pid after a reboot apart.
SAME_WALL_START_SECONDS = 60.0
# Appended lines beyond twice the running attempts before the ledger is rewritten.
COMPACT_LINES = 200


@dataclass(frozen=True)
class Record:
    job_id: int
    attempt: int
    pid: int
    # Seconds since the epoch (subject to clock steps) and since boot (not).
    create_time: float
    pgid: int
    started_since_boot: float = -1.0


def _since_boot(pid: int) -> float:
    """The start of a process in seconds since boot, from /proc (Linux); -1 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # Fields after the command name (which may contain anything, even ")");
        # starttime is the 22nd field of the line, in clock ticks.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return -1.0


def start_times(proc: psutil.Process) -> tuple[float, float]:
    """The process's start in seconds since the epoch and since boot (-1 where unknown)."""
    return proc.create_time(), _since_boot(proc.pid)


def _same_start(proc: psutil.Process, create_time: float, since_boot: float) -> bool:
    wall, now_since_boot = start_times(proc)
    if since_boot >= 0 and now_since_boot >= 0:
        return abs(now_since_boot - since_boot) < SAME_START_SECONDS and abs(wall - create_time) < (
            SAME_WALL_START_SECONDS
        )
    return abs(wall - create_time) < 0.01


def ledger_path(data_dir: Path, name: str, hostname: str | None = None) -> Path:
    # Keyed like the id file, so a shared (NFS) home never mixes two hosts' ledgers.
    path = identity.id_path(data_dir, name, hostname)
    return path.with_name(path.name.removesuffix(".id") + ".attempts.json")


class Ledger:
    """The running attempts of this worker process, as kept on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[Key, Record] = {}
        self._warned = False
        self._me: dict[str, float] | None = None
        # Open for appending once this process has written the file afresh.
        self._file: BinaryIO | None = None
        self._lines = 0

    def record(self, job_id: int, attempt: int, pid: int) -> None:
        try:
            create_time, since_boot = start_times(psutil.Process(pid))
        except psutil.Error:
            # Already gone (and reaped by us, as its parent): nothing can be left to kill.
            return
        try:
            pgid = os.getpgid(pid)
        except OSError:
            pgid = pid
        rec = Record(job_id, attempt, pid, create_time, pgid, since_boot)
        self._records[(job_id, attempt)] = rec
        self._append({"start": _as_dict(rec)})

    def forget(self, job_id: int, attempt: int) -> None:
        if self._records.pop((job_id, attempt), None) is not None:
            self._append({"end": [job_id, attempt]})

    def _owner(self) -> dict[str, float]:
        # Read once per process (a fork in a test gets its own).
        if self._me is None or self._me["pid"] != os.getpid():
            me = psutil.Process()
            wall, since_boot = start_times(me)
            self._me = {"pid": me.pid, "create_time": wall, "started_since_boot": since_boot}
        return self._me

    def records(self) -> list[Record]:
        return list(self._records.values())

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _append(self, entry: dict[str, Any]) -> None:
        if self._file is None or self._lines > COMPACT_LINES + 2 * len(self._records):
            self._rewrite()
            return
        try:
            self._file.write(json.dumps(entry).encode() + b"\n")
        except OSError as exc:
            self._failed(exc)
            self.close()  # the next change rewrites the whole file
        else:
            self._lines += 1

    def _rewrite(self) -> None:
        self.close()
        lines = [json.dumps({"worker": self._owner()})]
        lines += [json.dumps({"start": _as_dict(r)}) for r in self._records.values()]
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
    # dataclasses.asdict deep-copies; this is written at every job start.
    return {f: getattr(rec, f) for f in _RECORD_FIELDS}


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


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
                pid=int(r["pid"]),
                create_time=float(r["create_time"]),
                pgid=int(r["pgid"]),
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


def tree(rec: Record) -> list[psutil.Process]:
    """Living processes of the recorded attempt: its group and session and their descendants."""
    leader_alive = False
    with contextlib.suppress(psutil.Error):
        leader_alive = _same_process(psutil.Process(rec.pid), rec.create_time, rec.started_since_boot)
    # Without the live leader the group id may have been reused by strangers.
    return living_tree(rec.pgid, admit=lambda proc: leader_alive or _names_attempt(proc, rec))


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
    for rec in records:
        procs = tree(rec)
        if procs:
            known.update((p.pid, p) for p in procs)
            _signal(procs, signal.SIGTERM)
            alive.append(rec)

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


def reap(path: Path, grace_seconds: float) -> list[Record]:
    """Kill the attempts a previous run of this worker left running, then clear the record.

    Called before registering, so the server queues those jobs again only once
    nothing of them runs here any more. Returns the attempts that were killed.
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
    killed = kill_trees(read(path), grace_seconds)
    for rec in killed:
        log.warning(
            "job %d attempt %d from a previous run of this worker killed: it cannot be supervised again",
            rec.job_id,
            rec.attempt,
        )
    # Left in place, the next ledger write replaces it anyway.
    with contextlib.suppress(OSError):
        path.unlink()
    return killed
