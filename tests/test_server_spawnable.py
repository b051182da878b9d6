"""The server refuses at submission what no exec could take, rather than
queueing a job that only fails, or that every worker rejects, later."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kueue.v1 import common_pb2
from kueue_client.errors import KueueError
from kueue_server.limits import (
    EXEC_STRING_BYTES,
    EXEC_TOTAL_BYTES,
    check_instance_envs,
    check_spawnable,
    exec_size_warnings,
)
from kueue_server.scheduler import SchedulerError
from tests.cluster import Cluster


def spec(**fields: object) -> common_pb2.JobSpec:
    base: dict[str, object] = {"command": ["true"], "cwd": "/tmp", "resources": common_pb2.Resources(slots=1)}
    base.update(fields)
    return common_pb2.JobSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (spec(command=["echo", "a\0b"]), "argument 1 of the command contains a NUL byte"),
        (spec(cwd="/tmp/a\0b"), "cwd contains a NUL byte"),
        (spec(stdout_path="/tmp/o\0"), "stdout_path contains a NUL byte"),
        (spec(stderr_path="\0"), "stderr_path contains a NUL byte"),
        (spec(env={"A=B": "1"}), "bad environment variable name 'A=B'"),
        (spec(env={"": "1"}), "bad environment variable name ''"),
        (spec(env={"A\0": "1"}), "bad environment variable name"),
        (spec(env={"A": "x\0y"}), "environment variable A contains a NUL byte"),
    ],
)
def test_what_no_exec_takes_is_refused(bad: common_pb2.JobSpec, says: str) -> None:
    with pytest.raises(SchedulerError) as err:
        check_spawnable(bad)
    assert err.value.code == "INVALID_ARGUMENT"
    assert says in str(err.value)


def test_an_instance_environment_is_checked_too() -> None:
    check_instance_envs(spec(), [{"KUEUE_ENTRY": "fine"}])
    with pytest.raises(SchedulerError):
        check_instance_envs(spec(), [{"KUEUE_ENTRY": "fine"}, {"KUEUE_ENTRY": "a\0b"}])


def test_ordinary_specs_pass() -> None:
    check_spawnable(spec(command=["sh", "-c", "echo $A"], env={"A": "x=y", "PATH": "/bin"}, cwd="/t m/ü"))


def test_a_nul_in_the_working_directory_is_refused_and_nothing_is_queued(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c")
    try:
        cluster.start_server()
        with cluster.client() as client:
            with pytest.raises(KueueError) as err:
                client.submit(spec(cwd=str(tmp_path) + "/a\0b"))
            assert err.value.code == "INVALID_ARGUMENT" and err.value.exit_status == 2
            assert "cwd contains a NUL byte" in str(err.value)
            assert list(client.list_jobs().jobs) == []
            assert client.submit(spec(cwd=str(tmp_path))).job_ids  # the server is still there
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("job", "instances", "says"),
    [
        (
            spec(command=["echo", "x" * EXEC_STRING_BYTES]),
            None,
            "argument 1 of the command takes 131073 bytes",
        ),
        (
            spec(command=["echo $X" + "x" * EXEC_STRING_BYTES], shell=True),
            None,
            "the shell command line takes 131080 bytes",
        ),
        # Characters over one byte count as what they take in UTF-8.
        (
            spec(command=["echo", "é" * (EXEC_STRING_BYTES // 2)]),
            None,
            "argument 1 of the command takes 131073",
        ),
        (spec(env={"BIG": "y" * EXEC_STRING_BYTES}), None, "environment variable BIG takes 131077 bytes"),
        (
            spec(env={"A": "1"}),
            [{"KUEUE_ENTRY": "1"}, {"KUEUE_ENTRY": "y" * EXEC_STRING_BYTES}],
            "KUEUE_ENTRY",
        ),
        # Each instance's variables count, not only those of the largest one.
        (
            spec(env={"A": "1"}),
            [{"X": "x" * EXEC_STRING_BYTES}, {"Y": "y" * 100_000, "Z": "z" * 100_000}],
            "environment variable X takes 131075 bytes",
        ),
        (
            spec(env={f"V{i}": "y" * 100_000 for i in range(EXEC_TOTAL_BYTES // 100_000 + 1)}),
            None,
            "the command line and environment take",
        ),
    ],
)
def test_what_an_exec_on_a_typical_worker_refuses_is_warned_about(
    job: common_pb2.JobSpec, instances: list[dict[str, str]] | None, says: str
) -> None:
    (warning,) = exec_size_warnings(job, instances)
    assert says in warning
    assert warning.endswith("the job will fail to start there; pass the data in a file instead")


def test_what_an_exec_takes_is_not_warned_about() -> None:
    assert exec_size_warnings(spec(command=["echo", "x" * (EXEC_STRING_BYTES - 1)]), None) == []
    assert exec_size_warnings(spec(env={"A": "y" * (EXEC_STRING_BYTES - 3)}), [{"B": "1"}]) == []
    # The worker's own environment is not known here.
    assert exec_size_warnings(spec(use_worker_env=True, env={"BIG": "y" * EXEC_STRING_BYTES}), None) == []


@pytest.mark.skipif(
    os.sysconf("SC_PAGE_SIZE") != 4096 or os.sysconf("SC_ARG_MAX") < EXEC_TOTAL_BYTES,
    reason="the warning is for workers with 4 KiB pages",
)
def test_kueue_cmd_warns_and_the_job_fails_to_start_as_warned(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c")
    try:
        cluster.start_server()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        # No command line can carry such an argument to `kueue` itself; a line
        # of --each-line's file can (it becomes $KUEUE_ENTRY).
        entries = tmp_path / "lines.txt"
        entries.write_text("short\n" + "x" * EXEC_STRING_BYTES + "\n")
        result = cluster.kueue("cmd", "--each-line", str(entries), "true", cwd=tmp_path)
        short, long = result.stdout.split()
        (warning,) = result.stderr.splitlines()
        assert warning.startswith(
            "kueue: warning: environment variable KUEUE_ENTRY takes 131085 bytes, over the 131072 bytes"
        ), warning
        assert cluster.kueue("wait", short).returncode == 0  # a warning, not a refusal
        waited = cluster.kueue("wait", long, check=False)
        assert waited.returncode == 126
        with cluster.client() as client:
            job = client.get_job(int(long)).job
        assert "argument list too long: one argument or environment variable takes" in job.comment
        assert job.start_failure == common_pb2.START_FAILURE_NOT_EXECUTABLE
    finally:
        cluster.close()
