"""The verbs of the `kueue` command against a fake Client: what goes to stdout
and stderr, and the exit statuses. The real server is in the end-to-end tests."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kueue.config import template
from kueue.timestamps import timestamp
from kueue.v1 import cluster_service_pb2, common_pb2, job_service_pb2
from kueue_client import api, submission
from kueue_client.cli import main
from kueue_client.errors import KueueError
from kueue_client.spec import SpecFields

State = common_pb2.JobState
NOW = time.time()


def job(job_id: int, state: int, **fields: Any) -> common_pb2.Job:
    spec = common_pb2.JobSpec(command=["./run.sh", str(job_id)], cwd="/work/project", user="alice")
    return common_pb2.Job(id=job_id, state=state, spec=spec, issued_at=timestamp(NOW - 60), **fields)


class FakeClient:
    """Stands in for kueue_client.api.Client; records what the CLI asked."""

    submitted: list[tuple[common_pb2.JobSpec, list[dict[str, str]]]]
    final: dict[int, common_pb2.Job]

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        self.address = "fake:1"
        FakeClient.last = self

    def submit(
        self, spec: common_pb2.JobSpec, instances: Sequence[dict[str, str]] | None = None
    ) -> job_service_pb2.SubmitJobsResponse:
        FakeClient.submitted.append((spec, list(instances or [])))
        first = 100 + len(FakeClient.submitted) * 10
        count = len(instances or [None])
        return job_service_pb2.SubmitJobsResponse(
            job_ids=list(range(first, first + count)), warnings=["no connected worker could ever fit 64 cpus"]
        )

    def submit_fields(
        self, fields: SpecFields, instances: Sequence[dict[str, str]] | None = None
    ) -> submission.Submitted:
        """FakeSubmitter.submit: `kueue cmd` submits without protobuf (kueue_client/submission.py)."""
        resp = self.submit(fields.to_proto(), instances)
        return submission.Submitted(list(resp.job_ids), list(resp.warnings))

    def wait(self, ids: Iterable[int], on_change: Any = None) -> list[common_pb2.Job]:
        return [FakeClient.final.get(i) or job(i, State.JOB_STATE_SUCCEEDED, exit_code=0) for i in ids]

    def list_jobs(self, states: Iterable[Any] = (), limit: int = 0, include_env: bool = False) -> Any:
        FakeClient.list_args = (list(states), limit)
        jobs = [
            job(1, State.JOB_STATE_RUNNING, started_at=timestamp(NOW - 5), worker_name="w1"),
            job(2, State.JOB_STATE_FAILED, exit_code=3, worker_name="w1"),
        ]
        summary = common_pb2.JobSummary(running=1, failed=1, average_run_time_seconds=3)
        return job_service_pb2.ListJobsResponse(jobs=jobs, summary=summary, matching=2)

    def get_job(self, id: int, tail_bytes: int = 0) -> job_service_pb2.GetJobResponse:
        if id == 404:
            raise KueueError("no job 404", exit_status=2, code="NOT_FOUND")
        return job_service_pb2.GetJobResponse(
            job=job(id, State.JOB_STATE_SUCCEEDED, exit_code=0, stdout_bytes=6, comment="all good"),
            stdout_tail=b"hello\n",
            stderr_tail=b"",
        )

    def cancel(self, id: int, kill: bool = False) -> common_pb2.Job:
        if id == 2 and not kill:
            raise KueueError("job 2 is running on w1; use --kill to stop it", code="FAILED_PRECONDITION")
        if id == 2:
            return job(2, State.JOB_STATE_RUNNING, kill_requested=True)
        return job(id, State.JOB_STATE_CANCELED, finished_at=timestamp(NOW))

    def clean(self, all: bool = False) -> int:
        return 5 if all else 1

    def list_workers(self, include_disconnected: bool = False) -> list[common_pb2.Worker]:
        return [common_pb2.Worker(id="id-1", name="w1", connected=True)]

    def get_worker(self, id: str) -> cluster_service_pb2.GetWorkerResponse:
        return cluster_service_pb2.GetWorkerResponse(
            worker=common_pb2.Worker(id="id-1", name=id, connected=True)
        )

    def list_resources(self) -> list[common_pb2.GlobalResource]:
        return [common_pb2.GlobalResource(name="genus", total=2, used=1)]

    def read_output(self, id: int, streams: Any = (), offset: int = 0, follow: bool = False) -> Iterator[Any]:
        yield job_service_pb2.ReadOutputResponse(stream=1, offset=0, data=b"line 1\n")
        yield job_service_pb2.ReadOutputResponse(
            stream=1, offset=7, data=b"line 2\n", finished_job=job(id, State.JOB_STATE_FAILED, exit_code=4)
        )

    def attach(self, spec: common_pb2.JobSpec, **options: Any) -> Any:
        from kueue_client.attach import AttachResult

        FakeClient.attached = (spec, options)
        return AttachResult(7, job(7, State.JOB_STATE_FAILED, signal=2), exit_status=130)

    def close(self) -> None:
        pass


class FakeSubmitter:
    """Stands in for kueue_client.submission.Submitter, recording into FakeClient."""

    def __init__(self, config: Any) -> None:
        self.submit = FakeClient().submit_fields

    def __enter__(self) -> FakeSubmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_client(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeClient.submitted = []
    FakeClient.final = {}
    monkeypatch.setattr(api, "Client", FakeClient)
    monkeypatch.setattr(submission, "Submitter", FakeSubmitter)
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    text = template("t" * 64).replace("job_default_cpus = 1", "job_default_cpus = 3")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def run(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--config", str(config), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cmd_prints_only_the_id_and_warns_on_stderr(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = run(capsys, config, "cmd", "-r", "64", "--resource", "genus", "./run.sh", "-x")
    assert code == 0
    assert out == "110\n"
    assert err == "kueue: warning: no connected worker could ever fit 64 cpus\n"
    spec, instances = FakeClient.submitted[0]
    assert list(spec.command) == ["./run.sh", "-x"] and not spec.shell
    assert spec.resources.cpus == 3  # client_settings.job_default_cpus
    assert spec.resources.ram_mb == 64 and spec.resources.slots == 1
    assert dict(spec.resources.global_resources) == {"genus": 1}
    assert instances == []


def test_cmd_array_is_one_submission(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _ = run(capsys, config, "cmd", "--array", "1-5:2", "echo $KUEUE_ARRAY_ID")
    assert code == 0
    assert out.split() == ["110", "111", "112"]
    assert len(FakeClient.submitted) == 1
    spec, instances = FakeClient.submitted[0]
    assert spec.shell
    assert instances == [{"KUEUE_ARRAY_ID": "1"}, {"KUEUE_ARRAY_ID": "3"}, {"KUEUE_ARRAY_ID": "5"}]


def test_cmd_each_line_from_stdin(
    capsys: pytest.CaptureFixture[str], config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a.txt\n\nb.txt\n"))
    code, out, _ = run(capsys, config, "cmd", "--each-line", "-", "./convert.sh")
    assert code == 0 and out.split() == ["110", "111"]
    assert FakeClient.submitted[0][1] == [{"KUEUE_ENTRY": "a.txt"}, {"KUEUE_ENTRY": "b.txt"}]


def test_cmd_no_env(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    run(capsys, config, "cmd", "--no-env", "env")
    spec = FakeClient.submitted[0][0]
    assert spec.use_worker_env and not spec.env


def test_cmd_wait_prints_and_returns_the_exit_code(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    FakeClient.final = {111: job(111, State.JOB_STATE_FAILED, signal=15)}
    code, out, _ = run(capsys, config, "cmd", "-w", "--array", "1-3", "./sim.sh")
    assert out.split() == ["110", "111", "112", "0", "143", "0"]
    assert code == 143


def test_run_builds_the_spec_like_cmd_and_exits_with_the_jobs_status(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, out, err = run(
        capsys, config, "run", "-r", "64", "--resource", "genus", "--no-env", "-q", "./sim.sh", "-q"
    )
    assert code == 130 and out == "" and err == ""
    spec, options = FakeClient.attached
    assert list(spec.command) == ["./sim.sh", "-q"] and not spec.shell
    assert spec.resources.cpus == 3 and spec.resources.ram_mb == 64
    assert dict(spec.resources.global_resources) == {"genus": 1}
    assert spec.use_worker_env and not spec.env
    assert not spec.stdout_path and not spec.stderr_path
    assert options["forward_signals"] and not options["status_line"] and not options["kill_on_detach"]
    run(capsys, config, "run", "--kill-on-detach", "echo $HOME")
    spec, options = FakeClient.attached
    assert spec.shell and options["kill_on_detach"]
    assert spec.env["PWD"] == spec.cwd  # the environment goes as with cmd


def test_wait_exits_with_the_first_failing_code(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    FakeClient.final = {
        5: job(5, State.JOB_STATE_FAILED, exit_code=3),
        6: job(6, State.JOB_STATE_CANCELED, finished_at=timestamp(NOW)),
    }
    code, out, _ = run(capsys, config, "wait", "4", "5", "6")
    assert code == 3
    assert out.splitlines()[1] == "5: failed with code 3"
    code, _, _ = run(capsys, config, "wait", "6")
    assert code == 1  # canceled


def test_wait_ctrl_c_exits_130_quietly(
    capsys: pytest.CaptureFixture[str], config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: FakeClient, ids: Any, on_change: Any = None) -> list[common_pb2.Job]:
        raise KeyboardInterrupt

    monkeypatch.setattr(FakeClient, "wait", interrupted)
    code, out, err = run(capsys, config, "wait", "4")
    assert code == 130 and out == "" and err == ""


def test_ls_piped_is_plain_text_with_all_rows(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _ = run(capsys, config, "ls", "-r", "-f")
    assert code == 0
    assert FakeClient.list_args == (["running", "failed"], 0)  # piped: no limit
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0].split() == ["id", "directory", "command", "status", "worker"]
    assert "running for" in lines[1] and "failed with code 3" in lines[2]
    assert lines[3] == "0 pending, 0 offered, 1 running, 0 succeeded, 1 failed, 0 canceled"


def test_ls_json(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _ = run(capsys, config, "ls", "--json", "-n", "7")
    assert code == 0 and FakeClient.list_args == ([], 7)
    data = json.loads(out)
    assert [j["id"] for j in data["jobs"]] == ["1", "2"]
    assert data["jobs"][1]["exit_code"] == 3
    assert data["summary"]["running"] == "1"


def test_show_prints_fields_and_output_tail(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _ = run(capsys, config, "show", "9")
    assert code == 0
    assert "comment:" in out and "all good" in out
    assert "--- stdout ---\nhello\n" in out
    assert "--- stderr: empty ---" in out
    code, out, _ = run(capsys, config, "show", "9", "--json")
    data = json.loads(out)
    assert data["job"]["id"] == "9" and data["stdout_tail"] == "hello\n"


def test_unknown_job_is_exit_2(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = run(capsys, config, "show", "404")
    assert code == 2 and out == "" and err == "kueue: no job 404\n"


def test_rm_goes_on_after_a_refusal(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = run(capsys, config, "rm", "2", "3")
    assert code == 1
    assert err == "kueue: job 2 is running on w1; use --kill to stop it\n"
    assert out.startswith("job 3: canceled on")
    code, out, _ = run(capsys, config, "rm", "-k", "2")
    assert code == 0 and out == "job 2: killing\n"


def test_clean(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    assert run(capsys, config, "clean")[1] == "removed 1 job\n"
    assert run(capsys, config, "clean", "-a")[1] == "removed 5 jobs\n"


def test_workers_resources_and_output(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _ = run(capsys, config, "workers", "--json")
    assert code == 0 and json.loads(out)["workers"][0]["name"] == "w1"
    code, out, _ = run(capsys, config, "show-worker", "w1")
    assert code == 0 and "name:" in out and "w1" in out
    code, out, _ = run(capsys, config, "resources")
    assert code == 0 and out.splitlines()[1].split() == ["genus", "1/2"]


def test_down_with_nothing_running(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(template("t" * 64).replace('data_dir = ""', f'data_dir = "{tmp_path / "data"}"'))
    code, out, _ = run(capsys, config, "down")
    assert code == 0 and out.startswith("no local cluster is running")


def test_down_with_stale_pids_signals_nobody(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import os

    config = tmp_path / "config.toml"
    config.write_text(template("t" * 64).replace('data_dir = ""', f'data_dir = "{tmp_path / "data"}"'))
    state = tmp_path / "data" / "local-cluster.json"
    state.parent.mkdir()
    # This very test process: alive, but not a kueue program (as after pid reuse).
    me = {"pid": os.getpid(), "create_time": 0.0, "log": "x.log", "command": ["kueue_worker"]}
    state.write_text(json.dumps({"server": me, "worker": me}))
    code, out, _ = run(capsys, config, "down")
    assert code == 0
    assert out.splitlines() == [
        f"kueue_worker (pid {os.getpid()}) was not running",
        f"kueue_server (pid {os.getpid()}) was not running",
    ]
    assert not state.exists()


# ------------------------------------------------------------------ every listing

LISTINGS = [["ls"], ["workers"], ["show-worker", "w1"], ["resources"], ["show", "9"]]


class Terminal(io.TextIOWrapper):
    """A stdout that says it is a terminal (with a byte buffer, as `show` writes output tails raw)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", write_through=True)

    def isatty(self) -> bool:
        return True

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode()  # type: ignore[attr-defined]


@pytest.mark.parametrize("argv", LISTINGS)
def test_every_listing_has_json(capsys: pytest.CaptureFixture[str], config: Path, argv: list[str]) -> None:
    code, out, err = run(capsys, config, *argv, "--json")
    assert code == 0 and err == ""
    assert isinstance(json.loads(out), dict)


@pytest.mark.parametrize("argv", LISTINGS)
def test_colours_on_a_terminal_only(
    capsys: pytest.CaptureFixture[str], config: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    code, piped, _ = run(capsys, config, *argv)
    assert code == 0 and piped.strip() and "\x1b" not in piped
    for no_color in (False, True):
        if no_color:
            monkeypatch.setenv("NO_COLOR", "1")
        terminal = Terminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        assert main(["--config", str(config), *argv]) == 0
        shown = terminal.text()
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        if no_color:
            assert "\x1b" not in shown, shown
        else:
            assert "\x1b[" in shown, shown
