"""The progress line of `kueue wait` / `cmd --wait`, from fixed job states."""

from __future__ import annotations

import io
import re

import pytest

from kueue.v1 import common_pb2
from kueue_client import progress

State = common_pb2.JobState


def job(job_id: int, state: int, run_time: float = 0.0) -> common_pb2.Job:
    return common_pb2.Job(id=job_id, state=state, run_time_seconds=run_time)


JOBS = [
    job(1, State.JOB_STATE_SUCCEEDED, 60),
    job(2, State.JOB_STATE_SUCCEEDED, 120),
    job(3, State.JOB_STATE_FAILED, 90),
    job(4, State.JOB_STATE_CANCELED),
    job(5, State.JOB_STATE_RUNNING),
    job(6, State.JOB_STATE_RUNNING),
    job(7, State.JOB_STATE_PENDING),
    job(8, State.JOB_STATE_OFFERED),
]


def text(segments: list[tuple[str, str]]) -> str:
    return "".join(part for part, _ in segments)


def test_counts_and_eta() -> None:
    counts = progress.count(10, JOBS)  # jobs 9 and 10 not reported yet
    assert (counts.succeeded, counts.failed, counts.canceled, counts.running) == (2, 1, 1, 2)
    assert counts.done == 4 and counts.waiting == 4
    # Mean run time 90 s, 6 jobs left, 2 at a time.
    assert counts.eta == pytest.approx(90 * 6 / 2)
    assert progress.count(2, JOBS[6:]).eta is None  # nothing finished yet: unknown
    assert progress.count(2, JOBS[:2]).eta == 0.0


@pytest.mark.parametrize("width", [80, 200])
def test_line_fits_and_says_everything(width: int) -> None:
    segments = progress.progress_line(progress.count(10, JOBS), 75, width)
    line = text(segments)
    assert len(line) <= width
    counted = "4/10 done, 1 failed, 1 canceled, 2 running, 4 waiting, ETA 4m 30s"
    # On 80 columns the elapsed time makes room for the bar.
    assert line.endswith(counted + (", elapsed 1m 15s" if width == 200 else ""))
    bar = line.split(" ")[0]
    assert set(bar) == {progress.BAR_CHAR} and len(bar) == min(progress.MAX_BAR, width - len(line) + len(bar))
    # The bar is coloured by state in proportion: 2 of 10 succeeded...
    styled = [(len(part), style) for part, style in segments if set(part) == {progress.BAR_CHAR}]
    cells = {style: n for n, style in styled}
    assert sum(cells.values()) == len(bar)
    assert cells["green"] == round(0.2 * len(bar)) and cells["blue"] > 0 and cells["red"] > 0
    assert cells["yellow"] > 0 and cells["dim"] > 0


def test_narrow_terminal_drops_the_bar_then_cuts_the_text() -> None:
    counts = progress.count(10, JOBS)
    line = text(progress.progress_line(counts, 5, 70))
    assert line == "4/10 done, 1 failed, 1 canceled, 2 running, 4 waiting, ETA 4m 30s"
    assert text(progress.progress_line(counts, 5, 20)) == "4/10 done, 1 failed"
    assert text(progress.progress_line(counts, 5, 5)) == "4/10 "


def test_all_done_has_a_full_bar() -> None:
    segments = progress.progress_line(progress.count(2, JOBS[:2]), 1, 80)
    assert [style for part, style in segments if set(part) == {progress.BAR_CHAR}] == ["green"]
    assert text(segments).endswith("2/2 done, ETA 0s, elapsed 1s")


def test_drawn_on_the_given_stream_and_erased(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    assert progress.wanted(out)
    with progress.WaitProgress([1, 2], stream=out) as bar:
        bar.on_change(job(1, State.JOB_STATE_SUCCEEDED, 3))
        bar.on_change(job(2, State.JOB_STATE_RUNNING))
    drawn = out.getvalue()
    assert re.search(r"\x1b\[3\dm", drawn)  # coloured
    assert "1/2 done, 1 running, ETA 3s" in re.sub(r"\x1b\[[0-9;]*m", "", drawn)
    assert drawn.endswith("\x1b[2K")  # erased at the end
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    with progress.WaitProgress([1], stream=out) as bar:
        bar.on_change(job(1, State.JOB_STATE_RUNNING))
    assert "0/1 done, 1 running" in out.getvalue() and not re.search(r"\x1b\[[0-9;]*m", out.getvalue())
    monkeypatch.setenv("TERM", "dumb")
    assert not progress.wanted(Terminal())
    monkeypatch.setenv("TERM", "xterm")
    assert not progress.wanted(io.StringIO())
