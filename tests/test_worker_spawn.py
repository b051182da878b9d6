"""The lean spawn against subprocess.Popen, with real processes: the same
child (session, signals, descriptors, environment, cwd) and the same errors."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from kueue_worker import orphans, spawn

PY = sys.executable
ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ONE": "1", "UNICODE": "h\u00e9 \u2603"}

# What the child reports: its session, open descriptors, env and cwd.
REPORT = """
import json, os
print(json.dumps({
    "sid": os.getsid(0), "pgid": os.getpgid(0), "pid": os.getpid(),
    "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "env": dict(os.environ), "cwd": os.getcwd(),
}))
"""
# Its signal dispositions and mask, read by a program that leaves them as it found them.
SIGNALS = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]


def run_lean(argv: list[str], cwd: str | None, env: dict[str, str]) -> tuple[int, bytes]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    # An inheritable descriptor of the worker that the job must not get.
    stray = os.open(os.devnull, os.O_RDONLY)
    try:
        pid, window = spawn.spawn(
            argv, cwd=cwd, env=env, stdin=spawn.devnull(), stdout=write_end, stderr=spawn.devnull()
        )
    finally:
        os.close(write_end)
        os.close(stray)
    with os.fdopen(read_end, "rb") as out:
        data = out.read()
    _, status = os.waitpid(pid, 0)
    assert window is None or window[0] <= window[1]
    return os.waitstatus_to_exitcode(status), data


def run_popen(argv: list[str], cwd: str | None, env: dict[str, str]) -> tuple[int, bytes]:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        check=False,
    )
    return proc.returncode, proc.stdout


def test_the_child_is_the_one_popen_makes(tmp_path: Path) -> None:
    import json

    code, out = run_lean([PY, "-c", REPORT], str(tmp_path), ENV)
    assert code == 0
    lean = json.loads(out)
    _, out = run_popen([PY, "-c", REPORT], str(tmp_path), ENV)
    popen = json.loads(out)
    assert lean["sid"] == lean["pgid"] == lean["pid"]
    # 0-2 and the descriptor listdir opens; nothing of the worker's.
    assert len(lean["fds"]) == len(popen["fds"]) and lean["fds"][:3] == [0, 1, 2]
    assert lean["env"] == popen["env"] and lean["env"]["UNICODE"] == ENV["UNICODE"]
    assert lean["cwd"] == popen["cwd"] == str(tmp_path)


def test_the_child_gets_the_signal_dispositions_popen_gives(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    code, lean = run_lean(SIGNALS, None, ENV)
    assert code == 0
    assert lean == run_popen(SIGNALS, None, ENV)[1]
    fields = dict(line.split(":") for line in lean.decode().splitlines())
    assert int(fields["SigBlk"], 16) == 0
    # SIGPIPE, which the worker's Python ignores, is back to its default.
    assert not int(fields["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1))


def test_a_command_is_found_on_the_jobs_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "kueue-test-tool"
    tool.write_text("#!/bin/sh\necho found here\n")
    tool.chmod(0o755)
    env = dict(ENV, PATH=f"{tmp_path / 'empty'}:{bin_dir}:{ENV['PATH']}")
    assert run_lean(["kueue-test-tool"], None, env) == (0, b"found here\n")
    # The PATH of each job counts, not one remembered from another.
    with pytest.raises(FileNotFoundError):
        run_lean(["kueue-test-tool"], None, ENV)


def failures(tmp_path: Path) -> list[tuple[list[str], str | None]]:
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")
    script = tmp_path / "not_executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return [
        (["/no/such/program"], None),
        (["no-such-program-anywhere"], None),
        ([str(script)], None),
        ([str(tmp_path)], None),
        (["true"], str(tmp_path / "vanished")),
        (["true"], str(plain)),
        (["./plain.txt"], str(tmp_path)),
    ]


def test_failures_raise_what_popen_raises(tmp_path: Path) -> None:
    for argv, cwd in failures(tmp_path):
        with pytest.raises(OSError) as expected:
            run_popen(argv, cwd, ENV)
        children = len(psutil.Process().children())
        with pytest.raises(OSError) as got:
            run_lean(argv, cwd, ENV)
        what = f"{argv} in {cwd}"
        assert type(got.value) is type(expected.value), what
        assert (got.value.errno, got.value.strerror, got.value.filename) == (
            expected.value.errno,
            expected.value.strerror,
            expected.value.filename,
        ), what
        # The failed child is reaped.
        assert len(psutil.Process().children()) == children, what


def test_an_environment_popen_refuses_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        spawn.spawn(
            ["true"], cwd=None, env={"A=B": "1"}, stdin=spawn.devnull(), stdout=spawn.devnull(), stderr=2
        )


def test_a_nul_in_the_environment_is_refused_as_popen_refuses_it() -> None:
    # Encoded in one piece, a NUL would otherwise split an entry in two.
    env = dict(ENV, SPLIT="a\0B=b")
    with pytest.raises(ValueError) as expected:
        run_popen(["true"], None, env)
    with pytest.raises(ValueError) as got:
        run_lean(["true"], None, env)
    assert str(got.value) == str(expected.value)


def test_the_environment_is_encoded_as_popen_encodes_it() -> None:
    env = dict(ENV, EMPTY="", EQUALS="a=b", SURROGATE="\udcff", LAST="x")
    assert spawn.encode_environment(env) == [
        f"{k}={v}".encode(sys.getfilesystemencoding(), "surrogateescape") for k, v in env.items()
    ]
    assert spawn.encode_environment({}) == []


def test_the_directory_a_command_was_found_in_is_tried_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn, "FOUND_SECONDS", 3600.0)
    early, late, later = tmp_path / "early", tmp_path / "late", tmp_path / "later"
    for d in (early, late, later):
        d.mkdir()

    def put(d: Path, text: str) -> Path:
        tool = d / "kueue-test-hashed"
        tool.write_text(f"#!/bin/sh\necho {text}\n")
        tool.chmod(0o755)
        return tool

    tool = put(late, "late")
    env = dict(ENV, PATH=f"{early}:{late}:{later}:{ENV['PATH']}")
    assert run_lean(["kueue-test-hashed"], None, env) == (0, b"late\n")
    assert spawn._executables("kueue-test-hashed", env["PATH"])[0] == os.fsencode(tool)
    # Moved further down the PATH: still found, the hash notwithstanding.
    tool.rename(later / tool.name)
    assert run_lean(["kueue-test-hashed"], None, env) == (0, b"late\n")
    # As with a shell's hash, one put earlier on the PATH is seen once it expires.
    put(late, "late again")
    put(early, "early")
    assert run_lean(["kueue-test-hashed"], None, env) == (0, b"late again\n")
    monkeypatch.setattr(spawn, "FOUND_SECONDS", 0.0)
    assert run_lean(["kueue-test-hashed"], None, env) == (0, b"early\n")


def test_a_relative_directory_on_the_path_keeps_the_path_order(tmp_path: Path) -> None:
    # Relative to the job's cwd, which the worker cannot look into for it.
    env = dict(ENV, PATH=f"bin:{ENV['PATH']}")
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "true"
    tool.write_text("#!/bin/sh\necho relative\n")
    tool.chmod(0o755)
    assert spawn._executables("true", env["PATH"])[0] == b"bin/true"
    assert run_lean(["true"], str(tmp_path), env) == (0, b"relative\n")


def test_the_start_time_from_the_spawns_clock_is_procs(tmp_path: Path) -> None:
    """The ledger's pid-reuse check compares start times exactly: one taken
    from the clock readings around the spawn must be what /proc shows."""
    if not sys.platform.startswith("linux"):
        pytest.skip("start times since boot come from /proc")
    ledger = orphans.Ledger(orphans.ledger_path(tmp_path, "w1"))
    pids = []
    told = 0
    try:
        for job_id in range(20):
            pid, window = spawn.spawn(
                ["sleep", "60"],
                cwd=None,
                env=ENV,
                stdin=spawn.devnull(),
                stdout=spawn.devnull(),
                stderr=spawn.devnull(),
            )
            pids.append(pid)
            assert window is not None
            told += orphans._start_tick(window) >= 0
            ledger.record(job_id, 1, pid, window)
        recs = {r.pid: r for r in orphans.read(ledger.path)}
        for pid in pids:
            rec = recs[pid]
            assert (rec.create_time, rec.started_since_boot) == orphans.start_times(psutil.Process(pid))
            assert rec.pgid == os.getpgid(pid)
        # Most spawns take well under a clock tick, so most start times were told by the clock.
        assert told > 0
    finally:
        ledger.close()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_an_environment_block_gets_the_workers_own_variables_in_place_of_its_own() -> None:
    block = b"PATH=/opt/bin:/bin\0ONE=1\0PWD=/submitter\0EQUALS=a=b\0"
    own = {"KUEUE_JOB_ID": "7", "PWD": "/job"}
    environ = spawn.Environ.from_block(block, own)
    assert environ.entries == [b"PATH=/opt/bin:/bin", b"ONE=1", b"EQUALS=a=b", b"KUEUE_JOB_ID=7", b"PWD=/job"]
    assert environ.path == "/opt/bin:/bin"
    assert environ.as_dict() == {
        "PATH": "/opt/bin:/bin",
        "ONE": "1",
        "EQUALS": "a=b",
        "KUEUE_JOB_ID": "7",
        "PWD": "/job",
    }
    # A name inside another entry's value is not an entry of that name.
    inside = spawn.Environ.from_block(b"X=PWD=y\0", own)
    assert inside.entries == [b"X=PWD=y", b"KUEUE_JOB_ID=7", b"PWD=/job"] and inside.path is None
    # Without the last NUL, and empty.
    assert spawn.Environ.from_block(b"A=1\0PATH=/bin", {}).entries == [b"A=1", b"PATH=/bin"]
    assert spawn.Environ.from_block(b"A=1\0PATH=/bin", {}).path == "/bin"
    assert spawn.Environ.from_block(b"", own).entries == [b"KUEUE_JOB_ID=7", b"PWD=/job"]
    # The worker's own PATH, were it to set one, is where commands are looked up.
    assert spawn.Environ.from_block(block, {"PATH": "/mine"}).path == "/mine"


def _block_reference(block: bytes, own: dict[str, str]) -> tuple[list[bytes], str | None]:
    """What from_block makes, the slow and plain way."""
    entries = [e for e in block.split(b"\0") if e]
    names = {name.encode() for name in own}
    kept = [e for e in entries if not (b"=" in e and e.partition(b"=")[0] in names)]
    paths = [e.partition(b"=")[2] for e in entries if e.startswith(b"PATH=")]
    path = own.get("PATH", paths[-1].decode() if paths else None)
    return kept + [f"{k}={v}".encode() for k, v in own.items()], path


def test_environment_blocks_split_once_per_array_are_the_same_as_split_afresh() -> None:
    own = {"KUEUE_JOB_ID": "7", "PWD": "/job"}
    head = b"PATH=/opt/bin:/bin\0ONE=1\0EQUALS=a=b\0"
    blocks = [
        *(head + f"KUEUE_ARRAY_ID={i}\0".encode() for i in range(3)),  # an array's members
        head + b"PWD=/submitter\0",  # the last entry one of the worker's own
        head + b"PATH=/last\0",  # a second PATH, last
        b"PWD=/submitter\0" + head + b"TWO=2\0",  # one of the worker's own in the head
        b"ONLY=1\0",
        b"PATH=/x\0",
        b"A=1\0NOEQUALS\0",
        b"",
    ]
    spawn._heads.clear()
    for block in [*blocks, *blocks]:  # split afresh, then from what was split before
        environ = spawn.Environ.from_block(block, own)
        assert (environ.entries, environ.path) == _block_reference(block, own), block
        mine = spawn.Environ.from_block(block, {"PATH": "/mine"})
        assert (mine.entries, mine.path) == _block_reference(block, {"PATH": "/mine"}), block
    # The members of the array share one split head.
    assert sum(key[0] == head for key in spawn._heads) == 2  # once per set of own names
    # A split entry handed out is the caller's: changing it changes no later one.
    spawn.Environ.from_block(blocks[0], own).entries.append(b"X=1")
    assert spawn.Environ.from_block(blocks[1], own).entries == _block_reference(blocks[1], own)[0]


def test_the_split_environment_blocks_kept_are_bounded() -> None:
    spawn._heads.clear()
    for i in range(3 * spawn.MAX_HEADS):
        spawn.Environ.from_block(f"A={i}\0B=1\0".encode(), {})
    assert 0 < len(spawn._heads) <= spawn.MAX_HEADS
    # A large environment is split each time rather than kept.
    spawn._heads.clear()
    big = b"BIG=" + b"x" * spawn.MAX_HEAD_BYTES + b"\0LAST=1\0"
    assert spawn.Environ.from_block(big, {}).entries == big.split(b"\0")[:2]
    assert not spawn._heads


def test_a_child_spawned_with_an_environment_block_is_the_one_popen_makes(tmp_path: Path) -> None:
    import json

    block = "".join(f"{k}={v}\0" for k, v in ENV.items()).encode()
    code, out = run_lean([PY, "-c", REPORT], str(tmp_path), spawn.Environ.from_block(block, {"OWN": "x"}))
    assert code == 0
    _, expected = run_popen([PY, "-c", REPORT], str(tmp_path), dict(ENV, OWN="x"))
    assert json.loads(out)["env"] == json.loads(expected)["env"]


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"#!/bin/sh\necho\n", "/bin/sh"),
        (b"#! /usr/bin/env python3\n", "/usr/bin/env"),
        (b"#!/usr/bin/python3\t-u\n", "/usr/bin/python3"),
        # As the kernel reads it: the carriage return of Windows line ends is part of the name.
        (b"#!/bin/sh\r\necho\r\n", "/bin/sh\r"),
        (b"#!\n", None),
        (b"#!", None),
        (b"echo no line\n", None),
        (b"\x7fELF", None),
    ],
)
def test_the_interpreter_a_script_names(tmp_path: Path, head: bytes, named: str | None) -> None:
    script = tmp_path / "s"
    script.write_bytes(head)
    assert spawn.interpreter_of(str(script)) == named


def test_the_program_an_exec_would_have_found(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tool").write_text("#!/nowhere\n")
    (tmp_path / "here").write_text("")
    path = f"/no/such/dir:{bin_dir}"
    assert spawn.existing_program("tool", path, None) == str(bin_dir / "tool")
    assert spawn.existing_program("absent", path, None) is None
    # A path with a slash is taken from the job's working directory, not the worker's.
    assert spawn.existing_program("./here", path, str(tmp_path)) == os.path.join(tmp_path, "./here")
    assert spawn.existing_program("./here", path, "/") is None
    # A relative PATH entry too (the empty one is the working directory).
    assert spawn.existing_program("here", ":/no/such/dir", str(tmp_path)) == str(tmp_path / "here")
