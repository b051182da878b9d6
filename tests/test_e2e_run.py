"""End to end `kueue run` and `kueue log -f`: a real server, real workers and
the real CLI as a process with pipes (or a pseudo-terminal), on loopback.

Nothing waits by sleeping: the jobs print markers and wait for files the test
creates, and the test waits for conditions with deadlines (wait_for)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pty
import shlex
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path
from typing import IO

import psutil
import pytest

from tests.cluster import Cluster, _env, wait_for, worker_behind_relay
from tests.pty_session import PtySession

# Waits in a job for a file the test creates (no sleeping in the test itself).
WAIT_FOR_FILE = 'while [ ! -e "{0}" ]; do sleep 0.02; done'


class Collector:
    """Reads a pipe in a thread so a test can wait for what arrived so far."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        while chunk := os.read(pipe.fileno(), 65536):
            with self._lock:
                self.data += chunk

    def text(self) -> str:
        with self._lock:
            return self.data.decode(errors="replace")

    def wait(self, needle: str, timeout: float = 60.0) -> None:
        wait_for(lambda: needle in self.text(), timeout, f"{needle!r} in {self.text()!r}")

    def finish(self, timeout: float = 30.0) -> bytes:
        self._thread.join(timeout)
        return bytes(self.data)


class Run:
    """`kueue run ...` as a process: stdin a pipe (or given), stdout and stderr collected."""

    def __init__(
        self,
        cluster: Cluster,
        *args: str,
        cwd: Path,
        stdin: int | IO[bytes] | None = subprocess.PIPE,
        verb: str = "run",
        process_group: int | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [*kueue_run(cluster, verb), *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=_env(),
            process_group=process_group,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Collector(self.proc.stdout)
        self.err = Collector(self.proc.stderr)

    def finish(self, timeout: float = 120.0) -> tuple[int, bytes, bytes]:
        code = self.proc.wait(timeout)
        return code, self.out.finish(), self.err.finish()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait(30)


def kueue_run(cluster: Cluster, verb: str = "run") -> list[str]:
    return [sys.executable, "-m", "kueue_client", "--config", str(cluster.client_config), verb]


def run(cluster: Cluster, *args: str, cwd: Path, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*kueue_run(cluster), *args],
        input=input,
        capture_output=True,
        cwd=cwd,
        env=_env(),
        timeout=120,
    )


def job_json(cluster: Cluster, job_id: int) -> dict:
    return json.loads(cluster.kueue("show", str(job_id), "--json").stdout)["job"]


def wait_state(cluster: Cluster, job_id: int, *states: str, timeout: float = 60.0) -> dict:
    def reached() -> dict | None:
        job = job_json(cluster, job_id)
        return job if job.get("state") in states else None

    return wait_for(reached, timeout, f"job {job_id} to reach {states}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ------------------------------------------------------------------ streams


def test_stdin_piped_through_cat_five_megabytes(ready: Cluster, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024)
    result = run(ready, "cat", cwd=tmp_path, input=data)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    assert result.stderr == b""
    # Captured on the server too.
    (job,) = json.loads(ready.kueue("ls", "--json").stdout)["jobs"]
    log = subprocess.run(
        [*kueue_run(ready, "log"), job["id"]],
        capture_output=True,
        env=_env(),
        timeout=120,
    )
    assert hashlib.sha256(log.stdout).digest() == hashlib.sha256(data).digest()


def test_stdin_from_a_file(ready: Cluster, tmp_path: Path) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(os.urandom(300_000) + b"last line\n")
    with source.open("rb") as stdin:
        job = Run(ready, "sh", "-c", "wc -c; echo after eof", cwd=tmp_path, stdin=stdin)
        code, out, err = job.finish()
    assert code == 0, err
    assert out.split() == [b"300010", b"after", b"eof"]


def test_stdout_and_stderr_interleaved_each_intact_and_binary(ready: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "both.py"
    script.write_text(
        "import os\n"
        "for i in range(2000):\n"
        "    os.write(1, b'out %d\\n' % i)\n"
        "    os.write(2, b'err %d\\n' % i)\n"
        "os.write(1, bytes(range(256)))\n"
    )
    result = run(ready, sys.executable, str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"".join(b"out %d\n" % i for i in range(2000)) + bytes(range(256))
    assert result.stderr == b"".join(b"err %d\n" % i for i in range(2000))


def test_output_streams_while_the_job_runs(ready: Cluster, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = Run(ready, "sh", "-c", f"echo first; {WAIT_FOR_FILE.format(go)}; echo second", cwd=tmp_path)
    job.out.wait("first\n")  # arrives while the job still waits
    assert "second" not in job.out.text()
    go.touch()
    code, out, _ = job.finish()
    assert code == 0 and out == b"first\nsecond\n"


def test_environment_and_working_directory_like_cmd(ready: Cluster, tmp_path: Path) -> None:
    work = tmp_path / "a dir"
    work.mkdir()
    env = dict(_env(), MY_SETTING="from the caller")
    result = subprocess.run(
        [*kueue_run(ready), "sh", "-c", 'echo "$MY_SETTING in $(pwd) as $KUEUE_JOB_ID"'],
        capture_output=True,
        cwd=work,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith(f"from the caller in {work} as ")


# ------------------------------------------------------------------ exit statuses


@pytest.mark.parametrize("code", [0, 1, 255])
def test_exit_code_is_the_jobs(ready: Cluster, tmp_path: Path, code: int) -> None:
    result = run(ready, "sh", "-c", f"exit {code}", cwd=tmp_path)
    assert result.returncode == code
    assert result.stdout == b"" and result.stderr == b""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1])
def test_killed_by_a_signal_exits_128_plus_n(ready: Cluster, tmp_path: Path, sig: int) -> None:
    result = run(ready, "sh", "-c", f"kill -{int(sig)} $$", cwd=tmp_path)
    assert result.returncode == 128 + sig


@pytest.mark.parametrize("closed", [1, 2])
def test_a_closed_stdout_or_stderr_leaves_the_exit_code_the_jobs(
    ready: Cluster, tmp_path: Path, closed: int
) -> None:
    # As `kueue run sh -c 'exit 3' >&-` from a shell: the descriptor is not there at all.
    result = subprocess.run(
        [*kueue_run(ready), "sh", "-c", "echo out; echo err >&2; exit 3"],
        stdin=subprocess.DEVNULL,
        stdout=None if closed == 1 else subprocess.PIPE,
        stderr=None if closed == 2 else subprocess.PIPE,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
        preexec_fn=lambda: os.close(closed),  # a test's child: no threads to mind
    )
    assert result.returncode == 3
    kept = result.stderr if closed == 1 else result.stdout
    assert kept == (b"err\n" if closed == 1 else b"out\n")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_output_that_cannot_be_written_is_said_and_fails_the_run(ready: Cluster, tmp_path: Path) -> None:
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [*kueue_run(ready), "echo", "hello"],
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=_env(),
            timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "kueue: writing the job's output failed: No space left on device; the rest of it is dropped"
    ]


def test_no_stdin_leaves_our_input_to_the_loop_that_reads_it(ready: Cluster, tmp_path: Path) -> None:
    # As ssh -n: without it, the first run would read ahead the lines the loop wants.
    run_n = " ".join(shlex.quote(a) for a in kueue_run(ready)) + " -n"
    loop = f'while read x; do {run_n} sh -c \'echo "job $0"; cat\' "$x"; done'
    result = subprocess.run(
        ["sh", "-c", loop], input=b"l1\nl2\nl3\n", capture_output=True, cwd=tmp_path, env=_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"job l1\njob l2\njob l3\n"


def _read_a_line_and_leave(cluster: Cluster, tmp_path: Path, *command: str) -> tuple[int, bytes]:
    """`kueue run COMMAND | head -1`: its exit status and stderr."""
    proc = subprocess.Popen(
        [*kueue_run(cluster), *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    err = Collector(proc.stderr)
    try:
        assert proc.stdout.readline()
        proc.stdout.close()  # the reader is gone
        return proc.wait(120), err.finish()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(30)


def test_a_reader_gone_stops_the_writer_only_as_at_home(ready: Cluster, tmp_path: Path) -> None:
    # Locally `sh -c 'yes; echo cleanup >&2; exit 5' | head -1`: yes dies of
    # SIGPIPE, its shell goes on to clean up and exits 5.
    code, err = _read_a_line_and_leave(ready, tmp_path, "sh", "-c", "yes; echo cleanup-ran >&2; exit 5")
    assert code == 5
    assert b"cleanup-ran\n" in err


def test_a_writer_that_ignores_sigpipe_gets_epipe_when_the_reader_is_gone(
    ready: Cluster, tmp_path: Path
) -> None:
    # Python ignores SIGPIPE: locally it ends with BrokenPipeError, not never.
    job = "import sys\nwhile True:\n    sys.stdout.write('x\\n')\n    sys.stdout.flush()\n"
    code, err = _read_a_line_and_leave(ready, tmp_path, sys.executable, "-c", job)
    assert code != 0
    assert b"BrokenPipeError" in err


def test_command_not_found_is_127(ready: Cluster, tmp_path: Path) -> None:
    result = run(ready, "no-such-command-here", cwd=tmp_path)
    assert result.returncode == 127
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kueue: job ") and "no-such-command-here" in lines[0]


def test_canceled_elsewhere_says_so(ready: Cluster, tmp_path: Path) -> None:
    job = Run(
        ready,
        "sh",
        "-c",
        f'echo "id $KUEUE_JOB_ID"; {WAIT_FOR_FILE.format(tmp_path / "never")}',
        cwd=tmp_path,
    )
    job.out.wait("\n")
    job_id = int(job.out.text().split()[1])
    ready.kueue("rm", "--kill", str(job_id))
    code, _, err = job.finish()
    assert code != 0
    assert f"kueue: job {job_id} was canceled" in err.decode()


# ------------------------------------------------------------------ signals


TRAP_JOB = (
    'trap "echo got {name}; exit {code}" {name}; echo $$ > "{pid}"; echo ready; '
    "while true; do sleep 0.05; done"
)


@pytest.mark.parametrize(
    ("sig", "name", "code"),
    [
        (signal.SIGINT, "INT", 42),
        (signal.SIGTERM, "TERM", 43),
        (signal.SIGHUP, "HUP", 44),
        (signal.SIGQUIT, "QUIT", 45),
    ],
)
def test_signal_reaches_the_job(ready: Cluster, tmp_path: Path, sig: int, name: str, code: int) -> None:
    job = Run(ready, "sh", "-c", TRAP_JOB.format(name=name, code=code, pid=tmp_path / "pid"), cwd=tmp_path)
    job.out.wait("ready\n")
    job.proc.send_signal(sig)
    status, out, err = job.finish()
    assert out == f"ready\ngot {name}\n".encode(), err
    assert status == code


def test_ctrl_c_reaches_the_job_while_our_stdout_is_full(ready: Cluster, tmp_path: Path) -> None:
    # `kueue run ... | less`, with less not reading: Ctrl-C must still reach the job.
    got = tmp_path / "got-int"
    # Writes under PIPE_BUF: one blocked when the signal comes fails with
    # EINTR and the handler runs (a shell's echo may instead wait out a
    # partial write, which the paused pipe never lets finish).
    job = (
        "import os, pathlib, signal\n"
        f"def stop(*_): pathlib.Path({str(got)!r}).touch(); os._exit(42)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "while True: os.write(1, b'x' * 60 + b'\\n')\n"
    )
    proc = subprocess.Popen(
        [*kueue_run(ready), sys.executable, "-c", job],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env=_env(),
    )
    assert proc.stdout is not None
    try:
        # Not read until the pipe is full: kueue run's writes then block.
        def unread() -> int:
            return int.from_bytes(fcntl.ioctl(proc.stdout, termios.FIONREAD, b"\0\0\0\0"), "little")

        wait_for(lambda: unread() >= 60_000, 60, "kueue run to fill its stdout pipe")
        proc.send_signal(signal.SIGINT)
        wait_for(got.exists, 60, "the job to get the SIGINT")
        drained = Collector(proc.stdout)
        assert proc.wait(120) == 42
        assert drained.finish().startswith(b"x" * 60 + b"\n")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(30)


def test_sigtstp_is_not_forwarded(ready: Cluster, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = Run(
        ready,
        "sh",
        "-c",
        f'trap "echo got TSTP" TSTP; echo ready; {WAIT_FOR_FILE.format(go)}; echo done',
        cwd=tmp_path,
        # A group of its own under ours: the kernel drops SIGTSTP sent to an
        # orphaned process group, which the test's own group might be.
        process_group=0,
    )
    job.out.wait("ready\n")
    job.proc.send_signal(signal.SIGTSTP)  # stops `kueue run` itself, as at a terminal
    wait_for(lambda: psutil.Process(job.proc.pid).status() == psutil.STATUS_STOPPED, 30, "kueue run to stop")
    job.proc.send_signal(signal.SIGCONT)
    go.touch()
    code, out, _ = job.finish()
    assert code == 0 and out == b"ready\ndone\n"


def test_double_ctrl_c_kills_the_job(ready: Cluster, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    job = Run(
        ready,
        "sh",
        "-c",
        f'trap "echo ignoring INT" INT; echo $$ > "{pid_file}"; echo "id $KUEUE_JOB_ID"; '
        "while true; do sleep 0.05; done",
        cwd=tmp_path,
    )
    job.out.wait("id ")
    job_id = int(job.out.text().split()[1])
    pid = int(pid_file.read_text())
    job.proc.send_signal(signal.SIGINT)
    job.out.wait("ignoring INT")  # the first one reached the job, which goes on
    job.proc.send_signal(signal.SIGINT)
    code, _, err = job.finish()
    assert code == 130, err
    wait_state(ready, job_id, "JOB_STATE_CANCELED")
    wait_for(lambda: gone(pid), 30, "the job's process to be gone")


# ------------------------------------------------------------------ failures


def test_worker_killed_mid_run_completes_on_another_worker(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", worker_timeout_seconds=3)
    try:
        cluster.start_server()
        cluster.start_worker("first")
        cluster.wait_workers("first")
        job = Run(
            cluster,
            "sh",
            "-c",
            'read line; echo "$KUEUE_WORKER $KUEUE_ATTEMPT read $line"; '
            'if [ "$KUEUE_WORKER" = first ]; then sleep 1000; fi; exit 3',
            cwd=tmp_path,
        )
        assert job.proc.stdin is not None
        job.proc.stdin.write(b"hello\n")
        job.proc.stdin.close()
        job.out.wait("first 1 read hello\n")
        # The machine dies: the worker and its job with it.
        worker = psutil.Process(cluster.workers["first"].pid)
        for proc in [worker, *worker.children(recursive=True)]:
            proc.kill()
        cluster.workers.pop("first").wait(timeout=10)
        # Said at once, not only when the worker's timeout has run out.
        job.err.wait("kueue: worker first lost its connection to the server; job ")
        assert "goes on there if it is back within 3 s, else it is queued again\n" in job.err.text()
        cluster.start_worker("second")
        code, out, err = job.finish()
        assert code == 3, err
        # stdin was replayed to the new attempt.
        assert out == b"first 1 read hello\nsecond 2 read hello\n"
        notices = err.decode()
        assert "worker first lost" in notices and "restarted on second (attempt 2)" in notices
    finally:
        cluster.close()


def test_a_worker_cut_off_and_back_is_said_both_times(tmp_path: Path) -> None:
    with worker_behind_relay(tmp_path / "c", "far", worker_timeout_seconds=120) as (cluster, relay):
        go = tmp_path / "go"
        job = Run(cluster, "sh", "-c", f"echo ready; {WAIT_FOR_FILE.format(go)}; echo done", cwd=tmp_path)
        job.out.wait("ready\n")
        relay.cut()
        job.err.wait("kueue: worker far lost its connection to the server; job ")
        assert "goes on there if it is back within 120 s" in job.err.text()
        # Still listed, with its job: part of what runs where.
        listed = [line for line in cluster.kueue("workers").stdout.splitlines() if " far " in f" {line} "]
        assert len(listed) == 1 and "offline" in listed[0] and "1/" in listed[0], listed
        relay.heal()
        job.err.wait("kueue: worker far is back\n", timeout=90)
        go.touch()
        code, out, _ = job.finish()
        assert (code, out) == (0, b"ready\ndone\n")


def test_run_killed_the_job_goes_on_and_log_has_all_output(ready: Cluster, tmp_path: Path) -> None:
    job = Run(ready, "sh", "-c", 'echo "start $KUEUE_JOB_ID"; cat; echo end', cwd=tmp_path)
    job.out.wait("start ")
    job_id = int(job.out.text().split()[1])
    job.kill()  # stdin closes on the server's side: the job's cat ends
    wait_state(ready, job_id, "JOB_STATE_SUCCEEDED")
    log = ready.kueue("log", str(job_id))
    assert log.stdout == f"start {job_id}\nend\n"


@pytest.mark.parametrize("verb", ["wait", "log -f"])
def test_wait_or_log_follow_killed_the_job_goes_on(ready: Cluster, tmp_path: Path, verb: str) -> None:
    """Client gone: a `kueue wait` or `kueue log -f` SIGKILLed while the job
    runs leaves it alone: the same attempt ends as it would have, all its
    output kept."""
    go = tmp_path / "go"
    script = (
        'for i in $(seq 1 2000); do echo "before $i"; done; '
        f'{WAIT_FOR_FILE.format(go)}; for i in $(seq 1 2000); do echo "after $i"; done'
    )
    job_id = int(ready.kueue("cmd", script, cwd=tmp_path).stdout)
    client: PtySession | Run
    if verb == "wait":
        # On a terminal, where its progress line counts the job running: the watch is live.
        client = term = PtySession(ready.kueue_argv("wait", str(job_id)), env=ready.env(), cwd=tmp_path)
        live, what = (lambda: "1 running" in term.text()), "the wait to see the job run"
        stop = term.close
    else:
        client = run = Run(ready, "-f", str(job_id), cwd=tmp_path, stdin=subprocess.DEVNULL, verb="log")
        live, what = (lambda: "before 2000\n" in run.out.text()), "the follower to get the first output"
        stop = run.kill
    try:
        wait_for(live, 60, what)
        # Mid-job: the job waits for `go`, the client for the job.
        assert client.proc.poll() is None
        client.proc.kill()
        assert client.proc.wait(30) == -signal.SIGKILL
    finally:
        stop()
    assert job_json(ready, job_id)["state"] == "JOB_STATE_RUNNING"
    go.touch()
    job = wait_state(ready, job_id, "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELED")
    assert job["state"] == "JOB_STATE_SUCCEEDED" and int(job["attempt"]) == 1, job
    assert [(a["number"], a["outcome"]) for a in job["attempts"]] == [(1, "ATTEMPT_OUTCOME_FINISHED")], job
    expected = "".join(f"before {i}\n" for i in range(1, 2001)) + "".join(
        f"after {i}\n" for i in range(1, 2001)
    )
    assert ready.kueue("log", str(job_id)).stdout == expected


def test_kill_on_detach(ready: Cluster, tmp_path: Path) -> None:
    job = Run(
        ready,
        "--kill-on-detach",
        "sh",
        "-c",
        f'echo "start $KUEUE_JOB_ID"; {WAIT_FOR_FILE.format(tmp_path / "never")}',
        cwd=tmp_path,
    )
    job.out.wait("start ")
    job_id = int(job.out.text().split()[1])
    job.kill()
    wait_state(ready, job_id, "JOB_STATE_CANCELED")


def test_server_lost_mid_run_exits_255_and_the_job_goes_on(ready: Cluster, tmp_path: Path) -> None:
    go = tmp_path / "go"
    job = Run(
        ready, "sh", "-c", f'echo "start $KUEUE_JOB_ID"; {WAIT_FOR_FILE.format(go)}; echo end', cwd=tmp_path
    )
    job.out.wait("start ")
    job_id = int(job.out.text().split()[1])
    ready.stop_server(signal.SIGKILL)
    code, _, err = job.finish()
    assert code == 255
    assert f"lost the connection to the server; job {job_id} goes on detached (kueue log -f {job_id})" in (
        err.decode()
    )
    ready.start_server()
    go.touch()
    wait_state(ready, job_id, "JOB_STATE_SUCCEEDED")
    assert ready.kueue("log", str(job_id)).stdout == f"start {job_id}\nend\n"


# ------------------------------------------------------------------ kueue log -f


def test_log_follow_waits_for_a_pending_job_and_follows_it_line_by_line(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_server()
    steps = " ".join(f'echo "line {i}"; {WAIT_FOR_FILE.format(tmp_path / f"go{i}")};' for i in range(1, 4))
    submitted = cluster.kueue("cmd", f"{steps} echo done >&2; exit 5", cwd=tmp_path)
    job_id = int(submitted.stdout)
    follow = Run(cluster, "-f", str(job_id), cwd=tmp_path, stdin=subprocess.DEVNULL, verb="log")
    both = Run(cluster, "-f", "--both", str(job_id), cwd=tmp_path, stdin=subprocess.DEVNULL, verb="log")
    cluster.start_worker("w1")  # the job was pending until now
    for i in range(1, 4):
        follow.out.wait(f"line {i}\n")
        assert f"line {i + 1}" not in follow.out.text()
        (tmp_path / f"go{i}").touch()
    code, out, err = follow.finish()
    assert code == 5
    assert out == b"line 1\nline 2\nline 3\n" and err == b""
    code, out, err = both.finish()
    assert code == 5 and out == b"line 1\nline 2\nline 3\n" and err == b"done\n"
    tail = cluster.kueue("log", "--tail", "2", str(job_id))
    assert tail.stdout == "line 2\nline 3\n"


# ------------------------------------------------------------------ terminal


def test_status_line_on_a_terminal_and_a_tty_stdin_never_read(cluster: Cluster, tmp_path: Path) -> None:
    pyte = pytest.importorskip("pyte")
    cluster.start_server()
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*kueue_run(cluster), "sh", "-c", "echo job output"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=tmp_path,
            env=dict(_env(), TERM="xterm"),
        )
        os.close(slave)
        slave = -1
        screen_bytes = bytearray()
        lock = threading.Lock()

        def read_terminal() -> None:
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave end is closed
                    return
                if not chunk:
                    return
                with lock:
                    screen_bytes.extend(chunk)

        reader = threading.Thread(target=read_terminal, daemon=True)
        reader.start()

        def shown() -> str:
            with lock:
                return screen_bytes.decode(errors="replace")

        # No worker yet: the job waits, and the line says so.
        wait_for(lambda: "waiting for a worker with 1 cpu, 10 MB RAM" in shown(), 30, "the status line")
        assert "queued as job 1" in shown()
        cluster.start_worker("w1")
        # The job never reads its stdin (a terminal): `kueue run` ends anyway.
        assert proc.wait(60) == 0
        reader.join(30)
        raw = shown()
        assert "\r\x1b[K" in raw
        assert raw.index("\r\x1b[K") < raw.index("job output")
        screen = pyte.Screen(120, 10)
        pyte.Stream(screen).feed(raw)
        lines = [line.rstrip() for line in screen.display if line.strip()]
        # The status line was erased; what stays is the job's output (and the
        # warning that no worker was connected when it was queued).
        assert lines[-1] == "job output"
        assert not any("waiting for a worker" in line for line in lines), lines
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_terminal_input_arrives_line_by_line(ready: Cluster, tmp_path: Path) -> None:
    master, slave = pty.openpty()
    try:
        job = Run(
            ready,
            "sh",
            "-c",
            'echo ready; read a; echo "got $a"; read b; echo "got $b"',
            cwd=tmp_path,
            stdin=slave,
        )
        os.close(slave)
        slave = -1
        job.out.wait("ready\n")
        os.write(master, b"first line\n")
        job.out.wait("got first line\n")  # the first line arrived alone, before the second was typed
        os.write(master, b"second line\n")
        code, out, _ = job.finish()
        assert code == 0 and out == b"ready\ngot first line\ngot second line\n"
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
