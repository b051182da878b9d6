"""The live views' screens and state, from fixed messages, without a server
or a terminal: rendered by rich into a string of the terminal's size."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from rich.console import Console, RenderableType

from kueue.timestamps import timestamp
from kueue.v1 import common_pb2
from kueue.v1 import job_service_pb2 as jpb
from kueue_client import formatting, live_views, views
from kueue_client.live_state import LiveState, Snapshot
from kueue_client.live_views import Frame

State = common_pb2.JobState
NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
CWD = "/home/alice/projects/2024/3_Synthesis/run"
COMMAND = ["python", "train.py", "--epochs", "100", "--data", "/data/sets/imagenet/train"]
SIZES = [(80, 24), (200, 50)]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def job(job_id: int, state: int = State.JOB_STATE_PENDING, **fields: object) -> common_pb2.Job:
    spec = common_pb2.JobSpec(command=COMMAND, cwd=CWD, resources=common_pb2.Resources(slots=1, cpus=1))
    return common_pb2.Job(id=job_id, state=state, spec=spec, issued_at=timestamp(NOW - 60), **fields)


def worker(name: str, connected: bool = True, draining: bool = False, load: float = 1.0) -> common_pb2.Worker:
    return common_pb2.Worker(
        id=f"id-{name}",
        name=name,
        connected=connected,
        draining=draining,
        system=common_pb2.SystemInfo(
            distribution="Debian GNU/Linux 12",
            cpu_cores=8,
            cpu_frequency_mhz=3000,
            memory_total_mb=32000,
            load_1=load,
            load_5=load,
            load_15=load,
            uptime_seconds=7200,
        ),
        capacity=common_pb2.Resources(slots=4, cpus=8, ram_mb=30000),
        free=common_pb2.Resources(slots=2, cpus=6, ram_mb=20000),
        running_jobs=2 if connected else 0,
        last_seen_at=timestamp(NOW - 125),
    )


# 100 jobs: the newest (id 100) running, 99 pending, the rest finished.
JOBS = [
    job(i, State.JOB_STATE_SUCCEEDED, run_time_seconds=30, exit_code=0, worker_name="w1")
    for i in range(1, 99)
]
JOBS += [job(99), job(100, State.JOB_STATE_RUNNING, started_at=timestamp(NOW - 35), worker_name="w2")]
SUMMARY = common_pb2.JobSummary(
    pending=1, running=1, succeeded=98, average_run_time_seconds=30, eta_seconds=60
)
WORKERS = [worker("w1"), worker("w2", draining=True, load=7.9), worker("w3", connected=False)]


def snap(jobs: list[common_pb2.Job] = JOBS, problem: str = "", **kw: object) -> Snapshot:
    fields: dict[str, object] = {
        "jobs": jobs,
        "summary": SUMMARY,
        "matching": 100,
        "workers": WORKERS,
        "received": True,
        "problem": problem,
    }
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


def render(renderable: RenderableType, width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in out
    return out.rstrip("\n").split("\n")


def job_rows(lines: list[str]) -> list[int]:
    """Ids of the job rows on the screen, top to bottom."""
    rows = [line.split() for line in lines]
    return [int(r[0]) for r in rows if len(r) > 1 and r[0].isdigit() and r[1].startswith(("/", "..."))]


def frame(**kw: object) -> Frame:
    return Frame("kueue ls --watch", "server:11236", **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- ls --watch


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_ls_screen_fills_the_terminal_with_the_newest_jobs(width: int, height: int) -> None:
    lines = render(live_views.ls_screen(snap(), frame(), width, height, NOW), width, height)
    assert len(lines) == height
    assert all(len(line) <= width for line in lines)
    assert lines[0].startswith(" kueue ls --watch · server:11236 · 100 jobs")
    assert lines[0].rstrip().endswith("22:13:20 · q quits")
    assert lines[1].split()[:3] == ["id", "directory", "command"]
    rows = job_rows(lines)
    fit = height - 1 - 1 - 3  # title, table header, footer
    assert rows == list(range(101 - fit, 101)), "the newest that fit, oldest first"
    assert "running for 35s" in lines[1 + fit] and "pending since" in lines[fit]
    # The footer: counts, times, progress, at the bottom.
    assert lines[-3].startswith("1 pending, 0 offered, 1 running, 98 succeeded, 0 failed, 0 canceled")
    assert lines[-2] == "average run time 30s, ETA 1m 00s"
    assert "━" in lines[-1] and f"98/100 done (98%) · showing the newest {fit} of 100" in lines[-1]


def test_ls_screen_cuts_the_directory_at_its_front_and_the_command_at_its_back() -> None:
    narrow = render(live_views.ls_screen(snap(), frame(), 80, 24, NOW), 80, 24)
    row = next(line for line in narrow if line.split()[:1] == ["100"])
    cwd, command = row.split()[1], " ".join(row.split()[2:5])
    assert cwd.startswith("...") and CWD.endswith(cwd[3:])
    assert command.startswith("python train.py") and "..." in row and "imagenet/train" not in row
    wide = render(live_views.ls_screen(snap(), frame(), 200, 50, NOW), 200, 50)
    row = next(line for line in wide if line.split()[:1] == ["100"])
    assert CWD in row and " ".join(COMMAND) in row


def test_ls_screen_before_the_first_message_and_while_the_server_is_away() -> None:
    lines = render(live_views.ls_screen(snap(received=False), frame(), 80, 24, NOW), 80, 24)
    assert len(lines) == 24 and lines[1] == "connecting to server:11236..."
    assert job_rows(lines) == [] and "done" not in lines[-1]
    problem = "lost the kueue server at server:11236 at 22:13:00; reconnecting..."
    lines = render(live_views.ls_screen(snap(problem=problem), frame(), 80, 24, NOW), 80, 24)
    assert len(lines) == 24 and lines[1] == problem
    assert len(job_rows(lines)) == 24 - 1 - 1 - 1 - 3, "the problem line takes a row"


def test_ls_screen_with_a_filter() -> None:
    running = frozenset({State.JOB_STATE_RUNNING})
    lines = render(live_views.ls_screen(snap([], matching=0), frame(states=running), 80, 24, NOW), 80, 24)
    assert "· running ·" in lines[0] and lines[1] == "no running jobs"
    assert "done" not in lines[-1], "nothing in a filter without a final state is ever done"
    # The counts, like the progress, are of the filter's states (the last,
    # empty, progress line is cut by render()).
    assert "1 running" in lines and not any("pending" in line for line in lines)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_ls_screen_footer_follows_the_filter(width: int, height: int) -> None:
    states = frozenset({State.JOB_STATE_PENDING, State.JOB_STATE_SUCCEEDED})
    shown = [j for j in JOBS if j.state in states]
    lines = render(
        live_views.ls_screen(snap(shown, matching=99), frame(states=states), width, height, NOW),
        width,
        height,
    )
    # Where the whole title does not fit, the server's address goes first.
    title = " kueue ls --watch · server:11236 · pending, succeeded · 99 of 100 jobs"
    if len(title) > width - len(" 22:13:20 · q quits "):
        title = " kueue ls --watch · pending, succeeded · 99 of 100 jobs"
    assert lines[0].startswith(title + " ")
    # Counts and progress cover the same jobs: the 99 pending or succeeded.
    assert lines[-3] == "1 pending, 98 succeeded"
    assert "98/99 done (98%)" in lines[-1]
    # Run time and ETA are the whole queue's, and say so.
    assert lines[-2] == "whole queue: average run time 30s, ETA 1m 00s"
    # Unfiltered, nothing is labelled: it is all the whole queue.
    lines = render(live_views.ls_screen(snap(), frame(), width, height, NOW), width, height)
    assert lines[-2] == "average run time 30s, ETA 1m 00s" and " of 100 jobs" not in lines[0]


def test_progress_counts_the_jobs_the_listing_covers() -> None:
    summary = common_pb2.JobSummary(pending=5, running=2, succeeded=10, failed=3, canceled=1)
    assert live_views.progress(summary, frozenset()) == (14, 21)
    assert live_views.progress(summary, frozenset({State.JOB_STATE_FAILED, State.JOB_STATE_PENDING})) == (
        3,
        8,
    )
    assert live_views.progress(summary, frozenset({State.JOB_STATE_RUNNING})) is None


# ---------------------------------------------------------------- workers and top


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_workers_screen_says_each_workers_state(width: int, height: int) -> None:
    lines = render(live_views.workers_screen(snap(), frame(), width, height, NOW), width, height)
    assert all(len(line) <= width for line in lines)
    assert "2 of 2 workers connected" in lines[0], "a lost worker without jobs is not listed"
    assert lines[1].split()[-1] == "state" and "busy" in lines[1] and "load 1/5/15" in lines[1]
    w1 = next(line for line in lines if " w1 " in f" {line} ")
    assert w1.rstrip().endswith("connected") and "2/4" in w1 and "50%" in w1 and "2h 00m" in w1
    assert next(line for line in lines if " w2 " in f" {line} ").rstrip().endswith("draining")
    if width == 200:
        assert "id-w1" in w1 and "Debian GNU/Linux 12" in w1 and "3.0 GHz" in w1
    everyone = render(
        live_views.workers_screen(snap(), frame(all_workers=True), width, height, NOW), width, height
    )
    w3 = next(line for line in everyone if " w3 " in f" {line} ")
    assert w3.rstrip().endswith("lost since 22:11:15")


def test_worker_state_and_load_colours() -> None:
    grid = views.workers_grid(WORKERS, NOW, state=True)
    header = [c.header for c in grid.columns]
    state, load = header.index("state"), header.index("load 1/5/15")
    assert [row[state].style for row in grid.rows] == ["green", "yellow", "red"]
    assert grid.rows[0][load].style == "green" and grid.rows[1][load].style == "red"


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_top_screen_has_workers_jobs_and_summary(width: int, height: int) -> None:
    frame_top = Frame("kueue top", "server:11236")
    lines = render(live_views.top_screen(snap(), frame_top, width, height, NOW), width, height)
    assert len(lines) == height and all(len(line) <= width for line in lines)
    assert "2 workers connected, 100 jobs" in lines[0]
    assert lines[1].split()[-1] == "state"
    assert "w1" in lines[2] and "w2" in lines[3]
    jobs_rows = live_views.top_rows(height, 2)[1]
    assert job_rows(lines) == list(range(101 - jobs_rows, 101))
    assert lines[-3].startswith("1 pending") and "98/100 done" in lines[-1]


def test_top_with_many_workers_on_a_small_terminal() -> None:
    many = [worker(f"node{i:02}") for i in range(20)]
    lines = render(live_views.top_screen(snap(workers=many), Frame("kueue top", "s"), 80, 24, NOW), 80, 24)
    assert len(lines) == 24
    worker_rows, job_rows_fit = live_views.top_rows(24, 20)
    listed = [line for line in lines if line.startswith("node")]
    assert len(listed) == worker_rows - 1
    assert f"... and {20 - len(listed)} more" in lines[1 + 1 + len(listed)]
    assert len(job_rows(lines)) == job_rows_fit >= 5


# ---------------------------------------------------------------- state


def test_live_state_applies_changes_and_forgets_what_left_the_window() -> None:
    state = LiveState()
    assert not state.snapshot().received
    first = jpb.WatchListResponse(
        jobs=[job(1), job(2), job(3)], window_ids=[1, 2, 3], summary=SUMMARY, matching=3
    )
    first.workers.workers.extend(WORKERS[:1])
    state.apply(first)
    s = state.snapshot()
    assert [j.id for j in s.jobs] == [1, 2, 3] and s.received and s.workers == WORKERS[:1]
    # Job 2 runs, job 4 enters, job 1 leaves the window; workers unchanged.
    state.problem = "lost"
    state.apply(
        jpb.WatchListResponse(
            jobs=[job(2, State.JOB_STATE_RUNNING), job(4)], window_ids=[2, 3, 4], summary=SUMMARY, matching=4
        )
    )
    s = state.snapshot()
    assert [(j.id, j.state) for j in s.jobs] == [
        (2, State.JOB_STATE_RUNNING),
        (3, State.JOB_STATE_PENDING),
        (4, State.JOB_STATE_PENDING),
    ]
    assert s.workers == WORKERS[:1] and s.matching == 4 and s.problem == ""
    assert set(state.jobs) == {2, 3, 4}
    # An empty worker list is a change too.
    msg = jpb.WatchListResponse(window_ids=[2, 3, 4], summary=SUMMARY, matching=4)
    msg.workers.SetInParent()
    state.apply(msg)
    assert state.snapshot().workers == []


@pytest.mark.parametrize(
    ("width", "left"),
    [
        (120, " kueue ls --watch · gpu-box.lab.example.org:11236 · running · 1,234 of 5,678 jobs"),
        (70, " kueue ls --watch · running · 1,234 of 5,678 jobs"),
        (40, " kueue ls --watch..."),
    ],
)
def test_a_title_too_long_drops_the_server_then_ends_in_an_ellipsis(width: int, left: str) -> None:
    bar = live_views.title_bar(
        Frame("kueue ls --watch", "gpu-box.lab.example.org:11236", frozenset({State.JOB_STATE_RUNNING})),
        width,
        NOW,
        "1,234 of 5,678 jobs",
    )
    assert bar.plain.startswith(left + " ")
    assert bar.plain.endswith(" 22:13:20 · q quits ")
    assert len(bar.plain) == width


def test_a_title_with_wide_characters_keeps_to_its_width() -> None:
    bar = live_views.title_bar(
        Frame("kueue top", "\u8a08\u7b97\u6a5f-\u5927.lab:11236"), 70, NOW, "3 workers"
    )
    assert formatting.text_width(bar.plain) == 70
    assert bar.plain.startswith(" kueue top · \u8a08\u7b97\u6a5f-\u5927.lab:11236 · 3 workers ")
