"""`kueue show ID`: one job's fields, its history, and the tail of its output.

Pure like views: the same model renders as plain text (pipes, NO_COLOR) or as
a rich panel (terminal); rich is imported only by the rich renderer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kueue.v1 import common_pb2
from kueue_client.formatting import (
    command_text,
    format_bytes,
    format_duration,
    plural,
    seconds,
)
from kueue_client.status import STATE_STYLES, failed_to_start, job_status, run_time, signal_name, state_name
from kueue_client.views import GAP, Field, fields_rich, fields_text, resources_summary

if TYPE_CHECKING:
    from rich.console import RenderableType

JobState = common_pb2.JobState
Outcome = common_pb2.AttemptOutcome

REQUEUED_STYLE = "yellow"


@dataclass
class Event:
    """One line of a job's history."""

    time: float | None
    text: str
    style: str = ""


# The smallest job_output_cap_mb: a stream no larger was kept whole.
MIN_OUTPUT_CAP = 1024 * 1024


def _output_text(path: str, size: int, other_size: int, truncated: bool) -> str:
    """A stream's line; `truncated` is the job's one flag for both streams."""
    if path == "null":
        return "discarded"
    if path:
        return f"written to {path} on the worker"
    text = f"captured, {format_bytes(size)}"
    if not truncated or size <= MIN_OUTPUT_CAP:
        return text
    if other_size <= MIN_OUTPUT_CAP:
        return text + " (only the tail is kept)"
    return text + " (only the tail is kept if over the server's job_output_cap_mb)"


def _worker_text(job: common_pb2.Job) -> str:
    worker = job.worker_name or job.worker_id
    if job.worker_name and job.worker_id and job.worker_id != job.worker_name:
        worker += f" ({job.worker_id})"
    return worker


_REQUEUE_NOUNS = {
    Outcome.ATTEMPT_OUTCOME_WORKER_LOST: "worker lost",
    Outcome.ATTEMPT_OUTCOME_WORKER_STOPPED: "worker stopped",
    Outcome.ATTEMPT_OUTCOME_REJECTED: "rejected",
    Outcome.ATTEMPT_OUTCOME_UNANSWERED: "not answered",
    Outcome.ATTEMPT_OUTCOME_HANDED_BACK: "handed back",
}


def _attempts_text(job: common_pb2.Job) -> str:
    """`3 (1 worker lost, 1 rejected)`: how often it was handed out, and why again."""
    ended = Counter(a.outcome for a in job.attempts)
    parts = [f"{ended[outcome]} {noun}" for outcome, noun in _REQUEUE_NOUNS.items() if ended[outcome]]
    return f"{job.attempt} ({', '.join(parts)})" if parts else str(job.attempt)


# Job.start_failure, with the exit status `kueue wait` and `kueue run` give for it.
START_FAILURE_TEXT = {
    common_pb2.START_FAILURE_NOT_FOUND: "command not found (exit status 127, as from a shell)",
    common_pb2.START_FAILURE_NOT_EXECUTABLE: "cannot execute (exit status 126, as from a shell)",
    common_pb2.START_FAILURE_OTHER: "before its command ran (exit status 1)",
}


def job_fields(job: common_pb2.Job, now: float | None = None) -> list[Field]:
    """Every field of a job for `kueue show`; the times are in job_history."""
    now = time.time() if now is None else now
    spec = job.spec
    status, style = job_status(job, now)
    env = f"{plural(len(spec.env), 'variable')} from the client"
    if spec.use_worker_env:
        env = "the worker's own"
    fields = [
        Field("id", str(job.id)),
        Field("state", state_name(job.state), style),
        Field("status", status, style),
        Field("command", command_text(spec.command, spec.shell)),
    ]
    if spec.shell:
        fields.append(Field("shell", "yes (run with /bin/sh -c)"))
    fields += [
        Field("working directory", spec.cwd),
        Field("resources", resources_summary(spec.resources)),
        Field("submitted by", f"{spec.user or '?'}@{spec.submit_host or '?'}"),
        Field("environment", env),
        Field(
            "stdout", _output_text(spec.stdout_path, job.stdout_bytes, job.stderr_bytes, job.output_truncated)
        ),
        Field(
            "stderr", _output_text(spec.stderr_path, job.stderr_bytes, job.stdout_bytes, job.output_truncated)
        ),
    ]
    if job.worker_name or job.worker_id:
        fields.append(Field("worker", _worker_text(job)))
    if job.attempt:
        fields.append(Field("attempts", _attempts_text(job)))
    if job.HasField("exit_code"):
        fields.append(Field("exit code", str(job.exit_code), style))
    if job.signal:
        fields.append(Field("signal", f"{job.signal} ({signal_name(job.signal)})", style))
    start_failure = START_FAILURE_TEXT.get(job.start_failure)
    if start_failure:
        fields.append(Field("start failure", start_failure, style))
    if job.state in (JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED) or job.run_time_seconds:
        fields.append(Field("run time", format_duration(run_time(job))))
    if job.peak_memory_bytes:
        fields.append(Field("peak memory", format_bytes(job.peak_memory_bytes)))
    if job.kill_requested:
        fields.append(Field("kill requested", "yes", "yellow"))
    if job.comment:
        fields.append(Field("comment", job.comment))
    return fields


# ---------------------------------------------------------------- history


def _attempts(job: common_pb2.Job) -> list[common_pb2.Attempt]:
    """The job's attempts; from its own fields when the server sent none
    (an older server, or a listing instead of GetJob)."""
    if job.attempts:
        return list(job.attempts)
    if not job.attempt or job.state == JobState.JOB_STATE_PENDING:
        return []
    last = common_pb2.Attempt(
        number=job.attempt,
        worker_id=job.worker_id,
        worker_name=job.worker_name,
        offered_at=job.offered_at,
        started_at=job.started_at,
    )
    if job.state in (JobState.JOB_STATE_OFFERED, JobState.JOB_STATE_RUNNING):
        last.outcome = Outcome.ATTEMPT_OUTCOME_ACTIVE
    else:
        canceled = job.state == JobState.JOB_STATE_CANCELED
        last.outcome = Outcome.ATTEMPT_OUTCOME_CANCELED if canceled else Outcome.ATTEMPT_OUTCOME_FINISHED
        last.ended_at.CopyFrom(job.finished_at)
        last.reason = job.comment
    return [last]


def _ending(job: common_pb2.Job, attempt: common_pb2.Attempt, now: float) -> tuple[str, str]:
    """What ended an attempt, as a history line."""
    worker = attempt.worker_name or attempt.worker_id or "?"
    outcome, reason = attempt.outcome, attempt.reason
    if outcome == Outcome.ATTEMPT_OUTCOME_FINISHED:
        style = STATE_STYLES.get(job.state, "")
        if failed_to_start(job) and reason:
            return reason, style
        return job_status(job, now)[0], style
    if outcome == Outcome.ATTEMPT_OUTCOME_CANCELED:
        text = "canceled" if reason in ("", "canceled") else f"canceled: {reason.removeprefix('canceled; ')}"
        return text, STATE_STYLES[JobState.JOB_STATE_CANCELED]
    if outcome == Outcome.ATTEMPT_OUTCOME_REJECTED:
        text = f"rejected by {worker}" + (f": {reason}" if reason else "")
    elif outcome == Outcome.ATTEMPT_OUTCOME_UNANSWERED:
        text = f"offer not answered by {worker}"
    elif outcome == Outcome.ATTEMPT_OUTCOME_WORKER_STOPPED:
        text = reason or f"worker {worker} shut down"
    elif outcome == Outcome.ATTEMPT_OUTCOME_HANDED_BACK:
        text = f"handed back by {worker} for an idle worker"
    else:  # worker lost, or an outcome newer than this client
        text = reason or f"worker {worker} lost"
    return f"{text}; queued again", REQUEUED_STYLE


def job_history(job: common_pb2.Job, now: float | None = None) -> list[Event]:
    """Issued, then per attempt: offered, started, how it ended."""
    now = time.time() if now is None else now
    events = [Event(seconds(job.issued_at), "issued")]
    attempts = _attempts(job)
    if attempts and attempts[0].number > 1:
        first = attempts[0].number
        events.append(Event(None, f"attempt{'s 1-' if first > 2 else ' '}{first - 1}: not kept", "dim"))
    for attempt in attempts:
        worker = attempt.worker_name or attempt.worker_id or "?"
        offered = seconds(attempt.offered_at)
        events.append(Event(offered, f"offered to {worker} (attempt {attempt.number})", "dim"))
        started = seconds(attempt.started_at)
        if started is not None:
            waited = f" after waiting {format_duration(started - seconds(job.issued_at))}" if (
                attempt is attempts[0] and seconds(job.issued_at) is not None
            ) else ""  # fmt: skip
            events.append(
                Event(started, f"started on {worker}{waited}", STATE_STYLES[JobState.JOB_STATE_RUNNING])
            )
        if attempt.outcome != Outcome.ATTEMPT_OUTCOME_ACTIVE:
            text, style = _ending(job, attempt, now)
            events.append(Event(seconds(attempt.ended_at), text, style))
    ended_by_attempt = attempts and attempts[-1].outcome == Outcome.ATTEMPT_OUTCOME_CANCELED
    if job.state == JobState.JOB_STATE_CANCELED and not ended_by_attempt:
        events.append(Event(seconds(job.finished_at), "canceled", STATE_STYLES[JobState.JOB_STATE_CANCELED]))
    return events


def _event_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def history_text(events: Sequence[Event]) -> str:
    return "".join(f"  {_event_time(e.time):19}{' ' * GAP}{e.text}\n" for e in events)


def history_rich(events: Sequence[Event]) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, GAP))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for e in events:
        table.add_row(_event_time(e.time), Text(e.text, style=e.style))
    return table


# ---------------------------------------------------------------- the whole view


def job_details_text(job: common_pb2.Job, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return fields_text(job_fields(job, now)) + "history:\n" + history_text(job_history(job, now))


def job_details_rich(job: common_pb2.Job, now: float | None = None) -> RenderableType:
    """A panel titled with the job's id and status, its border in the state's colour."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.text import Text

    now = time.time() if now is None else now
    status, style = job_status(job, now)
    body = Group(
        fields_rich(job_fields(job, now)),
        Text(""),
        Text("history", style="bold"),
        Padding(history_rich(job_history(job, now)), (0, 0, 0, 2)),
    )
    title = Text.assemble(f"job {job.id}: ", (status, style))
    return Panel(body, title=title, title_align="left", border_style=style or "none", expand=False)


def output_tail_header(name: str, tail: bytes, total: int, truncated: bool) -> str:
    """The line above a captured output tail in `kueue show`."""
    if not total and not tail:
        return f"--- {name}: empty ---"
    if len(tail) < total or truncated:
        return f"--- {name}: last {format_bytes(len(tail))} of {format_bytes(total)} ---"
    return f"--- {name} ---"


def log_hint(job: common_pb2.Job) -> str:
    """Where the rest of the output is (empty when there is nothing to read)."""
    stdout, stderr = not job.spec.stdout_path, not job.spec.stderr_path
    active = job.state in (JobState.JOB_STATE_PENDING, JobState.JOB_STATE_OFFERED, JobState.JOB_STATE_RUNNING)
    if not (stdout or stderr) or not (active or job.stdout_bytes or job.stderr_bytes):
        return ""
    follow = " -f" if active else ""
    if not stdout:
        return f"{'follow' if active else 'all of'} stderr: kueue log{follow} --stderr {job.id}"
    more = " (--stderr or --both for stderr)" if stderr else ""
    return f"{'follow the' if active else 'all of the'} output: kueue log{follow} {job.id}{more}"
