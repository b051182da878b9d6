"""Rendering of jobs, workers and resources, from fixed messages, without a server."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import pytest

from kueue.timestamps import timestamp
from kueue.v1 import cluster_service_pb2, common_pb2, job_service_pb2
from kueue_client import job_details, terminal, views
from kueue_client.formatting import (
    command_text,
    format_date,
    format_duration,
    format_mb,
    truncate_back,
    truncate_front,
)
from kueue_client.status import exit_status, first_failure, job_status, why_not_run

State = common_pb2.JobState
NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
CWD = "/home/alice/projects/2/3_Synthesis/run"
COMMAND = [
    "python",
    "train.py",
    "--epochs",
    "100",
    "--learning-rate",
    "0.001",
    "--data",
    "/data/sets/imagenet",
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_job(job_id: int, state: int, **fields: object) -> common_pb2.Job:
    spec = common_pb2.JobSpec(
        command=fields.pop("command", COMMAND),
        shell=fields.pop("shell", False),
        cwd=fields.pop("cwd", CWD),
        resources=common_pb2.Resources(slots=1, cpus=2, ram_mb=1024),
        user="alice",
        submit_host="desk",
    )
    return common_pb2.Job(id=job_id, state=state, spec=spec, issued_at=timestamp(NOW - 3600), **fields)


JOBS = [
    make_job(
        1, State.JOB_STATE_SUCCEEDED, run_time_seconds=3725, exit_code=0, worker_name="node01", attempt=1
    ),
    make_job(2, State.JOB_STATE_FAILED, exit_code=2, worker_name="node02", run_time_seconds=4),
    make_job(3, State.JOB_STATE_FAILED, signal=9, worker_name="node02"),
    make_job(4, State.JOB_STATE_FAILED, comment="failed to start: No such file or directory: './x'"),
    make_job(5, State.JOB_STATE_RUNNING, started_at=timestamp(NOW - 35), worker_name="node03"),
    make_job(6, State.JOB_STATE_OFFERED, offered_at=timestamp(NOW - 5), worker_name="node03"),
    make_job(7, State.JOB_STATE_PENDING),
    make_job(
        1234,
        State.JOB_STATE_CANCELED,
        finished_at=timestamp(NOW - 40 * 86400),
        command=["make && ./run > log"],
        shell=True,
    ),
]
SUMMARY = common_pb2.JobSummary(
    pending=1,
    offered=1,
    running=1,
    succeeded=1,
    failed=3,
    canceled=1,
    average_run_time_seconds=65,
    eta_seconds=600,
)


def rows(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


# ------------------------------------------------------------------ formatting


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (35, "35s"),
        (59.9, "59s"),
        (60, "1m 00s"),
        (245, "4m 05s"),
        (3720, "1h 02m"),
        (93784, "1d 02h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_date_is_short_for_recent_dates() -> None:
    assert format_date(NOW - 60, NOW) == "22:12:20"
    assert format_date(NOW - 40 * 86400, NOW) == "Oct 05 22:13"
    assert format_date(NOW - 400 * 86400, NOW) == "2022-10-10 22:13"
    assert format_date(None, NOW) == "-"


def test_truncate_front_keeps_the_end_of_a_path() -> None:
    assert truncate_front(CWD, 20) == "...2/3_Synthesis/run"
    assert truncate_front(CWD, len(CWD)) == CWD
    assert len(truncate_front(CWD, 2)) == 2


def test_truncate_back_keeps_the_start_of_a_command() -> None:
    assert truncate_back("python train.py --epochs 100", 18) == "python train.py..."
    assert truncate_back("short", 10) == "short"


def test_command_text_quotes_arguments_but_not_shell_commands() -> None:
    assert command_text(["echo", "a b", "c"], shell=False) == "echo 'a b' c"
    assert command_text(["make && ./run > log"], shell=True) == "make && ./run > log"
    assert command_text(["sh", "-c", "a\nb"], shell=False) == "sh -c 'a b'"


def test_format_mb() -> None:
    assert format_mb(512) == "512 MiB"
    assert format_mb(64000) == "62.5 GiB"


# ------------------------------------------------------------------ status


@pytest.mark.parametrize(
    ("index", "text", "style"),
    [
        (0, "finished after 1h 02m", "green"),
        (1, "failed with code 2", "red"),
        (2, "killed by SIGKILL", "red"),
        (3, "failed to start", "red"),
        (4, "running for 35s", "blue"),
        (5, "offered on 22:13:15", "dim"),
        (6, "pending since 21:13:20", ""),
        (7, "canceled on Oct 05 22:13", "yellow"),
    ],
)
def test_status_texts_and_colours(index: int, text: str, style: str) -> None:
    assert job_status(JOBS[index], NOW) == (text, style)


def test_kill_requested_shows_in_the_status() -> None:
    job = make_job(9, State.JOB_STATE_RUNNING, started_at=timestamp(NOW - 5), kill_requested=True)
    assert job_status(job, NOW)[0] == "running for 5s (killing)"


def test_exit_status_of_finished_jobs() -> None:
    # The fourth never started, its program not found: 127, as a shell says it.
    assert [exit_status(j) for j in JOBS[:4]] == [0, 2, 128 + 9, 127]
    assert exit_status(JOBS[7]) == 1  # canceled
    denied = make_job(8, State.JOB_STATE_FAILED, comment="cannot start ./x.sh: Permission denied")
    assert exit_status(denied) == 126
    assert exit_status(make_job(9, State.JOB_STATE_FAILED, comment="worker lost")) == 1
    assert first_failure([JOBS[0], JOBS[2], JOBS[1]]) == 137
    assert first_failure([JOBS[0]]) == 0


# ------------------------------------------------------------------ jobs table


@pytest.mark.parametrize("width", [80, 200])
def test_jobs_table_fits_the_width_and_cuts_paths_at_the_front(width: int) -> None:
    text = views.jobs_text(JOBS, SUMMARY, 100, width=width, now=NOW)
    lines = rows(text)
    assert all(len(line) <= width for line in lines), text
    header, first = lines[0], lines[1]
    assert header.split() == ["id", "directory", "command", "status", "worker"]
    _, cwd_cell, command_cell, *_ = re.split(r"\s{2,}", first.strip())
    if width == 80:
        # The directory is cut at its front, the command at its back.
        assert cwd_cell.startswith("...") and CWD.endswith(cwd_cell[3:]) and len(cwd_cell) < len(CWD)
        assert command_cell.endswith("...") and " ".join(COMMAND).startswith(command_cell[:-3])
    else:
        assert cwd_cell == CWD and command_cell == " ".join(COMMAND)
    assert "finished after 1h 02m" in first and "node01" in first
    assert "\x1b" not in text


def test_narrow_width_cuts_the_directory_like_the_reference() -> None:
    grid = views.jobs_grid(JOBS[:1], now=NOW)
    shown = views.visible_columns(grid, 70)
    widths = views.column_widths(grid, 70, shown)
    cwd_width = widths[shown.index(1)]
    assert truncate_front(CWD, cwd_width).startswith("...")
    assert views.grid_text(grid, 70).split("\n")[1].find(truncate_front(CWD, cwd_width)) > 0


def test_jobs_table_without_width_cuts_nothing() -> None:
    text = views.jobs_text(JOBS, SUMMARY, 8, now=NOW)
    assert CWD in text and " ".join(COMMAND) in text and "make && ./run > log" in text


def test_jobs_footer_counts_average_and_eta() -> None:
    text = views.jobs_text(JOBS, SUMMARY, 100, width=200, now=NOW)
    footer = rows(text)[-2:]
    assert footer[0] == "1 pending, 1 offered, 1 running, 1 succeeded, 3 failed, 1 canceled"
    assert "showing 8 of 100 jobs" in footer[1]
    assert "average run time 1m 05s" in footer[1]
    assert "ETA 10m 00s" in footer[1]


def test_eta_unknown_and_no_jobs() -> None:
    summary = common_pb2.JobSummary(pending=2)
    assert "ETA unknown" in views.jobs_text([], summary, 0, width=80, now=NOW)
    assert rows(views.jobs_text([], None, width=80, now=NOW)) == ["no jobs"]


@pytest.mark.parametrize("width", [80, 200])
def test_rich_jobs_table_is_coloured_and_fits(width: int) -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system="standard")
    console.print(views.jobs_rich(JOBS, SUMMARY, 100, width=width, now=NOW))
    text = out.getvalue()
    assert "\x1b[" in text
    plain = ANSI.sub("", text)
    assert all(len(line) <= width for line in plain.splitlines()), plain
    assert "running for 35s" in plain
    # Rich shows the same cells as the plain renderer.
    assert [line.rstrip() for line in plain.splitlines()] == rows(
        views.jobs_text(JOBS, SUMMARY, 100, width=width, now=NOW)
    )


def test_plain_when_not_a_terminal_or_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert terminal.use_rich(Tty())
    assert not terminal.use_rich(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not terminal.use_rich(Tty())


def test_jobs_json_uses_proto_field_names() -> None:
    resp = job_service_pb2.ListJobsResponse(jobs=JOBS[:2], summary=SUMMARY, matching=2)
    data = views.jobs_json(resp)
    assert set(data) >= {"jobs", "summary"}
    assert data["jobs"][0]["state"] == "JOB_STATE_SUCCEEDED"
    assert data["jobs"][0]["exit_code"] == 0
    assert data["jobs"][1]["worker_name"] == "node02"
    assert data["summary"]["failed"] == "3"  # uint64 in proto3 JSON


# ------------------------------------------------------------------ workers


def make_worker(name: str, connected: bool = True, load: float = 1.0) -> common_pb2.Worker:
    return common_pb2.Worker(
        id=f"3f2a9c1e-77aa-4bcd-9e00-{name:0>12}",
        name=name,
        connected=connected,
        system=common_pb2.SystemInfo(
            hostname=name,
            kernel="6.1.0-18-amd64",
            distribution="Debian GNU/Linux 12 (bookworm)",
            cpu_cores=16,
            cpu_frequency_mhz=3400,
            memory_total_mb=64000,
            memory_available_mb=30000,
            load_1=load,
            load_5=load / 2,
            load_15=load / 4,
            uptime_seconds=3 * 86400 + 3600,
        ),
        capacity=common_pb2.Resources(slots=10, cpus=16, ram_mb=60000),
        free=common_pb2.Resources(slots=6, cpus=4, ram_mb=30000),
        running_jobs=4,
        last_seen_at=timestamp(NOW - 60),
    )


WORKERS = [
    make_worker("node01", load=10.0),
    make_worker("idle", load=0.5),
    make_worker("gone", connected=False),
]


@pytest.mark.parametrize("width", [80, 200])
def test_workers_table(width: int) -> None:
    text = views.workers_text(WORKERS, width=width, now=NOW)
    lines = rows(text)
    assert all(len(line) <= width for line in lines), text
    assert "name" in lines[0] and "busy" in lines[0] and "load 1/5/15" in lines[0] and "uptime" in lines[0]
    assert "75%" in lines[1] and "4/10" in lines[1] and "3d 01h" in lines[1] and "3.4 GHz" in lines[1]
    assert "10.0 5.0 2.5" in lines[1]
    assert "offline" in lines[3]
    if width == 200:
        assert WORKERS[0].id in lines[1] and "Debian GNU/Linux 12 (bookworm)" in lines[1]
    else:
        assert WORKERS[0].id not in text  # the id column goes first on a narrow terminal


def test_a_process_of_a_split_worker_names_its_machine() -> None:
    # worker_processes = 2: the process has its own slots, the machine's CPUs and RAM.
    process = make_worker("node01/2", load=1.0)
    process.machine = "node01"
    fields = {f.label: f.value for f in views.worker_fields(process, NOW)}
    assert fields["machine"].startswith("node01 ")
    assert "machine" not in {f.label for f in views.worker_fields(WORKERS[0], NOW)}


def test_busy_and_load_are_coloured_green_to_red() -> None:
    grid = views.workers_grid(WORKERS, NOW)
    busy = grid.columns.index(next(c for c in grid.columns if c.header == "busy"))
    load = grid.columns.index(next(c for c in grid.columns if c.header == "load 1/5/15"))
    assert grid.rows[0][busy].style == "dark_orange"  # 75% busy
    assert grid.rows[0][load].style == "yellow"  # load 10 on 16 cores
    assert grid.rows[1][load].style == "green"
    assert grid.rows[2][busy].style == "dim"


def test_worker_details_with_jobs() -> None:
    resp = cluster_service_pb2.GetWorkerResponse(worker=WORKERS[0], jobs=[JOBS[4]])
    text = views.worker_details_text(resp, width=120)
    assert "Debian GNU/Linux 12 (bookworm)" in text and "16" in text and "6 slots, 4 cpus" in text
    assert "running for" in text
    assert "\x1b" not in text


def test_resources_table() -> None:
    resources = [
        common_pb2.GlobalResource(name="genus", total=3, used=3),
        common_pb2.GlobalResource(name="matlab", total=10, used=1),
    ]
    lines = rows(views.resources_text(resources, width=80))
    assert lines[0].split() == ["name", "used/total"]
    assert lines[1].split() == ["genus", "3/3"]
    assert lines[2].split() == ["matlab", "1/10"]
    grid = views.resources_grid(resources)
    assert grid.rows[0][1].style == "red" and grid.rows[1][1].style == "green"
    assert "no global resources" in views.resources_text([], width=80)


def render_rich(renderable: object, width: int) -> tuple[str, str]:
    """(raw with escape codes, plain text) of a renderable on a terminal `width` wide."""
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system="standard").print(renderable)
    return out.getvalue(), ANSI.sub("", out.getvalue())


@pytest.mark.parametrize("width", [80, 200])
def test_rich_workers_table_is_coloured_and_fits(width: int) -> None:
    raw, plain = render_rich(views.workers_rich(WORKERS, width=width, now=NOW), width)
    assert all(len(line) <= width for line in plain.splitlines()), plain
    assert "\x1b[32m" in raw and "\x1b[33m" in raw  # green (idle) and yellow (load 10 on 16 cores)
    assert [line.rstrip() for line in plain.splitlines()] == rows(
        views.workers_text(WORKERS, width=width, now=NOW)
    )


@pytest.mark.parametrize("width", [80, 200])
def test_resources_table_at_both_widths(width: int) -> None:
    resources = [
        common_pb2.GlobalResource(name="genus-" + "x" * 150, total=3, used=3),
        common_pb2.GlobalResource(name="matlab", total=10, used=1),
    ]
    text = views.resources_text(resources, width=width)
    lines = rows(text)
    assert all(len(line) <= width for line in lines)
    assert lines[1].endswith("3/3") and lines[2].split() == ["matlab", "1/10"]
    name = lines[1].split()[0]
    if width == 80:
        assert name.startswith("genus-") and name.endswith("...")  # a name is cut at its back
    else:
        assert name == resources[0].name
    raw, plain = render_rich(views.resources_rich(resources, width=width), width)
    assert "\x1b[31m" in raw and [line.rstrip() for line in plain.splitlines()] == lines


@pytest.mark.parametrize("width", [80, 200])
def test_worker_details_with_its_jobs_at_both_widths(width: int) -> None:
    resp = cluster_service_pb2.GetWorkerResponse(worker=WORKERS[0], jobs=[JOBS[4], JOBS[5]])
    text = views.worker_details_text(resp, width=width, now=NOW)
    assert "running for 35s" in text
    table = text[text.index("\n\n") + 2 :]
    assert all(len(line) <= width for line in rows(table)), table
    first = rows(table)[1]
    if width == 80:
        _, cwd_cell, command_cell, *_ = re.split(r"\s{2,}", first.strip())
        assert cwd_cell.startswith("...") and CWD.endswith(cwd_cell[3:])
        assert command_cell.endswith("...") and " ".join(COMMAND).startswith(command_cell[:-3])
    else:
        assert CWD in first and " ".join(COMMAND) in first
    raw, plain = render_rich(views.worker_details_rich(resp, width=width, now=NOW), width)
    assert "\x1b[34m" in raw  # the running job in blue
    assert all(len(line) <= width for line in plain.splitlines())


def test_why_a_job_did_not_run_is_said_only_where_it_did_not() -> None:
    assert why_not_run(JOBS[3]) == "job 4 failed to start: No such file or directory: './x'"
    assert why_not_run(JOBS[7]) is not None and why_not_run(JOBS[7]).startswith("job ")
    assert "was canceled" in why_not_run(JOBS[7])
    assert [why_not_run(j) for j in JOBS[:3]] == [None, None, None]


def test_a_pending_job_shows_no_worker_though_one_rejected_it() -> None:
    rejected = make_job(
        20, State.JOB_STATE_PENDING, worker_name="node09", comment="rejected by node09: no such directory"
    )
    running = make_job(21, State.JOB_STATE_RUNNING, started_at=timestamp(NOW - 5), worker_name="node03")
    lines = views.jobs_text([rejected, running], None, width=200, now=NOW).splitlines()
    assert "node09" not in next(line for line in lines if line.strip().startswith("20 "))
    assert "node03" in next(line for line in lines if line.strip().startswith("21 "))


def test_control_characters_of_a_command_never_reach_the_terminal() -> None:
    # A job's command is anyone's text: it must not drive the viewer's terminal.
    hostile = make_job(
        30,
        State.JOB_STATE_RUNNING,
        command=["bash", "-c", "echo \x1b[31mRED\x1b[0m \x9b2J \x07\x7f"],
        cwd="/tmp/\x1b]0;title\x07",
        started_at=timestamp(NOW - 5),
        worker_name="w\x1b[5m1",
    )
    for text in (
        views.jobs_text([hostile], None, width=200, now=NOW),
        views.jobs_text([hostile], None, now=NOW),
        "\n".join(f.value for f in job_details.job_fields(hostile, now=NOW)),
    ):
        assert not any((ord(c) < 0x20 and c not in "\n") or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)
    shown = views.jobs_text([hostile], None, now=NOW)
    assert "^[[31mRED^[[0m" in shown and "/tmp/^[]0;title^G" in shown and "w^[[5m1" in shown


def test_wide_characters_take_two_columns_in_the_layout() -> None:
    from rich.cells import cell_len

    from kueue_client import live_views

    jobs = [
        make_job(
            40, State.JOB_STATE_RUNNING, command=["echo", "日本語 🎉 " * 12], started_at=timestamp(NOW - 5)
        ),
        make_job(41, State.JOB_STATE_RUNNING, command=["echo", "ascii " * 20], started_at=timestamp(NOW - 5)),
        make_job(42, State.JOB_STATE_RUNNING, cwd="/tmp/日本語/" * 10, started_at=timestamp(NOW - 5)),
    ]
    lines = [line for line in views.jobs_text(jobs, None, width=100, now=NOW).splitlines() if line.strip()]
    assert all(cell_len(line) <= 100 for line in lines), [cell_len(line) for line in lines]
    # The status column starts at the same screen column on every row.
    starts = {cell_len(line[: line.index("running for")]) for line in lines[1:]}
    assert len(starts) == 1, lines
    # The live views pad by screen columns too.
    grid = views.jobs_grid(jobs, now=NOW)
    columns, widths, rows = views._laid_out(grid, 100)
    row_widths = {live_views._row(row, columns, widths).cell_len for row in rows}
    assert row_widths == {sum(widths) + views.GAP * (len(widths) - 1)}, row_widths
