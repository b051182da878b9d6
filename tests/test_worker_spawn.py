"""kueue_worker.spawn starts a job's process as the runner's Popen call did,
checked against subprocess.Popen itself with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kueue_worker import spawn

pytestmark = pytest.mark.skipif(not spawn._usable, reason="posix_spawn is used on Linux only")


def run(argv: list[str], cwd: str, env: dict[str, str], *, popen: bool = False) -> tuple[int, bytes, bytes]:
    """Exit status, stdout and stderr of argv started by spawn.start (or by Popen as the runner did)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        if popen:
            child: spawn.Child = subprocess.Popen(
                argv,
                cwd=cwd or None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
            )
        else:
            child = spawn.start(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        stdout, stderr = out.read(), err.read()
    return child.wait(), stdout, stderr


def both(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    ours = run(argv, cwd, env)
    assert ours == run(argv, cwd, env, popen=True)
    return ours


@pytest.fixture
def env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}


def executable(path: Path, text: str = "#!/bin/sh\necho $0\n", mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_session_cwd_environment_and_exit_status(tmp_path: Path, env: dict[str, str]) -> None:
    here = os.getcwd()
    script = 'test $$ -eq $(ps -o sid= -p $$) && echo leader "$PWD" "$LC_ALL"; exit 3'
    code, out, _ = both(["/bin/sh", "-c", script], str(tmp_path), env)
    assert code == 3 and out.split() == [b"leader", bytes(tmp_path), b"C"]
    assert both(["/bin/sh", "-c", "kill -9 $$"], str(tmp_path), env)[0] == -signal.SIGKILL
    assert os.getcwd() == here  # the worker is back in its own directory


def test_the_jobs_path_is_searched_in_order_as_popen_does(tmp_path: Path, env: dict[str, str]) -> None:
    empty, not_executable, a_directory, first, second = (
        tmp_path / n for n in ("empty", "noexec", "dir", "first", "second")
    )
    empty.mkdir()
    executable(not_executable / "tool", mode=0o644)
    (a_directory / "tool").mkdir(parents=True)
    executable(first / "tool")
    executable(second / "tool")
    env["PATH"] = os.pathsep.join(
        map(str, (tmp_path / "missing", empty, not_executable, a_directory, first, second))
    )
    code, out, _ = both(["tool"], str(tmp_path), env)
    assert (code, out.strip()) == (0, str(first / "tool").encode())
    # None starts: the first error other than "not found" is raised, as by Popen.
    env["PATH"] = os.pathsep.join(map(str, (tmp_path / "missing", empty, not_executable, a_directory)))
    for popen in (False, True):
        with pytest.raises(PermissionError):
            run(["tool"], str(tmp_path), env, popen=popen)
    env["PATH"] = str(empty)
    for popen in (False, True):
        with pytest.raises(FileNotFoundError):
            run(["tool"], str(tmp_path), env, popen=popen)
    # A relative PATH entry is taken in the job's working directory.
    executable(tmp_path / "bin" / "tool")
    env["PATH"] = "bin"
    assert both(["tool"], str(tmp_path), env)[:2] == (0, b"bin/tool\n")


def test_errors_are_popens(tmp_path: Path, env: dict[str, str]) -> None:
    here = os.getcwd()
    for argv, cwd, error in (
        (["/no/such/program"], str(tmp_path), FileNotFoundError),
        ([str(executable(tmp_path / "x.sh", mode=0o644))], str(tmp_path), PermissionError),
        (["true"], str(tmp_path / "vanished"), FileNotFoundError),
        ([str(executable(tmp_path / "plain", "echo no interpreter line\n"))], str(tmp_path), OSError),
    ):
        for popen in (False, True):
            with pytest.raises(error):
                run(argv, cwd, env, popen=popen)
        assert os.getcwd() == here


@pytest.fixture
def signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def ignored_and_blocked(popen: bool, cwd: Path, env: dict[str, str]) -> tuple[int, int]:
    _, out, _ = run(
        ["/bin/sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"], str(cwd), env, popen=popen
    )
    fields = dict(line.split(b":") for line in out.splitlines())
    return int(fields[b"SigIgn"], 16), int(fields[b"SigBlk"], 16)


def bit(signum: int) -> int:
    return 1 << (signum - 1)


def test_signal_dispositions_are_popens(tmp_path: Path, env: dict[str, str], signals: None) -> None:
    ours, ours_blocked = ignored_and_blocked(False, tmp_path, env)
    theirs, theirs_blocked = ignored_and_blocked(True, tmp_path, env)
    # glibc's posix_spawn leaves its two internal signals (32 and 33, below
    # SIGRTMIN) ignored; every program started by its system(), or by Rust's
    # Command, has them so. A glibc program installs its own handlers for them.
    internal = bit(32) | bit(33)
    assert ours & ~internal == theirs & ~internal and ours_blocked == theirs_blocked
    # SIGPIPE is back at its default; what had a handler here too; an ignored one stays so.
    assert not ours & bit(signal.SIGPIPE)
    assert not ours & bit(signal.SIGUSR1)
    assert ours & bit(signal.SIGUSR2)


def test_no_descriptor_of_the_worker_is_inherited(tmp_path: Path, env: dict[str, str]) -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(read_end, True)
    os.set_inheritable(write_end, True)
    try:
        assert {read_end, write_end} <= set(spawn.inheritable_fds())
        script = f"ls /proc/$$/fd; test -e /proc/$$/fd/{read_end} || test -e /proc/$$/fd/{write_end}"
        code, out, _ = both(["/bin/sh", "-c", script], str(tmp_path), env)
        assert code == 1 and sorted(out.split()) == [b"0", b"1", b"2"]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_relative_cwd_is_left_to_popen(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    child = spawn.start(
        ["/bin/sh", "-c", "exit 0"],
        cwd="sub",
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert isinstance(child, subprocess.Popen) and child.wait() == 0
