"""End to end: a job whose process cannot be started records what kind of
failure it was (Job.start_failure), and `kueue wait` / `kueue run` exit as
bash does for it (127 not found, 126 not executable, 1 otherwise); the
kind outlives a restart of the server (its SQLite store)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kueue.v1 import common_pb2
from tests.cluster import Cluster, _env, wait_for

NOT_FOUND = common_pb2.START_FAILURE_NOT_FOUND
NOT_EXECUTABLE = common_pb2.START_FAILURE_NOT_EXECUTABLE
OTHER = common_pb2.START_FAILURE_OTHER


def _cases(work: Path) -> dict[str, tuple[list[str], int, int, str]]:
    """name -> (kueue cmd arguments, kind, what bash exits with, a piece of the comment)."""
    script = work / "no-interpreter.sh"
    script.write_text("#!/no/such/interpreter\necho never\n")
    script.chmod(0o755)
    windows = work / "windows-line-ends.sh"
    windows.write_bytes(b"#!/bin/sh\r\necho never\r\n")
    windows.chmod(0o755)
    plain = work / "plain.txt"
    plain.write_text("echo never\n")  # not executable
    (work / "a-directory").mkdir()
    return {
        "missing command": (["no-such-command-here"], NOT_FOUND, 127, "No such file or directory"),
        "missing path": (["./no-such-file"], NOT_FOUND, 127, "No such file or directory"),
        "missing interpreter": (
            ["./no-interpreter.sh"],
            NOT_FOUND,
            127,
            "its interpreter /no/such/interpreter (#! line) was not found",
        ),
        "Windows line ends": (
            ["./windows-line-ends.sh"],
            NOT_FOUND,
            127,
            "its #! line ends in a carriage return (Windows line ends: convert it with dos2unix",
        ),
        "not executable": (["./plain.txt"], NOT_EXECUTABLE, 126, "Permission denied"),
        "a directory": (["./a-directory"], NOT_EXECUTABLE, 126, "ermission denied"),
        # "No such file" in the comment, but nothing of the command's: bash
        # (`true > /missing/out`) exits 1, which the comment alone got wrong.
        "output file": (
            ["-o", "/no/such/dir/out.txt", "true"],
            OTHER,
            1,
            "cannot open the stdout file /no/such/dir/out.txt: No such file or directory",
        ),
    }


def _bash_status(argv: list[str], cwd: Path) -> int:
    """What bash exits with for the same command line, here."""
    line = f"{argv[2]} > {argv[1]}" if argv[0] == "-o" else " ".join(argv)
    return subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, timeout=30).returncode


def test_start_failures_are_told_apart_as_a_shell_does(ready: Cluster, tmp_path: Path) -> None:
    cluster, work = ready, tmp_path
    cases = _cases(work)
    ids = {}
    for name, (argv, _, bash, _) in cases.items():
        assert _bash_status(argv, work) == bash, f"{name}: this machine's bash differs"
        out = cluster.kueue("cmd", *argv, cwd=work).stdout.split()
        ids[name] = int(out[0])
    with cluster.client() as client:

        def all_failed() -> dict[str, common_pb2.Job] | None:
            jobs = {name: client.get_job(job_id).job for name, job_id in ids.items()}
            done = all(j.state == common_pb2.JOB_STATE_FAILED for j in jobs.values())
            return jobs if done else None

        jobs = wait_for(all_failed, 60, "every job to fail to start")
        for name, (_, kind, _, comment) in cases.items():
            job = jobs[name]
            assert job.start_failure == kind, (name, job)
            assert comment in job.comment, (name, job.comment)
            assert not job.HasField("exit_code"), name
    for name, (_, _, bash, comment) in cases.items():
        waited = cluster.kueue("wait", str(ids[name]), check=False)
        assert waited.returncode == bash, (name, waited)
        assert waited.stdout == f"{ids[name]}: failed to start\n", (name, waited)
        # Why, as `kueue cmd --wait` says it: the status line alone does not.
        (why,) = waited.stderr.splitlines()
        assert why.startswith(f"kueue: job {ids[name]} failed to start: ") and comment in why, (name, why)

    # The kind is kept in the store: a new server reads it back.
    cluster.stop_server()
    cluster.start_server()
    with cluster.client() as client:
        for name, (_, kind, _, _) in cases.items():
            assert client.get_job(ids[name]).job.start_failure == kind, name


def test_kueue_run_exits_as_bash_when_the_command_cannot_start(ready: Cluster, tmp_path: Path) -> None:
    cluster, work = ready, tmp_path
    for name, (argv, _, bash, comment) in _cases(work).items():
        if argv[0] == "-o":
            continue  # run sends the output here, never to a file
        result = subprocess.run(
            [sys.executable, "-m", "kueue_client", "--config", str(cluster.client_config), "run", *argv],
            capture_output=True,
            cwd=work,
            env=_env(),
            timeout=120,
        )
        assert result.returncode == bash, (name, result)
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1 and comment in lines[0], (name, lines)


def test_a_job_that_started_has_no_start_failure(ready: Cluster, tmp_path: Path) -> None:
    cluster = ready
    out = cluster.kueue("cmd", "--wait", "sh", "-c", "exit 127", cwd=tmp_path, check=False)
    assert out.returncode == 127
    job_id = int(out.stdout.split()[0])
    with cluster.client() as client:
        job = client.get_job(job_id).job
    assert job.state == common_pb2.JOB_STATE_FAILED and job.exit_code == 127
    assert job.start_failure == common_pb2.START_FAILURE_UNSPECIFIED
