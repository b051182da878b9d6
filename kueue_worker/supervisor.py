"""kueue_worker run as several processes (worker_settings.worker_processes):
this process starts them, passes its SIGTERM and SIGINT on, and starts again
one that a signal killed. Each of them is a whole worker (shares.py).

The processes run in a process group of their own, so that a terminal's
Ctrl-C reaches them once, through here; they hold the read end of a pipe
whose write end only this process has, and stop as on SIGTERM when it
closes (this process was killed, say with SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from kueue_worker.shares import Share

log = logging.getLogger("kueue_worker")

# A process a signal killed is started again after this long...
RESTART_DELAY = 1.0
# ...unless it has died that way this many times in a row, each within
# QUICK_DEATH_SECONDS of its start: then the whole worker stops.
QUICK_DEATHS = 5
QUICK_DEATH_SECONDS = 60.0
PASSED_ON = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Child:
    share: Share
    name: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


def _noop(signum: int, frame: object) -> None:
    """A handler, so that the signal reaches the wake-up pipe instead of killing us."""


class Supervisor:
    def __init__(self, argv: list[str], config_path: str, count: int, base_name: str) -> None:
        # This process's arguments and config file, which each process is given too.
        self._argv = argv
        self._config_path = config_path
        self.children = [Child(share, share.worker_name(base_name)) for share in _shares(count)]
        self.stopping = False
        self.status = 0
        # The signals passed on to the processes.
        self._passed: set[int] = set()
        # The pipe the processes watch (run): they hold its read end, only we its write end.
        self._alive_read = self._alive_write = -1

    def run(self) -> int:
        self._alive_read, self._alive_write = os.pipe()
        wake_read, wake_write = os.pipe()
        for fd in (wake_read, wake_write):
            os.set_blocking(fd, False)
        previous = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        handlers = {s: signal.signal(s, _noop) for s in (*PASSED_ON, signal.SIGCHLD)}
        try:
            log.info(
                "running as %d worker processes: %s",
                len(self.children),
                ", ".join(child.name for child in self.children),
            )
            for child in self.children:
                self._start(child)
            while self._running():
                select.select([wake_read], [], [], self._timeout())
                with contextlib.suppress(BlockingIOError):
                    for signum in os.read(wake_read, 4096):
                        if signum in PASSED_ON:
                            self._received(signal.Signals(signum))
                self._reap()
                self._restart_due()
        finally:
            signal.set_wakeup_fd(previous)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            for fd in (wake_read, wake_write, self._alive_read, self._alive_write):
                os.close(fd)
        return self.status

    def _running(self) -> bool:
        return any(
            c.proc is not None or (c.restart_at is not None and not self.stopping) for c in self.children
        )

    def _timeout(self) -> float | None:
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due and not self.stopping else None

    def _start(self, child: Child) -> None:
        child.restart_at = None
        child.started_at = time.monotonic()
        child.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kueue_worker",
                *self._argv,
                "--config",
                self._config_path,
                "--process",
                str(child.share),
                "--supervisor-fd",
                str(self._alive_read),
            ],
            pass_fds=(self._alive_read,),
            process_group=0,
        )

    def _received(self, signum: signal.Signals) -> None:
        if not self.stopping:
            log.info("%s received: passing it on to the worker processes", signum.name)
        self._pass_on(signum)

    def _pass_on(self, signum: signal.Signals) -> None:
        self.stopping = True
        self._passed.add(signum)
        for child in self.children:
            child.restart_at = None
            if child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signum)

    def _stop_all(self, why: str, status: int) -> None:
        log.error("%s: stopping the other worker processes", why)
        self.status = max(self.status, status)
        self._pass_on(signal.SIGTERM)

    def _reap(self) -> None:
        for child in self.children:
            code = child.proc.poll() if child.proc is not None else None
            if code is None:
                continue
            child.proc = None
            if self.stopping:
                if code < 0 and -code in self._passed:
                    code = 0  # killed by the signal passed on (before its handler was set): as asked
                self.status = max(self.status, code if code >= 0 else 128 - code)
            elif code < 0:
                self._killed(child, signal.Signals(-code).name)
            else:
                self._stop_all(f"worker process {child.name} exited with status {code}", max(code, 1))

    def _killed(self, child: Child, signame: str) -> None:
        quick = time.monotonic() - child.started_at < QUICK_DEATH_SECONDS
        child.quick_deaths = child.quick_deaths + 1 if quick else 0
        if child.quick_deaths >= QUICK_DEATHS:
            self._stop_all(
                f"worker process {child.name} was killed by {signame} {child.quick_deaths} times in a row, "
                f"each within {QUICK_DEATH_SECONDS:g} s of its start",
                1,
            )
            return
        log.warning("worker process %s was killed by %s: starting it again", child.name, signame)
        child.restart_at = time.monotonic() + RESTART_DELAY

    def _restart_due(self) -> None:
        if self.stopping:
            return
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now:
                self._start(child)


def _shares(count: int) -> list[Share]:
    return [Share(i, count) for i in range(1, count + 1)]
