"""What a job's state means to a user: its status text, colour and exit status."""

from __future__ import annotations

import signal as signal_module
import time
from collections.abc import Iterable

from kueue.v1 import common_pb2
from kueue_client.errors import UsageError
from kueue_client.formatting import format_date, format_duration, seconds

JobState = common_pb2.JobState

FINAL_STATES = frozenset(
    {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELED}
)

# Rich style names per state; plain-text output ignores them.
STATE_STYLES = {
    JobState.JOB_STATE_PENDING: "",
    JobState.JOB_STATE_OFFERED: "dim",
    JobState.JOB_STATE_RUNNING: "blue",
    JobState.JOB_STATE_SUCCEEDED: "green",
    JobState.JOB_STATE_FAILED: "red",
    JobState.JOB_STATE_CANCELED: "yellow",
}

# Short names used on the command line and in the list footer.
STATE_NAMES = {
    JobState.JOB_STATE_PENDING: "pending",
    JobState.JOB_STATE_OFFERED: "offered",
    JobState.JOB_STATE_RUNNING: "running",
    JobState.JOB_STATE_SUCCEEDED: "succeeded",
    JobState.JOB_STATE_FAILED: "failed",
    JobState.JOB_STATE_CANCELED: "canceled",
}
_BY_NAME = {name: state for state, name in STATE_NAMES.items()}

# Shell convention for a process ended by signal N.
SIGNAL_EXIT_BASE = 128


def state_name(state: int) -> str:
    return STATE_NAMES.get(state, "unknown")


def parse_state(value: int | str) -> int:
    """A JobState from an enum value, `running` or `JOB_STATE_RUNNING`."""
    if isinstance(value, int):
        return value
    key = value.strip().lower().removeprefix("job_state_")
    if key == "cancelled":
        key = "canceled"
    try:
        return _BY_NAME[key]
    except KeyError:
        raise UsageError(f"unknown job state '{value}' (one of {', '.join(_BY_NAME)})") from None


def parse_states(values: Iterable[int | str]) -> list[int]:
    return [parse_state(v) for v in values]


def signal_name(number: int) -> str:
    try:
        return signal_module.Signals(number).name
    except ValueError:
        return f"signal {number}"


def failed_to_start(job: common_pb2.Job) -> bool:
    """A failed job that never ran: no exit code, no signal (the worker's
    reason is in the comment)."""
    if job.state != JobState.JOB_STATE_FAILED:
        return False
    return not (job.HasField("exit_code") or job.signal)


def job_status(job: common_pb2.Job, now: float | None = None) -> tuple[str, str]:
    """(text, style) as in the reference: `running for 4m 05s`, `failed with code 2`..."""
    now = time.time() if now is None else now
    state = job.state
    style = STATE_STYLES.get(state, "")
    if state == JobState.JOB_STATE_PENDING:
        return f"pending since {format_date(seconds(job.issued_at), now)}", style
    if state == JobState.JOB_STATE_OFFERED:
        if job.held:
            return f"waiting for a slot on {job.worker_name}", style
        return f"offered on {format_date(seconds(job.offered_at), now)}", style
    if state == JobState.JOB_STATE_RUNNING:
        started = seconds(job.started_at) or seconds(job.offered_at) or now
        text = f"running for {format_duration(now - started)}"
        return (text + " (killing)" if job.kill_requested else text), style
    if state == JobState.JOB_STATE_SUCCEEDED:
        return f"finished after {format_duration(run_time(job))}", style
    if state == JobState.JOB_STATE_FAILED:
        if job.signal:
            return f"killed by {signal_name(job.signal)}", style
        if job.HasField("exit_code"):
            return f"failed with code {job.exit_code}", style
        return "failed to start", style
    if state == JobState.JOB_STATE_CANCELED:
        when = seconds(job.finished_at) or seconds(job.issued_at)
        return f"canceled on {format_date(when, now)}", style
    return "unknown", style


def run_time(job: common_pb2.Job) -> float:
    if job.run_time_seconds:
        return job.run_time_seconds
    started, finished = seconds(job.started_at), seconds(job.finished_at)
    if started is not None and finished is not None:
        return max(0.0, finished - started)
    return 0.0


EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


# Job.start_failure -> what a shell exits with when it cannot run a command.
START_FAILURE_STATUS = {
    common_pb2.START_FAILURE_NOT_FOUND: EXIT_NOT_FOUND,
    common_pb2.START_FAILURE_NOT_EXECUTABLE: EXIT_CANNOT_EXECUTE,
    common_pb2.START_FAILURE_OTHER: 1,
}


def start_failure_status(comment: str) -> int:
    """What a shell exits with when it cannot run a command (127 not found,
    126 not executable), guessed from the comment: for jobs without
    Job.start_failure (recorded by a server, or run by a worker, before it)."""
    text = comment.lower()
    if "no such file" in text or "not found" in text:
        return EXIT_NOT_FOUND
    cannot_execute = (
        "permission denied",
        "exec format",
        "is a directory",
        "not accessible",
        "argument list too long",
    )
    if any(s in text for s in cannot_execute):
        return EXIT_CANNOT_EXECUTE
    return 1


def exit_status(job: common_pb2.Job) -> int:
    """What `kueue wait` and `kueue cmd --wait` exit with for a finished job:
    its exit code, 128+N for signal N, 126 or 127 where it could not start
    (as a shell says it), 1 for canceled."""
    if job.state == JobState.JOB_STATE_SUCCEEDED:
        return 0
    if job.state == JobState.JOB_STATE_FAILED:
        if job.signal:
            return SIGNAL_EXIT_BASE + job.signal
        if job.HasField("exit_code"):
            # An exit code outside 1..255 cannot be an exit status; keep it a failure.
            code = job.exit_code & 0xFF
            return code or 1
        return START_FAILURE_STATUS.get(job.start_failure) or start_failure_status(job.comment)
    return 1


def why_not_run(job: common_pb2.Job) -> str | None:
    """For a job that ended without running its command: one line saying why."""
    if job.state == JobState.JOB_STATE_CANCELED:
        why = f" ({job.comment})" if job.comment and job.comment != "canceled" else ""
        return f"job {job.id} was canceled{why}"
    if failed_to_start(job):
        return f"job {job.id} {job.comment or 'failed to start'}"
    return None


def first_failure(jobs: Iterable[common_pb2.Job]) -> int:
    """The exit status of several jobs: that of the first one which failed."""
    for job in jobs:
        code = exit_status(job)
        if code:
            return code
    return 0
