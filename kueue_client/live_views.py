"""Screens of the live views (`kueue ls --watch`, `kueue workers --watch`,
`kueue top`), drawn from a Snapshot to fit a terminal of a given size.

Pure: the same snapshot, size and time give the same screen. Tables come
from kueue_client.views (same columns, colours and cutting rules as the
static listings); this module decides how many rows fit and adds the title
bar and the footer: counts per state, average run time, ETA and a progress
bar of done / total.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kueue.v1 import common_pb2
from kueue_client import views
from kueue_client.formatting import pad, plural, text_width, truncate_back
from kueue_client.live_state import Snapshot
from kueue_client.status import FINAL_STATES, STATE_NAMES

JobState = common_pb2.JobState

TITLE_LINES = 1
FOOTER_LINES = 3  # counts; average run time and ETA; progress bar
TABLE_HEADER_LINES = 1
MAX_BAR_WIDTH = 50


@dataclass(frozen=True)
class Frame:
    """What the screen says about itself: the verb, the server, the filter."""

    title: str
    server: str
    # The state filter of the listing; empty: all states.
    states: frozenset[int] = frozenset()
    # Workers that are gone are listed too (`-a`).
    all_workers: bool = False


# ---------------------------------------------------------------- sizes


def ls_rows(height: int) -> int:
    """Job rows that fit below the title and above the footer."""
    return max(1, height - TITLE_LINES - TABLE_HEADER_LINES - FOOTER_LINES)


def top_rows(height: int, workers: int) -> tuple[int, int]:
    """(worker rows, job rows) of `kueue top`: workers first, up to half of
    the space, then jobs; at least one row each."""
    space = max(2, height - TITLE_LINES - 2 * TABLE_HEADER_LINES - 1 - FOOTER_LINES)
    worker_rows = max(1, min(max(workers, 1), space // 2))
    return worker_rows, max(1, space - worker_rows)


# ---------------------------------------------------------------- screens


def ls_screen(
    snap: Snapshot, frame: Frame, width: int, height: int, now: float | None = None
) -> RenderableType:
    now = time.time() if now is None else now
    parts: list[RenderableType] = [title_bar(frame, width, now, _jobs_note(snap, frame))]
    used = TITLE_LINES + FOOTER_LINES
    if snap.problem:
        parts.append(problem_line(snap.problem, width))
        used += 1
    jobs = snap.jobs[-max(1, height - used - TABLE_HEADER_LINES) :]
    table, lines = _jobs_table(snap, frame, jobs, width, now)
    parts.append(table)
    parts += _padding(height - used - lines)
    parts += footer(snap, frame, len(jobs), width)
    return Group(*parts)


def workers_screen(
    snap: Snapshot, frame: Frame, width: int, height: int, now: float | None = None
) -> RenderableType:
    now = time.time() if now is None else now
    workers = shown_workers(snap.workers or [], frame.all_workers)
    connected = sum(1 for w in workers if w.connected)
    note = f"{connected} of {plural(len(workers), 'worker')} connected" if snap.received else ""
    parts: list[RenderableType] = [title_bar(frame, width, now, note)]
    used = TITLE_LINES
    if snap.problem:
        parts.append(problem_line(snap.problem, width))
        used += 1
    parts.append(_workers_table(snap, workers, max(1, height - used - TABLE_HEADER_LINES), width, now)[0])
    return Group(*parts)


def top_screen(
    snap: Snapshot, frame: Frame, width: int, height: int, now: float | None = None
) -> RenderableType:
    now = time.time() if now is None else now
    workers = shown_workers(snap.workers or [], frame.all_workers)
    connected = sum(1 for w in workers if w.connected)
    note = f"{plural(connected, 'worker')} connected, {_jobs_note(snap, frame)}" if snap.received else ""
    parts: list[RenderableType] = [title_bar(frame, width, now, note)]
    problem = 0
    if snap.problem:
        parts.append(problem_line(snap.problem, width))
        problem = 1
    worker_rows, job_rows = top_rows(height - problem, len(workers))
    workers_table, workers_lines = _workers_table(snap, workers, worker_rows, width, now)
    jobs = snap.jobs[-job_rows:]
    jobs_table, jobs_lines = _jobs_table(snap, frame, jobs, width, now)
    parts += [workers_table, Text(""), jobs_table]
    parts += _padding(height - TITLE_LINES - problem - workers_lines - 1 - jobs_lines - FOOTER_LINES)
    parts += footer(snap, frame, len(jobs), width)
    return Group(*parts)


# ---------------------------------------------------------------- parts


def title_bar(frame: Frame, width: int, now: float, note: str = "") -> Text:
    """One reversed line: what this is on the left, the time and the keys on
    the right. Where the left part does not fit, the server's address goes
    first (the view's name, its filter and its counts matter more), then the
    rest is cut with an ellipsis."""
    states = ", ".join(STATE_NAMES[s] for s in sorted(frame.states))
    right = f"{time.strftime('%H:%M:%S', time.localtime(now))} · q quits "
    room = width - text_width(right) - 1
    if room < 10:
        room, right = width, ""
    left = ""
    for parts in ((frame.title, frame.server, states, note), (frame.title, states, note)):
        left = " " + " · ".join(p for p in parts if p)
        if text_width(left) <= room:
            break
    left = pad(truncate_back(left, room), room)
    text = Text(left + " " + right if right else left, style="reverse")
    text.no_wrap = True
    text.overflow = "crop"
    return text


def problem_line(problem: str, width: int) -> Text:
    text = Text(problem[:width], style="bold yellow")
    text.no_wrap = True
    return text


def footer(snap: Snapshot, frame: Frame, shown: int, width: int) -> list[RenderableType]:
    """Counts per state, average run time and ETA, then the progress bar:
    always FOOTER_LINES lines, so the rows above keep their place.

    With a state filter the counts, like the progress bar, are of the states
    the listing covers; the average run time and the ETA are the server's,
    of the whole queue, and say so."""
    lines = views.jobs_footer(snap.summary, shown, None, frame.states)
    counts = _line(lines[0], width)
    times = Text("")
    if len(lines) > 1:
        if frame.states:
            lines[1] = [views.Cell("whole queue: " + lines[1][0].text, lines[1][0].style)]
        times = _line(lines[1], width)
    return [counts, times, progress_line(snap, frame, shown, width)]


def progress_line(snap: Snapshot, frame: Frame, shown: int, width: int) -> RenderableType:
    label = ""
    if snap.matching > shown:
        label = f"showing the newest {shown} of {snap.matching}"
    counts = progress(snap.summary, frame.states)
    if counts is None or not snap.received:
        return Text(label, style="dim", no_wrap=True, overflow="crop")
    done, total = counts
    text = f"{done}/{total} done" + (f" ({100 * done // total}%)" if total else "")
    if label:
        text += f" · {label}"
    bar_width = min(MAX_BAR_WIDTH, width - len(text) - 1)
    if bar_width < 5:
        return Text(text, style="dim", no_wrap=True, overflow="crop")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=bar_width, no_wrap=True)
    grid.add_column(no_wrap=True, overflow="crop")
    grid.add_row(
        ProgressBar(total=max(total, 1), completed=done, width=bar_width, finished_style="green"),
        Text(text, style="dim"),
    )
    return grid


def progress(summary: common_pb2.JobSummary, states: frozenset[int]) -> tuple[int, int] | None:
    """(done, total) over the jobs the listing covers: all of them, or those
    in the filter's states. None when the filter has no final state: nothing
    in it is ever done."""
    counts = {
        JobState.JOB_STATE_PENDING: summary.pending,
        JobState.JOB_STATE_OFFERED: summary.offered,
        JobState.JOB_STATE_RUNNING: summary.running,
        JobState.JOB_STATE_SUCCEEDED: summary.succeeded,
        JobState.JOB_STATE_FAILED: summary.failed,
        JobState.JOB_STATE_CANCELED: summary.canceled,
    }
    chosen = states or frozenset(counts)
    if not chosen & FINAL_STATES:
        return None
    return sum(counts[s] for s in chosen & FINAL_STATES), sum(counts[s] for s in chosen)


def shown_workers(workers: Sequence[common_pb2.Worker], all_workers: bool) -> list[common_pb2.Worker]:
    """Connected workers, and those lost while they still hold jobs (they
    may come back with them); with `all_workers` every remembered one."""
    return [w for w in workers if all_workers or w.connected or w.running_jobs]


# ---------------------------------------------------------------- helpers


def _jobs_note(snap: Snapshot, frame: Frame) -> str:
    if not snap.received:
        return ""
    total = sum(
        (
            snap.summary.pending,
            snap.summary.offered,
            snap.summary.running,
            snap.summary.succeeded,
            snap.summary.failed,
            snap.summary.canceled,
        )
    )
    if frame.states:
        return f"{snap.matching} of {plural(total, 'job')}"
    return plural(total, "job")


def _jobs_table(
    snap: Snapshot, frame: Frame, jobs: list[common_pb2.Job], width: int, now: float
) -> tuple[RenderableType, int]:
    """The table and the lines it takes."""
    if not snap.received:
        return Text(f"connecting to {frame.server}...", style="dim"), 1
    grid = views.jobs_grid(jobs, now=now)
    if frame.states:
        grid.empty_message = "no " + " or ".join(STATE_NAMES[s] for s in sorted(frame.states)) + " jobs"
    return _table(grid, width), TABLE_HEADER_LINES + len(jobs) if jobs else 1


def _workers_table(
    snap: Snapshot, workers: list[common_pb2.Worker], rows: int, width: int, now: float
) -> tuple[RenderableType, int]:
    """The table in at most `rows` rows (and its header), and the lines it takes."""
    if not snap.received or snap.workers is None:
        return Text("waiting for the workers...", style="dim"), 1
    if not workers:
        return Text("no workers connected", style="dim"), 1
    shown = workers if len(workers) <= rows else workers[: max(0, rows - 1)]
    table = _table(views.workers_grid(shown, now, state=True), width)
    if len(shown) == len(workers):
        return table, TABLE_HEADER_LINES + len(shown)
    more = Text(f"... and {len(workers) - len(shown)} more", style="dim")
    return Group(table, more), TABLE_HEADER_LINES + len(shown) + 1


def _table(grid: views.Grid, width: int) -> RenderableType:
    """The grid as views.grid_rich draws it (same widths, cuts and styles),
    but line by line: several times cheaper than rich's table layout, which
    matters at four frames a second."""
    if not grid.rows and grid.empty_message:
        return Text(grid.empty_message, style="dim")
    columns, widths, rows = views._laid_out(grid, width)
    lines = [_row([views.Cell(c.header) for c in columns], columns, widths, "bold")]
    lines += [_row(row, columns, widths) for row in rows]
    return Group(*lines)


def _row(
    cells: Sequence[views.Cell], columns: Sequence[views.Column], widths: Sequence[int], style: str = ""
) -> Text:
    text = Text(style=style, no_wrap=True, overflow="crop")
    for i, (cell, column, width) in enumerate(zip(cells, columns, widths, strict=True)):
        if i:
            text.append(" " * views.GAP)
        padded = pad(cell.text, width, right=column.justify == "right")
        text.append(padded, style=cell.style or None)
    return text


def _line(cells: Sequence[views.Cell], width: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for cell in cells:
        text.append(cell.text, style=cell.style)
    text.truncate(width, overflow="ellipsis")
    return text


def _padding(lines: int) -> list[RenderableType]:
    return [Text("")] * max(0, lines)
