"""`kueue show`: fields, history and hints, rendered from fixed messages."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import pytest

from kueue.timestamps import timestamp
from kueue.v1 import common_pb2
from kueue_client import job_details

State = common_pb2.JobState
Out = common_pb2.AttemptOutcome
NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LONG_COMMAND = ["python", "train.py", *[f"--option-{i}=value-{i}" for i in range(7)]]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def at(seconds_ago: float) -> object:
    return timestamp(NOW - seconds_ago)


def attempt(number: int, worker: str, offered: float, started: float | None, ended: float | None,
            outcome: int, reason: str = "") -> common_pb2.Attempt:  # fmt: skip
    a = common_pb2.Attempt(
        number=number, worker_name=worker, offered_at=at(offered), outcome=outcome, reason=reason
    )
    if started is not None:
        a.started_at.CopyFrom(at(started))
    if ended is not None:
        a.ended_at.CopyFrom(at(ended))
    return a


def make_job(state: int = State.JOB_STATE_FAILED, **fields: object) -> common_pb2.Job:
    spec = common_pb2.JobSpec(
        command=fields.pop("command", ["python", "train.py", "--epochs", "10"]),
        cwd="/home/alice/projects/2/3_Synthesis/run",
        env={"PATH": "/bin", "HOME": "/home/alice"},
        resources=common_pb2.Resources(slots=1, cpus=2, ram_mb=1024, global_resources={"genus": 1}),
        user="alice",
        submit_host="desk",
        stdout_path=fields.pop("stdout_path", ""),
        stderr_path=fields.pop("stderr_path", ""),
    )
    return common_pb2.Job(id=42, state=state, spec=spec, issued_at=at(600), **fields)


CRASHED_THEN_FAILED = make_job(
    offered_at=at(300),
    started_at=at(299),
    finished_at=at(10),
    attempt=2,
    worker_name="lab07",
    worker_id="w-7",
    exit_code=2,
    run_time_seconds=289,
    peak_memory_bytes=123_456_789,
    stdout_bytes=5000,
    attempts=[
        attempt(
            1, "lab03", 599, 598, 301, Out.ATTEMPT_OUTCOME_WORKER_LOST, "worker lab03 lost (silent for 300 s)"
        ),
        attempt(2, "lab07", 300, 299, 10, Out.ATTEMPT_OUTCOME_FINISHED),
    ],
)


def history(job: common_pb2.Job) -> list[tuple[str, str]]:
    return [(job_details._event_time(e.time)[11:], e.text) for e in job_details.job_history(job, NOW)]


# ------------------------------------------------------------------ fields


def test_fields_of_a_finished_job() -> None:
    text = job_details.job_details_text(CRASHED_THEN_FAILED, NOW)
    fields = dict(re.findall(r"^([a-z ]+):\s+(.*)$", text, re.MULTILINE))
    assert fields["status"] == "failed with code 2"
    assert fields["command"] == "python train.py --epochs 10"
    assert fields["working directory"] == "/home/alice/projects/2/3_Synthesis/run"
    assert fields["resources"] == "1 slot, 2 cpus, 1.0 GiB RAM, genus=1"
    assert fields["submitted by"] == "alice@desk"
    assert fields["environment"] == "2 variables from the client"
    assert fields["worker"] == "lab07 (w-7)"
    assert fields["attempts"] == "2 (1 worker lost)"
    assert fields["exit code"] == "2"
    assert fields["run time"] == "4m 49s"
    assert fields["peak memory"] == "118 MiB"
    assert fields["stdout"] == "captured, 4.9 KiB"
    assert "\x1b" not in text


def test_failed_to_start_shows_the_reason() -> None:
    job = make_job(
        attempt=1,
        worker_name="node02",
        offered_at=at(5),
        finished_at=at(4),
        comment="failed to start: No such file or directory: './x'",
    )
    text = job_details.job_details_text(job, NOW)
    assert re.search(r"status:\s+failed to start", text)
    assert re.search(r"comment:\s+failed to start: No such file or directory: './x'", text)
    assert "start failure" not in text  # a job from before the field: its kind is unknown
    job.start_failure = common_pb2.START_FAILURE_NOT_FOUND
    text = job_details.job_details_text(job, NOW)
    assert re.search(r"start failure:\s+command not found \(exit status 127, as from a shell\)", text)
    # No attempts from the server (an older one): the history comes from the job's fields.
    assert history(job)[-1] == ("22:13:16", "failed to start: No such file or directory: './x'")


# ------------------------------------------------------------------ history


def test_history_of_a_job_whose_worker_was_lost() -> None:
    assert history(CRASHED_THEN_FAILED) == [
        ("22:03:20", "issued"),
        ("22:03:21", "offered to lab03 (attempt 1)"),
        ("22:03:22", "started on lab03 after waiting 2s"),
        ("22:08:19", "worker lab03 lost (silent for 300 s); queued again"),
        ("22:08:20", "offered to lab07 (attempt 2)"),
        ("22:08:21", "started on lab07"),
        ("22:13:10", "failed with code 2"),
    ]
    styles = [e.style for e in job_details.job_history(CRASHED_THEN_FAILED, NOW)]
    assert styles == ["", "dim", "blue", "yellow", "dim", "blue", "red"]


def test_history_of_rejections_timeouts_and_a_pending_job() -> None:
    job = make_job(
        State.JOB_STATE_PENDING,
        attempt=6,
        comment="worker lab01 shut down; queued again",
        attempts=[
            attempt(4, "lab02", 500, None, 499, Out.ATTEMPT_OUTCOME_REJECTED, "no directory /home/alice"),
            attempt(
                5, "lab03", 400, None, 340, Out.ATTEMPT_OUTCOME_UNANSWERED, "offer to lab03 not answered"
            ),
            attempt(6, "lab01", 300, 299, 100, Out.ATTEMPT_OUTCOME_WORKER_STOPPED, "worker lab01 shut down"),
        ],
    )
    assert [text for _, text in history(job)] == [
        "issued",
        "attempts 1-3: not kept",
        "offered to lab02 (attempt 4)",
        "rejected by lab02: no directory /home/alice; queued again",
        "offered to lab03 (attempt 5)",
        "offer not answered by lab03; queued again",
        "offered to lab01 (attempt 6)",
        "started on lab01",
        "worker lab01 shut down; queued again",
    ]
    assert re.search(r"attempts:\s+6 \(1 worker stopped, 1 rejected, 1 not answered\)",
                     job_details.job_details_text(job, NOW))  # fmt: skip


def test_history_of_canceled_jobs() -> None:
    pending = make_job(State.JOB_STATE_CANCELED, finished_at=at(60))
    assert history(pending) == [("22:03:20", "issued"), ("22:12:20", "canceled")]
    killed = make_job(
        State.JOB_STATE_CANCELED,
        attempt=1,
        worker_name="lab01",
        offered_at=at(100),
        started_at=at(99),
        finished_at=at(50),
        comment="killed on request",
    )
    assert history(killed)[-1] == ("22:12:30", "canceled: killed on request")


def test_history_of_a_running_job_from_an_older_server() -> None:
    job = make_job(
        State.JOB_STATE_RUNNING, attempt=1, worker_name="lab01", offered_at=at(100), started_at=at(99)
    )
    assert [text for _, text in history(job)] == [
        "issued",
        "offered to lab01 (attempt 1)",
        "started on lab01 after waiting 8m 21s",
    ]


# ------------------------------------------------------------------ the panel


@pytest.mark.parametrize("width", [80, 200])
def test_panel_fits_the_terminal_and_is_coloured(width: int) -> None:
    from rich.console import Console

    job = common_pb2.Job()
    job.CopyFrom(CRASHED_THEN_FAILED)
    job.spec.command[:] = LONG_COMMAND
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system="standard").print(
        job_details.job_details_rich(job, NOW)
    )
    raw = out.getvalue()
    plain = ANSI.sub("", raw)
    lines = plain.splitlines()
    assert all(len(line) <= width for line in lines), plain
    assert lines[0].startswith("╭─ job 42: failed with code 2 ") and lines[-1].startswith("╰")
    assert "\x1b[31m" in raw  # red: failed
    # Nothing is lost to the width: a long command folds onto more lines.
    folded = "".join(line.strip("│ ") for line in lines)
    assert "".join(" ".join(LONG_COMMAND).split()) in "".join(folded.split())
    for event in ("worker lab03 lost (silent for 300 s); queued again", "offered to lab07 (attempt 2)"):
        assert event in plain
    if width == 200:
        assert " ".join(LONG_COMMAND) in plain


def test_plain_text_is_never_cut() -> None:
    job = make_job(command=LONG_COMMAND)
    assert " ".join(LONG_COMMAND) in job_details.job_details_text(job, NOW)


# ------------------------------------------------------------------ output


def test_output_tail_header() -> None:
    assert job_details.output_tail_header("stdout", b"abc", 3, False) == "--- stdout ---"
    assert (
        job_details.output_tail_header("stdout", b"abc", 5000, False) == "--- stdout: last 3 B of 4.9 KiB ---"
    )
    assert job_details.output_tail_header("stderr", b"", 0, False) == "--- stderr: empty ---"


def test_log_hint_says_where_the_rest_is() -> None:
    assert job_details.log_hint(CRASHED_THEN_FAILED) == (
        "all of the output: kueue log 42 (--stderr or --both for stderr)"
    )
    running = make_job(State.JOB_STATE_RUNNING)
    assert (
        job_details.log_hint(running) == "follow the output: kueue log -f 42 (--stderr or --both for stderr)"
    )
    assert job_details.log_hint(make_job(State.JOB_STATE_SUCCEEDED)) == ""  # nothing was written
    only_stderr = make_job(State.JOB_STATE_SUCCEEDED, stdout_path="out.txt", stderr_bytes=3)
    assert job_details.log_hint(only_stderr) == "all of stderr: kueue log --stderr 42"
    to_files = make_job(State.JOB_STATE_RUNNING, stdout_path="out.txt", stderr_path="null")
    assert job_details.log_hint(to_files) == ""


@pytest.mark.parametrize(
    ("sizes", "stdout", "stderr"),
    [
        # Only a stream past the smallest cap (1 MiB) can have lost its start.
        ((4_000_000, 0), "captured, 4 MiB (only the tail is kept)", "captured, 0 B"),
        ((0, 4_000_000), "captured, 0 B", "captured, 4 MiB (only the tail is kept)"),
        ((4_000_000, 5), "captured, 4 MiB (only the tail is kept)", "captured, 5 B"),
        # Both past it: the job's one flag cannot say which.
        (
            (4_000_000, 3_000_000),
            "if over the server's job_output_cap_mb",
            "if over the server's job_output_cap_mb",
        ),
    ],
)
def test_only_a_stream_that_can_have_been_cut_says_so(
    sizes: tuple[int, int], stdout: str, stderr: str
) -> None:
    out, err = sizes
    texts = {
        name: job_details._output_text("", size, other, True)
        for name, size, other in (("stdout", out, err), ("stderr", err, out))
    }
    assert stdout in texts["stdout"] and stderr in texts["stderr"], texts
    assert job_details._output_text("", 4_000_000, 0, False) == "captured, 4 MiB"
