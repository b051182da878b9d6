"""The server refuses at submission what no exec could take, rather than
queueing a job that only fails, or that every worker rejects, later."""

from __future__ import annotations

from pathlib import Path

import pytest

from kueue.v1 import common_pb2
from kueue_client.errors import KueueError
from kueue_server.limits import check_instance_envs, check_spawnable
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
