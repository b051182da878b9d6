"""The live views end to end: `kueue ls --watch` and `kueue top` run in a real
pseudo-terminal against a real cluster; what they draw is fed through a
terminal emulator (pyte) and the screen is read like a user would."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pyte
import pytest

from kueue.v1 import common_pb2
from tests.cluster import Cluster, _env, wait_for

SHOW_CURSOR = b"\x1b[?25h"
HIDE_CURSOR = b"\x1b[?25l"
ENTER_ALT_SCREEN = b"\x1b[?1049h"
LEAVE_ALT_SCREEN = b"\x1b[?1049l"
SGR = re.compile(rb"\x1b\[([0-9;:]*)m")  # style and colour codes
# A job that waits (at most 60 s) for a file to appear in its directory.
WAIT_FOR = "i=0; while [ ! -e {0} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; [ -e {0} ]"


def _controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """`kueue ARGS...` on a pseudo-terminal of cols x rows, its output kept
    both raw and as the screen a terminal would show."""

    def __init__(
        self, cluster: Cluster, *args: str, cols: int = 120, rows: int = 30, env: dict[str, str] | None = None
    ) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.cooked = termios.tcgetattr(self.slave)
        # The tty's mode as the program left it (taken when it exits).
        self.left_mode: list[object] | None = None
        extra_env = env
        env = _env()
        env["TERM"] = "xterm-256color"
        for name in ("COLUMNS", "LINES", "NO_COLOR"):
            env.pop(name, None)
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kueue_client", "--config", str(cluster.client_config), *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_tty,
        )
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the last process on the slave side is gone
                return
            if not data:
                return
            with self._lock:
                self.raw += data
                self._stream.feed(data)

    def lines(self) -> list[str]:
        with self._lock:
            return list(self.screen.display)

    def text(self) -> str:
        return "\n".join(self.lines())

    def row(self, job_id: int) -> str:
        """The table row of a job ('' when not on the screen)."""
        for line in self.lines():
            parts = line.split()
            if parts[:1] == [str(job_id)] and len(parts) > 1 and parts[1].startswith(("/", "...")):
                return line
        return ""

    def wait(self, predicate: object, what: str, timeout: float = 60.0) -> None:
        def check() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"kueue exited with {self.proc.returncode}:\n{self.text()}")
            return bool(predicate())  # type: ignore[operator]

        try:
            wait_for(check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- screen ---\n{self.text()}") from None

    def resize(self, cols: int, rows: int) -> None:
        """As a terminal window does: the kernel signals SIGWINCH to the program."""
        with self._lock:
            self.screen.resize(rows, cols)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def exit_status(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        # The program is gone: keep the mode it left the tty in, then close
        # our end of the slave, so that the reader gets EIO as soon as it has
        # read everything (while the slave is open it would wait for more).
        if self.slave >= 0:
            self.left_mode = termios.tcgetattr(self.slave)
            os.close(self.slave)
            self.slave = -1
        self._reader.join(10)
        assert not self._reader.is_alive(), "the program's output did not end"
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1
        self._reader.join(10)
        os.close(self.master)

    def assert_restored(self) -> None:
        """After the program left: the main screen is back, the cursor shown,
        and the tty in the mode it was in before (cooked, echoing)."""

        def since_last_draw() -> bytes:
            with self._lock:
                return bytes(self.raw[self.raw.rfind(HIDE_CURSOR) :])

        # A stopped process has written it; our reader may lag behind.
        wait_for(lambda: LEAVE_ALT_SCREEN in since_last_draw(), 10, "the main screen back")
        with self._lock:
            raw = bytes(self.raw)
        last_draw = raw.rfind(HIDE_CURSOR)
        assert raw.count(ENTER_ALT_SCREEN) >= 1 and last_draw >= 0, raw[-500:]
        tail = raw[last_draw:]
        assert SHOW_CURSOR in tail and LEAVE_ALT_SCREEN in tail, tail[-300:]
        assert raw.rfind(LEAVE_ALT_SCREEN) > raw.rfind(ENTER_ALT_SCREEN)
        now = self.left_mode if self.slave < 0 else termios.tcgetattr(self.slave)
        assert now is not None
        assert now == self.cooked
        assert now[3] & termios.ICANON and now[3] & termios.ECHO


def submit_waiting(cluster: Cluster, cwd: Path, name: str) -> int:
    out = cluster.kueue("cmd", WAIT_FOR.format(name), cwd=cwd)
    return int(out.stdout.split()[0])


@pytest.fixture
def small_cluster(cluster: Cluster) -> Cluster:
    # One slot: the second job waits while the first runs.
    cluster.start_server()
    cluster.start_worker(
        "w1", worker_max_parallel_jobs=1, prefetch_jobs=0
    )  # the second job waits on the server
    cluster.wait_workers("w1")
    return cluster


@pytest.mark.parametrize("verb", [("ls", "--watch"), ("top",)], ids=["ls-watch", "top"])
def test_live_view_follows_jobs_from_pending_to_finished(
    small_cluster: Cluster, tmp_path: Path, verb: tuple[str, ...]
) -> None:
    cluster = small_cluster
    term = Terminal(cluster, *verb)
    try:
        term.wait(lambda: "no jobs" in term.text(), "the empty table")
        if verb == ("top",):
            term.wait(
                lambda: any("w1" in line.split()[:2] and "connected" in line for line in term.lines()),
                "the worker's row",
            )
        first = submit_waiting(cluster, tmp_path, "go-first")
        second = submit_waiting(cluster, tmp_path, "go-second")
        term.wait(
            lambda: "running for" in term.row(first) and "pending since" in term.row(second),
            "the first job running and the second pending",
        )
        assert "w1" in term.row(first)
        # The counters may come a redraw after the rows: waited for, not assumed.
        term.wait(lambda: "1 pending, 0 offered, 1 running, 0 succeeded" in term.text(), "the counters")
        if verb == ("top",):
            term.wait(lambda: any("1/1" in line and "connected" in line for line in term.lines()), "w1 busy")

        (tmp_path / "go-first").touch()
        term.wait(
            lambda: "finished after" in term.row(first) and "running for" in term.row(second),
            "the first job finished and the second running",
        )
        (tmp_path / "go-second").touch()
        term.wait(lambda: "finished after" in term.row(second), "the second job finished")
        term.wait(lambda: "2/2 done (100%)" in term.text(), "the progress bar full")
        assert "0 pending, 0 offered, 0 running, 2 succeeded" in term.text()

        term.press(b"q")
        assert term.exit_status() == 0
        term.assert_restored()
    finally:
        term.close()


def test_top_filters_its_jobs_by_state(small_cluster: Cluster, tmp_path: Path) -> None:
    cluster = small_cluster
    first = submit_waiting(cluster, tmp_path, "go-first")
    second = submit_waiting(cluster, tmp_path, "go-second")
    client = cluster.client()
    wait_for(
        lambda: client.get_job(first).job.state == common_pb2.JOB_STATE_RUNNING, 30, "the first job to run"
    )
    client.close()
    term = Terminal(cluster, "top", "--running")
    try:
        term.wait(lambda: "running for" in term.row(first), "the running job's row")
        # The pending job is left out, and the title says so; the workers stay.
        assert term.row(second) == ""
        assert "1 of 2 jobs" in term.text()
        assert any("w1" in line.split()[:2] for line in term.lines())
        (tmp_path / "go-first").touch()
        # Once it has finished, the second one runs: it comes in, the first goes.
        term.wait(
            lambda: "running for" in term.row(second) and term.row(first) == "",
            "the second job in and the first out",
        )
        (tmp_path / "go-second").touch()
        term.wait(lambda: "no running jobs" in term.text(), "an empty table")
        term.press(b"q")
        assert term.exit_status() == 0
        term.assert_restored()
    finally:
        term.close()
        (tmp_path / "go-first").touch()
        (tmp_path / "go-second").touch()


def colour_codes(raw: bytes) -> list[bytes]:
    """The SGR sequences in `raw` that set a colour (foreground or
    background, of 8, 16, 256 or 16M colours); bold, dim, reverse and the
    cursor movements are not colour."""
    found = []
    for match in SGR.finditer(raw):
        params = [int(p) for p in re.split(rb"[;:]", match.group(1)) if p]
        if any(30 <= p <= 38 or 40 <= p <= 48 or 90 <= p <= 97 or 100 <= p <= 107 for p in params):
            found.append(match.group(0))
    return found


def test_no_color_gives_the_live_views_no_colour(small_cluster: Cluster, tmp_path: Path) -> None:
    """NO_COLOR (any value, as the static listings) takes the colour out of the
    live views; what draws them on the screen stays. Checked against the
    same screens without it, which are coloured."""
    cluster = small_cluster
    cluster.kueue("cmd", "exit 3", cwd=tmp_path)
    cluster.kueue("cmd", "true", cwd=tmp_path)
    running = submit_waiting(cluster, tmp_path, "go")
    pending = submit_waiting(cluster, tmp_path, "go")

    def shown(term: Terminal, verb: str) -> bool:
        if verb == "workers":
            return any("w1" in line.split()[:2] and "connected" in line for line in term.lines())
        return (
            "failed with code 3" in term.text()
            and "running for" in term.row(running)
            and "pending since" in term.row(pending)
        )

    try:
        for verb in (("ls", "--watch"), ("top",), ("workers", "--watch")):
            for no_color in (None, "1", ""):
                env = {} if no_color is None else {"NO_COLOR": no_color}
                term = Terminal(cluster, *verb, env=env)
                try:
                    term.wait(lambda term=term, verb=verb: shown(term, verb[0]), f"{verb} drawn")
                    term.press(b"q")
                    assert term.exit_status() == 0
                    term.assert_restored()
                    raw = bytes(term.raw)
                finally:
                    term.close()
                assert ENTER_ALT_SCREEN in raw and b"\x1b[" in raw.replace(ENTER_ALT_SCREEN, b"")
                if no_color is None:
                    assert colour_codes(raw), (verb, "coloured without NO_COLOR")
                else:
                    assert colour_codes(raw) == [], (verb, repr(no_color), colour_codes(raw)[:5])
    finally:
        (tmp_path / "go").touch()


def test_ctrl_c_leaves_cleanly_and_a_lost_server_is_waited_for(
    small_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = small_cluster
    job = submit_waiting(cluster, tmp_path, "go")
    term = Terminal(cluster, "ls", "-w", cols=80, rows=24)
    try:
        term.wait(lambda: "running for" in term.row(job), "the job running")
        cluster.stop_server()
        term.wait(lambda: "lost the kueue server" in term.text(), "the lost-server line")
        assert "running for" in term.row(job), "what was known stays on the screen"
        cluster.start_server()
        (tmp_path / "go").touch()
        term.wait(
            lambda: "lost the kueue server" not in term.text() and "finished after" in term.row(job),
            "the view back with the job finished",
        )
        term.press(b"\x03")  # Ctrl-C, through the tty's line discipline: SIGINT
        assert term.exit_status() == 0
        term.assert_restored()
    finally:
        term.close()


def test_a_taller_terminal_shows_more_rows(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()  # no worker: the jobs stay pending
    cluster.kueue("cmd", "--array", "1-30", "true", cwd=tmp_path)
    term = Terminal(cluster, "ls", "--watch", cols=80, rows=24)
    try:
        fit = 24 - 1 - 1 - 3  # title, table header, footer
        term.wait(lambda: f"showing the newest {fit} of 30" in term.text(), "the newest rows that fit")
        assert term.row(30) and term.row(31 - fit) and not term.row(30 - fit)
        term.resize(100, 40)
        term.wait(lambda: term.row(1) and "showing the newest" not in term.text(), "all 30 rows")
        assert all(term.row(i) for i in range(1, 31))
        assert "0/30 done (0%)" in term.lines()[-1]
        term.press(b"q")
        assert term.exit_status() == 0
        term.assert_restored()
    finally:
        term.close()


def test_ctrl_z_gives_the_terminal_back_until_continued(small_cluster: Cluster, tmp_path: Path) -> None:
    import psutil

    cluster = small_cluster
    term = Terminal(cluster, "top", cols=100, rows=30)
    try:
        term.wait(lambda: "no jobs" in term.text(), "the empty table")
        term.press(b"\x1a")  # Ctrl-Z: SIGTSTP from the tty
        proc = psutil.Process(term.proc.pid)
        wait_for(lambda: proc.status() == psutil.STATUS_STOPPED, 30, "kueue top to stop")
        term.assert_restored()
        job = submit_waiting(cluster, tmp_path, "go")
        proc.resume()  # what `fg` does
        term.wait(lambda: "running for" in term.row(job), "the view back, up to date")
        with term._lock:
            assert term.raw.count(ENTER_ALT_SCREEN) == 2
        assert termios.tcgetattr(term.slave)[3] & termios.ECHO == 0, "keys unechoed again"
        (tmp_path / "go").touch()
        term.press(b"q")
        assert term.exit_status() == 0
        term.assert_restored()
    finally:
        term.close()


def test_sigterm_restores_the_terminal(small_cluster: Cluster) -> None:
    term = Terminal(small_cluster, "workers", "--watch", cols=80, rows=24)
    try:
        term.wait(lambda: any("connected" in line for line in term.lines()), "the worker table")
        assert "state" in term.text()
        term.proc.send_signal(signal.SIGTERM)
        assert term.exit_status() == 128 + signal.SIGTERM
        term.assert_restored()
    finally:
        term.close()


def test_watch_needs_a_terminal(cluster: Cluster) -> None:
    cluster.start_server()
    for args in (("ls", "--watch"), ("workers", "-w"), ("top",)):
        out = cluster.kueue(*args, check=False)
        assert out.returncode == 2, out
        assert out.stdout == ""
        assert len(out.stderr.splitlines()) == 1 and "needs a terminal" in out.stderr, out.stderr
    out = cluster.kueue("ls", "--watch", "--json", check=False)
    assert out.returncode == 2 and "--json" in out.stderr


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c")
    cluster.write_config(cluster.client_config, port=1)  # nothing listens there
    term = Terminal(cluster, "top", cols=80, rows=24)
    try:
        assert term.exit_status() == 1
        term.assert_restored()
        assert "cannot reach the kueue server" in term.text()
        assert "Traceback" not in term.raw.decode(errors="replace")
    finally:
        term.close()
