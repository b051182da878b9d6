"""Pure rendering from protobuf messages to plain text or rich renderables.

Every view is first built as a `Grid` (a table model) or a list of `Field`s;
the same model is then rendered either as plain text (pipes, NO_COLOR: never
an escape code, and rich is not even imported) or as a rich renderable for a
terminal. Column widths are decided here, not by rich, so that the working
directory can be cut at its front and the command at its back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from kueue.v1 import common_pb2
from kueue_client.formatting import (
    command_text,
    format_date,
    format_datetime,
    format_duration,
    format_frequency,
    format_mb,
    pad,
    plural,
    printable,
    seconds,
    single_line,
    text_width,
    truncate_back,
    truncate_front,
)
from kueue_client.status import STATE_STYLES, job_status

if TYPE_CHECKING:
    from rich.console import RenderableType

    from kueue.v1 import cluster_service_pb2, job_service_pb2

JobState = common_pb2.JobState

GAP = 2  # spaces between columns
MIN_FLEX_WIDTH = 10  # a cut column narrower than this says nothing


@dataclass
class Cell:
    text: str
    style: str = ""

    def __post_init__(self) -> None:
        self.text = printable(self.text)


@dataclass
class Column:
    header: str
    justify: Literal["left", "right"] = "left"
    # How an over-long cell is cut; None: the column keeps its natural width.
    cut: Literal["front", "back"] | None = None
    # Share of the space left for cuttable columns, relative to the others.
    weight: int = 1
    # Left out when the table cannot fit otherwise, lowest first; 0: never.
    drop: int = 0


@dataclass
class Grid:
    columns: list[Column]
    rows: list[list[Cell]]
    # Lines below the table, each a list of styled segments.
    footer: list[list[Cell]] = field(default_factory=list)
    empty_message: str = ""


@dataclass
class Field:
    label: str
    value: str
    style: str = ""

    def __post_init__(self) -> None:
        self.value = printable(self.value)


# ---------------------------------------------------------------- layout


def _floor(column: Column, natural: int) -> int:
    """The narrowest a column may become."""
    if not column.cut:
        return natural
    return min(natural, max(MIN_FLEX_WIDTH, len(column.header)))


def visible_columns(grid: Grid, width: int | None) -> list[int]:
    """Indexes of the columns shown: droppable ones go, lowest `drop` first,
    while even the narrowest layout would not fit `width`."""
    shown = list(range(len(grid.columns)))
    if width is None:
        return shown
    natural = _natural_widths(grid)
    droppable = sorted((c.drop, i) for i, c in enumerate(grid.columns) if c.drop)
    while droppable:
        narrowest = sum(_floor(grid.columns[i], natural[i]) for i in shown) + GAP * (len(shown) - 1)
        if narrowest <= width:
            break
        shown.remove(droppable.pop(0)[1])
    return shown


def _natural_widths(grid: Grid) -> list[int]:
    return [
        max([text_width(col.header)] + [text_width(row[i].text) for row in grid.rows])
        for i, col in enumerate(grid.columns)
    ]


def column_widths(grid: Grid, width: int | None, shown: Sequence[int] | None = None) -> list[int]:
    """Widths of the `shown` columns (default all): natural widths, with the
    cuttable columns narrowed to fit `width`.

    Space is shared by weight: a column that needs less than its share keeps
    its natural width and leaves the rest to the others. When even the
    narrowest widths do not fit, the table is wider than `width` rather than
    unreadable.
    """
    shown = list(range(len(grid.columns))) if shown is None else list(shown)
    all_natural = _natural_widths(grid)
    natural = {i: all_natural[i] for i in shown}
    total = sum(natural.values()) + GAP * (len(shown) - 1)
    flexible = [i for i in shown if grid.columns[i].cut]
    if width is None or total <= width or not flexible:
        return [natural[i] for i in shown]
    fixed = sum(w for i, w in natural.items() if i not in flexible) + GAP * (len(shown) - 1)
    widths = dict(natural)
    for i in flexible:
        widths[i] = _floor(grid.columns[i], natural[i])
    extra = width - fixed - sum(widths[i] for i in flexible)
    weights = {i: grid.columns[i].weight for i in flexible}
    # Columns needing the least of their share first, so what they leave over
    # goes to the others.
    remaining = sorted(flexible, key=lambda i: (natural[i] - widths[i]) / weights[i])
    while remaining and extra > 0:
        share = extra * weights[remaining[0]] // sum(weights[j] for j in remaining)
        i = remaining.pop(0)
        grow = min(natural[i] - widths[i], share)
        widths[i] += grow
        extra -= grow
    return [widths[i] for i in shown]


def _cut(text: str, width: int, column: Column) -> str:
    if column.cut == "front":
        return truncate_front(text, width)
    if column.cut == "back":
        return truncate_back(text, width)
    return text


def _laid_out(grid: Grid, width: int | None) -> tuple[list[Column], list[int], list[list[Cell]]]:
    shown = visible_columns(grid, width)
    widths = column_widths(grid, width, shown)
    columns = [grid.columns[i] for i in shown]
    rows = [
        [
            Cell(_cut(row[i].text, w, grid.columns[i]), row[i].style)
            for i, w in zip(shown, widths, strict=True)
        ]
        for row in grid.rows
    ]
    return columns, widths, rows


def grid_text(grid: Grid, width: int | None = None) -> str:
    """Plain text, columns separated by two spaces; `width=None` cuts nothing
    (for pipes, where grep should see whole paths and commands)."""
    if not grid.rows and grid.empty_message:
        lines = [grid.empty_message]
    else:
        columns, widths, rows = _laid_out(grid, width)
        header = [Cell(col.header) for col in columns]
        lines = [_text_row(row, widths, columns) for row in [header, *rows]]
    lines += ["".join(seg.text for seg in line) for line in grid.footer]
    return "\n".join(lines) + "\n"


def _text_row(cells: Sequence[Cell], widths: Sequence[int], columns: Sequence[Column]) -> str:
    parts = []
    for cell, w, col in zip(cells, widths, columns, strict=True):
        parts.append(pad(cell.text, w, right=col.justify == "right"))
    return (" " * GAP).join(parts).rstrip()


def grid_rich(grid: Grid, width: int | None = None) -> RenderableType:
    """The same table for a terminal: bold header, coloured cells."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    if not grid.rows and grid.empty_message:
        parts.append(Text(grid.empty_message, style="dim"))
    else:
        columns, widths, rows = _laid_out(grid, width)
        table = Table(box=None, pad_edge=False, padding=(0, GAP // 2), header_style="bold", show_edge=False)
        for col, w in zip(columns, widths, strict=True):
            table.add_column(col.header, justify=col.justify, no_wrap=True, min_width=w, max_width=w)
        for row in rows:
            table.add_row(*(Text(cell.text, style=cell.style) for cell in row))
        parts.append(table)
    for line in grid.footer:
        text = Text()
        for seg in line:
            text.append(seg.text, style=seg.style)
        parts.append(text)
    return Group(*parts)


def fields_text(fields: Iterable[Field]) -> str:
    fields = list(fields)
    if not fields:
        return ""
    width = max(len(f.label) for f in fields)
    return "".join(f"{(f.label + ':').ljust(width + 1)}  {f.value}\n" for f in fields)


def fields_rich(fields: Iterable[Field]) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, GAP))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for f in fields:
        table.add_row(Text(f.label + ":"), Text(f.value, style=f.style))
    return table


# ---------------------------------------------------------------- jobs


def jobs_grid(
    jobs: Sequence[common_pb2.Job],
    summary: common_pb2.JobSummary | None = None,
    matching: int | None = None,
    now: float | None = None,
) -> Grid:
    """The `kueue ls` table: id, working directory, command, status, worker."""
    now = time.time() if now is None else now
    columns = [
        Column("id", justify="right"),
        Column("directory", cut="front", weight=2),
        # The command tells jobs apart best: it gets the larger share.
        Column("command", cut="back", weight=3),
        Column("status"),
        Column("worker", cut="back", drop=1),
    ]
    rows = []
    for job in jobs:
        status, style = job_status(job, now)
        # A pending job runs nowhere: a worker that rejected or lost it is history (kueue show).
        worker = "" if job.state == JobState.JOB_STATE_PENDING else job.worker_name
        rows.append(
            [
                Cell(str(job.id)),
                Cell(single_line(job.spec.cwd)),
                Cell(command_text(job.spec.command, job.spec.shell)),
                Cell(status, style),
                Cell(worker or "-", "" if worker else "dim"),
            ]
        )
    footer = jobs_footer(summary, len(jobs), matching) if summary is not None else []
    return Grid(columns, rows, footer, empty_message="no jobs")


def jobs_footer(
    summary: common_pb2.JobSummary, shown: int, matching: int | None, states: Iterable[int] = ()
) -> list[list[Cell]]:
    """Counts per state (only those in `states` when given), then what is
    shown, the average run time and the ETA."""
    wanted = frozenset(states)
    counts = [
        ("pending", summary.pending, JobState.JOB_STATE_PENDING),
        ("offered", summary.offered, JobState.JOB_STATE_OFFERED),
        ("running", summary.running, JobState.JOB_STATE_RUNNING),
        ("succeeded", summary.succeeded, JobState.JOB_STATE_SUCCEEDED),
        ("failed", summary.failed, JobState.JOB_STATE_FAILED),
        ("canceled", summary.canceled, JobState.JOB_STATE_CANCELED),
    ]
    first: list[Cell] = []
    for name, count, state in counts:
        if wanted and state not in wanted:
            continue
        if first:
            first.append(Cell(", "))
        first.append(Cell(f"{count} {name}", STATE_STYLES[state] if count else "dim"))
    second: list[str] = []
    if matching is not None and matching > shown:
        second.append(f"showing {shown} of {matching} jobs (-n N for more)")
    if summary.succeeded + summary.failed:
        second.append(f"average run time {format_duration(summary.average_run_time_seconds)}")
    if summary.pending + summary.offered + summary.running:
        eta = summary.eta_seconds
        second.append(f"ETA {format_duration(eta)}" if eta > 0 else "ETA unknown")
    lines = [first]
    if second:
        lines.append([Cell(", ".join(second), "dim")])
    return lines


def jobs_text(
    jobs: Sequence[common_pb2.Job],
    summary: common_pb2.JobSummary | None = None,
    matching: int | None = None,
    *,
    width: int | None = None,
    now: float | None = None,
) -> str:
    return grid_text(jobs_grid(jobs, summary, matching, now), width)


def jobs_rich(
    jobs: Sequence[common_pb2.Job],
    summary: common_pb2.JobSummary | None = None,
    matching: int | None = None,
    *,
    width: int | None = None,
    now: float | None = None,
) -> RenderableType:
    return grid_rich(jobs_grid(jobs, summary, matching, now), width)


def resources_summary(resources: common_pb2.Resources) -> str:
    """`1 slot, 4 cpus, 8.0 GiB RAM, genus=1`."""
    parts = [
        plural(resources.slots, "slot"),
        plural(resources.cpus, "cpu"),
        f"{format_mb(resources.ram_mb)} RAM",
    ]
    parts += [f"{name}={amount}" for name, amount in sorted(resources.global_resources.items())]
    return ", ".join(parts)


# ---------------------------------------------------------------- workers


def _fraction_style(fraction: float) -> str:
    """Green when idle through red when saturated."""
    if fraction < 0.5:
        return "green"
    if fraction < 0.75:
        return "yellow"
    if fraction < 0.9:
        return "dark_orange"
    return "red"


def busy_fraction(worker: common_pb2.Worker) -> float:
    """How much of the worker is taken: its scarcest of slots, cpus and RAM.

    Free resources already exclude other users' load (dynamic checks), so a
    workstation in use shows busy even without jobs.
    """
    cap, free = worker.capacity, worker.free
    fractions = [0.0]
    for total, left in ((cap.slots, free.slots), (cap.cpus, free.cpus), (cap.ram_mb, free.ram_mb)):
        if total:
            fractions.append(min(1.0, max(0.0, (total - left) / total)))
    return max(fractions)


def _os_text(system: common_pb2.SystemInfo) -> str:
    return system.distribution or system.kernel or "-"


def workers_grid(
    workers: Sequence[common_pb2.Worker], now: float | None = None, *, state: bool = False
) -> Grid:
    """The `kueue workers` table; with `state`, a last column says connected,
    draining or lost since when (the live views)."""
    now = time.time() if now is None else now
    columns = [
        # On a narrow terminal the id goes first (the name identifies a worker
        # too), then the OS.
        Column("id", cut="back", drop=1),
        Column("name", cut="back", weight=2),
        Column("OS", cut="back", drop=2),
        Column("cpus", justify="right"),
        Column("freq", justify="right", drop=3),
        Column("memory", justify="right"),
        Column("jobs", justify="right"),
        Column("busy", justify="right"),
        Column("load 1/5/15"),
        Column("uptime", justify="right"),
    ]
    if state:
        columns.append(Column("state"))
    rows = []
    for w in workers:
        sysinfo = w.system
        cores = sysinfo.cpu_cores or w.capacity.cpus
        if w.connected:
            busy = busy_fraction(w)
            busy_cell = Cell(f"{busy * 100:.0f}%", _fraction_style(busy))
            load_cell = Cell(
                f"{sysinfo.load_1:.1f} {sysinfo.load_5:.1f} {sysinfo.load_15:.1f}",
                _fraction_style(sysinfo.load_1 / cores) if cores else "",
            )
            name_cell = Cell(f"{w.name} (draining)", "yellow") if w.draining else Cell(w.name)
            uptime = Cell(format_duration(sysinfo.uptime_seconds) if sysinfo.uptime_seconds else "-")
        else:
            busy_cell = Cell("-", "dim")
            load_cell = Cell("-", "dim")
            name_cell = Cell(w.name, "dim")
            # When it was last seen is in `show-worker`; the column stays narrow.
            uptime = Cell("-" if state else "offline", "dim")
        if state:
            name_cell = Cell(w.name, name_cell.style if w.connected else "dim")
        # Total only: what is in use shows in `busy`; `show-worker` has the rest.
        memory = format_mb(sysinfo.memory_total_mb) if sysinfo.memory_total_mb else "-"
        rows.append(
            [
                Cell(w.id),
                name_cell,
                Cell(_os_text(sysinfo)),
                Cell(str(cores) if cores else "-"),
                Cell(format_frequency(sysinfo.cpu_frequency_mhz)),
                Cell(memory),
                Cell(f"{w.running_jobs}/{w.capacity.slots}"),
                busy_cell,
                load_cell,
                uptime,
            ]
        )
        if state:
            rows[-1].append(_worker_state(w, now))
    return Grid(columns, rows, empty_message="no workers")


def _worker_state(worker: common_pb2.Worker, now: float) -> Cell:
    if not worker.connected:
        return Cell(f"lost since {format_date(seconds(worker.last_seen_at), now)}", "red")
    if worker.draining:
        return Cell("draining", "yellow")
    return Cell("connected", "green")


def workers_text(
    workers: Sequence[common_pb2.Worker], *, width: int | None = None, now: float | None = None
) -> str:
    return grid_text(workers_grid(workers, now), width)


def workers_rich(
    workers: Sequence[common_pb2.Worker], *, width: int | None = None, now: float | None = None
) -> RenderableType:
    return grid_rich(workers_grid(workers, now), width)


def worker_fields(worker: common_pb2.Worker, now: float | None = None) -> list[Field]:
    """Every field of a worker for `kueue show-worker`."""
    now = time.time() if now is None else now
    s = worker.system
    connected_at, last_seen = seconds(worker.connected_at), seconds(worker.last_seen_at)
    if worker.connected:
        since = f"since {format_datetime(connected_at)}" if connected_at else ""
        connection = Field("connected", f"yes {since}".strip(), "green")
        if worker.draining:
            connection = Field("connected", f"yes {since}, draining: takes no new jobs".strip(), "yellow")
    else:
        connection = Field("connected", f"no, last seen {format_datetime(last_seen)}", "red")
    busy = busy_fraction(worker)
    fields = [
        Field("id", worker.id),
        Field("name", worker.name),
        connection,
    ]
    if worker.address:
        fields.append(Field("address", worker.address))
    if worker.machine:
        fields.append(
            Field("machine", f"{worker.machine} (its CPUs and RAM shared by the worker's processes)")
        )
    fields += [
        Field("hostname", s.hostname or "-"),
        Field("distribution", s.distribution or "-"),
        Field("kernel", s.kernel or "-"),
        Field("cpu cores", str(s.cpu_cores)),
        Field("cpu frequency", format_frequency(s.cpu_frequency_mhz)),
        Field("memory", f"{format_mb(s.memory_available_mb)} available of {format_mb(s.memory_total_mb)}"),
        Field(
            "load 1/5/15",
            f"{s.load_1:.2f} {s.load_5:.2f} {s.load_15:.2f}",
            _fraction_style(s.load_1 / s.cpu_cores) if s.cpu_cores else "",
        ),
        Field("uptime", format_duration(s.uptime_seconds)),
        Field("capacity", resources_summary(worker.capacity)),
        Field("free", resources_summary(worker.free)),
        Field("busy", f"{busy * 100:.0f}%", _fraction_style(busy)),
        Field("running jobs", str(worker.running_jobs)),
    ]
    if last_seen is not None and worker.connected:
        fields.append(Field("last heartbeat", format_date(last_seen, now)))
    return fields


def worker_details_text(
    resp: cluster_service_pb2.GetWorkerResponse, *, width: int | None = None, now: float | None = None
) -> str:
    text = fields_text(worker_fields(resp.worker, now))
    if resp.jobs:
        text += "\n" + jobs_text(resp.jobs, width=width, now=now)
    return text


def worker_details_rich(
    resp: cluster_service_pb2.GetWorkerResponse, *, width: int | None = None, now: float | None = None
) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = [fields_rich(worker_fields(resp.worker, now))]
    if resp.jobs:
        parts += [Text(""), jobs_rich(resp.jobs, width=width, now=now)]
    return Group(*parts)


# ---------------------------------------------------------------- resources


def resources_grid(resources: Sequence[common_pb2.GlobalResource]) -> Grid:
    """The `kueue resources` table: name and used/total."""
    rows = []
    for r in resources:
        fraction = r.used / r.total if r.total else 1.0
        rows.append([Cell(r.name), Cell(f"{r.used}/{r.total}", _fraction_style(fraction))])
    columns = [Column("name", cut="back"), Column("used/total", justify="right")]
    return Grid(columns, rows, empty_message="no global resources (add them under [global_resources])")


def resources_text(resources: Sequence[common_pb2.GlobalResource], *, width: int | None = None) -> str:
    return grid_text(resources_grid(resources), width)


def resources_rich(
    resources: Sequence[common_pb2.GlobalResource], *, width: int | None = None
) -> RenderableType:
    return grid_rich(resources_grid(resources), width)


# ---------------------------------------------------------------- json


def jobs_json(resp: job_service_pb2.ListJobsResponse) -> dict[str, object]:
    """`kueue ls --json`: proto field names, as MessageToDict gives them."""
    from google.protobuf.json_format import MessageToDict

    return {
        "jobs": [MessageToDict(job, preserving_proto_field_name=True) for job in resp.jobs],
        "summary": MessageToDict(resp.summary, preserving_proto_field_name=True),
        "matching": resp.matching,
    }
