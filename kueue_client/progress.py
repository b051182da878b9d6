"""The progress bar of `kueue wait` and `kueue cmd --wait` on a terminal.

One line on stderr, redrawn a few times a second and erased at the end, so
stdout carries only the results. The counting and the line's text are pure
(`WaitCounts`, `progress_line`); rich is imported only to draw.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from kueue.v1 import common_pb2
from kueue_client.formatting import format_duration
from kueue_client.status import STATE_STYLES, run_time

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live

JobState = common_pb2.JobState

BAR_CHAR = "━"
MIN_BAR, MAX_BAR = 10, 40
REFRESH_PER_SECOND = 4


@dataclass
class WaitCounts:
    total: int
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    running: int = 0
    # Pending, offered, or not reported yet.
    waiting: int = 0
    # Seconds until all are done, None while unknown.
    eta: float | None = None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.canceled


def count(total: int, jobs: Iterable[common_pb2.Job]) -> WaitCounts:
    """Counts over the latest state of each job waited for. The ETA is the
    mean run time of those finished, times the jobs left, over the jobs
    running at once (as the footer of `kueue ls`)."""
    counts = WaitCounts(total)
    run_times = []
    for job in jobs:
        state = job.state
        if state == JobState.JOB_STATE_SUCCEEDED:
            counts.succeeded += 1
        elif state == JobState.JOB_STATE_FAILED:
            counts.failed += 1
        elif state == JobState.JOB_STATE_CANCELED:
            counts.canceled += 1
        elif state == JobState.JOB_STATE_RUNNING:
            counts.running += 1
        if state in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED) and run_time(job) > 0:
            run_times.append(run_time(job))
    counts.waiting = total - counts.done - counts.running
    left = counts.running + counts.waiting
    if not left:
        counts.eta = 0.0
    elif run_times and counts.running:
        counts.eta = sum(run_times) / len(run_times) * left / counts.running
    return counts


def progress_line(counts: WaitCounts, elapsed: float, width: int) -> list[tuple[str, str]]:
    """The line as (text, style) segments: a bar coloured by state (succeeded,
    failed, canceled, running, waiting), then the counts and the ETA."""
    words = [(f"{counts.done}/{counts.total} done", "bold")]
    for n, name, state in (
        (counts.failed, "failed", JobState.JOB_STATE_FAILED),
        (counts.canceled, "canceled", JobState.JOB_STATE_CANCELED),
        (counts.running, "running", JobState.JOB_STATE_RUNNING),
        (counts.waiting, "waiting", JobState.JOB_STATE_PENDING),
    ):
        if n:
            words.append((f"{n} {name}", STATE_STYLES[state] if name != "waiting" else ""))
    words.append((f"ETA {format_duration(counts.eta)}" if counts.eta is not None else "ETA unknown", ""))
    elapsed_word = (f"elapsed {format_duration(elapsed)}", "dim")
    # The elapsed time goes first when the line is short of room, then the bar.
    for candidate in ([*words, elapsed_word], words):
        text = _joined(candidate)
        bar_width = min(MAX_BAR, width - sum(len(t) for t, _ in text) - 1)
        if bar_width >= MIN_BAR:
            return [*_bar(counts, bar_width), (" ", ""), *text]
    return _fit(words, width)


def _joined(words: list[tuple[str, str]]) -> list[tuple[str, str]]:
    text: list[tuple[str, str]] = []
    for i, word in enumerate(words):
        if i:
            text.append((", ", "dim"))
        text.append(word)
    return text


def _bar(counts: WaitCounts, width: int) -> list[tuple[str, str]]:
    parts = [
        (counts.succeeded, STATE_STYLES[JobState.JOB_STATE_SUCCEEDED]),
        (counts.failed, STATE_STYLES[JobState.JOB_STATE_FAILED]),
        (counts.canceled, STATE_STYLES[JobState.JOB_STATE_CANCELED]),
        (counts.running, STATE_STYLES[JobState.JOB_STATE_RUNNING]),
    ]
    total = max(1, counts.total)
    segments, used, cumulative = [], 0, 0
    for n, style in parts:
        # Rounded at cumulative counts, so the cells add up to `width` exactly.
        cumulative += n
        end = min(width, round(cumulative * width / total))
        if end > used:
            segments.append((BAR_CHAR * (end - used), style))
            used = end
    if used < width:
        segments.append((BAR_CHAR * (width - used), "dim"))
    return segments


def _fit(words: list[tuple[str, str]], width: int) -> list[tuple[str, str]]:
    """As many whole words as fit; the first one cut if even it does not."""
    text = _joined(words[:1])
    for n in range(2, len(words) + 1):
        longer = _joined(words[:n])
        if sum(len(t) for t, _ in longer) > width:
            break
        text = longer
    return [(part[:width], style) for part, style in text] if len(text) == 1 else text


class WaitProgress:
    """Keeps the line current while the caller waits; use as a context manager
    and pass `on_change` to Client.wait."""

    def __init__(
        self, ids: Iterable[int], stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total = len(dict.fromkeys(ids))
        self.jobs: dict[int, common_pb2.Job] = {}
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self._live: Live | None = None

    def on_change(self, job: common_pb2.Job) -> None:
        self.jobs[job.id] = job

    def counts(self) -> WaitCounts:
        return count(self.total, self.jobs.values())

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        line = Text(no_wrap=True, overflow="crop")
        for part, style in progress_line(self.counts(), self.clock() - self.started, options.max_width):
            line.append(part, style=style)
        yield line

    def __enter__(self) -> WaitProgress:
        from rich.console import Console
        from rich.live import Live

        # NO_COLOR: the bar is drawn, but without a single colour code.
        plain = "NO_COLOR" in os.environ
        console = Console(file=self.stream, highlight=False, color_system=None if plain else "auto")
        self._live = Live(
            self,
            console=console,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)
            self._live = None


def wanted(stream: TextIO | None = None) -> bool:
    """A bar only on a terminal that can redraw a line."""
    from kueue_client import terminal

    return terminal.is_terminal(stream or sys.stderr) and os.environ.get("TERM") != "dumb"
