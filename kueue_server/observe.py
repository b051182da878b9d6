"""What the server tells operators: one log event per job and worker state
change, and the metrics served on server_settings.metrics_port.

Job changes come from the scheduler's effects and are taken in only after
the commit that holds them, so a log line or a counter never reports a change
that a crash could still undo.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import kueue
from kueue.logs import event
from kueue_server.metrics import Counter, Gauge, Histogram, Metric, exposition
from kueue_server.model import ACTIVE, FINAL, JobRecord, State, WorkerRecord
from kueue_server.scheduler import Effects, JobChange, Scheduler, WorkerChange

log = logging.getLogger("kueue_server")

OUTCOMES = ("succeeded", "failed", "canceled")
STATE_NAMES = {s: s.name.lower() for s in State}
# Seconds; queue waits and run times span milliseconds to days.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400)
RUN_BUCKETS = (0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
MAX_COMMAND_CHARS = 200


class ServerMetrics:
    def __init__(self) -> None:
        self.submitted = Counter(
            "kueue_jobs_submitted_total", "Jobs accepted (committed) since the server started."
        )
        self.dispatched = Counter(
            "kueue_jobs_dispatched_total", "Attempts offered to workers since the server started."
        )
        self.finished = Counter(
            "kueue_jobs_finished_total",
            "Jobs that ended since the server started, by outcome.",
            ["outcome"],
            known=[(o,) for o in OUTCOMES],
        )
        self.requeued = Counter(
            "kueue_jobs_requeued_total",
            "Attempts given back to the queue (worker lost or left, offer rejected or not answered).",
        )
        self.queue_wait = Histogram(
            "kueue_job_queue_wait_seconds",
            "Time from being queued (submitted or requeued) to being offered to a worker.",
            WAIT_BUCKETS,
        )
        self.run_time = Histogram(
            "kueue_job_run_seconds",
            "Run time of attempts that ended with an exit code or signal.",
            RUN_BUCKETS,
        )
        self.commit = Histogram(
            "kueue_store_commit_seconds",
            "Duration of one store commit (output files and SQLite).",
            COMMIT_BUCKETS,
        )
        self.commit_failures = Counter("kueue_store_commit_failures_total", "Store commits that failed.")
        self.jobs = Gauge("kueue_jobs", "Jobs the server holds, by state.", ["state"])
        self.workers_connected = Gauge("kueue_workers_connected", "Workers connected now.")
        self.workers_draining = Gauge(
            "kueue_workers_draining", "Connected workers taking no new jobs (drained or stopping)."
        )
        self.resource_used = Gauge(
            "kueue_global_resource_used", "Units of a global resource in use.", ["resource"]
        )
        self.resource_capacity = Gauge(
            "kueue_global_resource_capacity", "Units of a global resource configured.", ["resource"]
        )
        self.info = Gauge("kueue_server_info", "The server's version.", ["version"])
        self.start_time = Gauge("kueue_server_start_time_seconds", "When the server started (Unix time).")

    def all(self) -> list[Metric]:
        return [
            self.info,
            self.start_time,
            self.jobs,
            self.submitted,
            self.dispatched,
            self.finished,
            self.requeued,
            self.queue_wait,
            self.run_time,
            self.workers_connected,
            self.workers_draining,
            self.resource_used,
            self.resource_capacity,
            self.commit,
            self.commit_failures,
        ]


class Observer:
    def __init__(self, scheduler: Scheduler, clock: Callable[[], float], started_at: float) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.metrics = ServerMetrics()
        self.metrics.info.set(1, (kueue.__version__,))
        self.metrics.start_time.set(started_at)
        # Jobs queued again, and when: their wait counts from then, not from submission.
        self._requeued_at: dict[int, float] = {}

    # ------------------------------------------------------------- job changes

    def committed(self, effects: Effects) -> None:
        """Effects whose commit succeeded."""
        logging_on = log.isEnabledFor(logging.INFO)
        submitted: list[JobRecord] = []
        for change in effects.job_changes:
            if change.attempt == 0 and change.new is State.PENDING:
                # One line per submission (an array may hold thousands of jobs).
                if submitted and submitted[-1].spec_id != change.job.spec_id:
                    self._submitted(submitted)
                    submitted = []
                if self.scheduler.jobs.get(change.job.id) is change.job:
                    submitted.append(change.job)
                continue
            if submitted:
                self._submitted(submitted)
                submitted = []
            self._job_change(change, logging_on)
        if submitted:
            self._submitted(submitted)
        for wchange in effects.worker_changes:
            self._worker_change(wchange)

    def _submitted(self, jobs: list[JobRecord]) -> None:
        self.metrics.submitted.inc(len(jobs))
        first, last = jobs[0].id, jobs[-1].id
        command = " ".join(jobs[0].spec.command)[:MAX_COMMAND_CHARS]
        if len(jobs) == 1:
            event(
                log,
                "job_submitted",
                "job %d submitted: %s",
                first,
                command,
                job=first,
                state="pending",
                command=command,
            )
        else:
            event(
                log,
                "job_submitted",
                "jobs %d-%d submitted (%d): %s",
                first,
                last,
                len(jobs),
                command,
                job=first,
                last_job=last,
                jobs=len(jobs),
                state="pending",
                command=command,
            )

    def _job_change(self, change: JobChange, logging_on: bool) -> None:
        job, new = change.job, change.new
        if new not in FINAL and self.scheduler.jobs.get(job.id) is not job:
            return  # retracted after a failed commit: it never happened
        m = self.metrics
        if new is State.OFFERED:
            m.dispatched.inc()
            queued_at = self._requeued_at.pop(job.id, job.issued_at)
            if job.offered_at is not None:
                m.queue_wait.observe(max(0.0, job.offered_at - queued_at))
        elif new is State.PENDING:
            m.requeued.inc()
            self._requeued_at[job.id] = self.clock()
        elif new in FINAL:
            self._requeued_at.pop(job.id, None)
            m.finished.inc(1, (STATE_NAMES[new],))
            # Attempts whose process ran and ended (with an exit code or a
            # signal, killed on request included); one that never started has none.
            if job.exit_code is not None or job.signal:
                m.run_time.observe(job.run_time)
        if logging_on:
            self._log_job_change(change)

    def _log_job_change(self, change: JobChange) -> None:
        job, new, attempt, worker = change.job, change.new, change.attempt, change.worker_name
        state = STATE_NAMES[new]
        if new is State.OFFERED:
            event(
                log,
                "job_offered",
                "job %d attempt %d offered to %s",
                job.id,
                attempt,
                worker,
                job=job.id,
                attempt=attempt,
                worker=worker,
                state=state,
            )
        elif new is State.RUNNING:
            event(
                log,
                "job_started",
                "job %d attempt %d started on %s",
                job.id,
                attempt,
                worker,
                job=job.id,
                attempt=attempt,
                worker=worker,
                state=state,
            )
        elif new is State.PENDING:
            reason = job.comment.removesuffix("; queued again")
            event(
                log,
                "job_requeued",
                "job %d attempt %d on %s back in the queue: %s",
                job.id,
                attempt,
                worker,
                reason,
                job=job.id,
                attempt=attempt,
                worker=worker,
                state=state,
                reason=reason,
            )
        elif new is State.CANCELED:
            if change.old in ACTIVE:
                event(
                    log,
                    "job_canceled",
                    "job %d canceled (attempt %d on %s)",
                    job.id,
                    attempt,
                    worker,
                    job=job.id,
                    attempt=attempt,
                    worker=worker,
                    state=state,
                    reason=job.comment or None,
                )
            else:  # canceled while queued: no attempt of it ran
                event(
                    log,
                    "job_canceled",
                    "job %d canceled while queued",
                    job.id,
                    job=job.id,
                    state=state,
                    reason=job.comment or None,
                )
        else:
            if job.comment.startswith("failed to start"):
                how = job.comment
            elif job.exit_code is not None:
                how = f"exit code {job.exit_code}"
            else:
                how = f"signal {job.signal}"
            event(
                log,
                "job_finished",
                "job %d attempt %d finished on %s: %s after %.1f s (%s)",
                job.id,
                attempt,
                worker,
                how,
                job.run_time,
                state,
                job=job.id,
                attempt=attempt,
                worker=worker,
                state=state,
                exit_code=job.exit_code,
                signal=job.signal or None,
                run_time=round(job.run_time, 3),
            )

    # ----------------------------------------------------------- worker changes

    def _worker_change(self, change: WorkerChange) -> None:
        if change.what == "lost":
            event(
                log,
                "worker_lost",
                "worker %s lost (%s); its jobs are queued again",
                change.name,
                change.detail,
                worker=change.name,
                worker_id=change.worker_id,
                reason=change.detail,
            )
        elif change.what == "draining":
            event(
                log,
                "worker_draining",
                "worker %s is stopping: it finishes its jobs and takes no new ones",
                change.name,
                worker=change.name,
                worker_id=change.worker_id,
            )

    def worker_connected(self, worker: WorkerRecord, address: str, attempts: int) -> None:
        event(
            log,
            "worker_connected",
            "worker %s (%s) connected from %s: %d slots, %d cpus, %d MB RAM, %d attempts reported",
            worker.name,
            worker.id[:8],
            address,
            worker.capacity.slots,
            worker.capacity.cpus,
            worker.capacity.ram_mb,
            attempts,
            worker=worker.name,
            worker_id=worker.id,
            address=address,
            slots=worker.capacity.slots,
            cpus=worker.capacity.cpus,
            ram_mb=worker.capacity.ram_mb,
            attempts=attempts,
        )

    def worker_disconnected(self, worker_id: str, name: str) -> None:
        event(log, "worker_disconnected", "worker %s disconnected", name, worker=name, worker_id=worker_id)

    def worker_leaving(self, worker_id: str, name: str, reason: str) -> None:
        event(
            log,
            "worker_leaving",
            "worker %s leaving: %s",
            name,
            reason,
            worker=name,
            worker_id=worker_id,
            reason=reason,
        )

    def worker_drained(self, worker: WorkerRecord, drained: bool) -> None:
        what = "drained" if drained else "undrained"
        event(
            log,
            f"worker_{what}",
            "worker %s %s by an operator",
            worker.name,
            what,
            worker=worker.name,
            worker_id=worker.id,
        )

    # ------------------------------------------------------------------- store

    def store_committed(self, seconds: float, ok: bool) -> None:
        """From the store's writer thread, after each commit."""
        if ok:
            self.metrics.commit.observe(seconds)
        else:
            self.metrics.commit_failures.inc()

    # ------------------------------------------------------------------ scrape

    def exposition(self) -> str:
        """The current metrics in Prometheus' text format (called on the event loop)."""
        m = self.metrics
        sched = self.scheduler
        m.jobs.set_all({(name,): float(sched.counts[s]) for s, name in STATE_NAMES.items()})
        connected = [w for w in sched.workers.values() if w.connected]
        m.workers_connected.set(len(connected))
        m.workers_draining.set(sum(1 for w in connected if w.draining))
        totals = sched.limits.global_resources
        m.resource_capacity.set_all({(name,): float(n) for name, n in totals.items()})
        m.resource_used.set_all({(name,): float(sched.global_used[name]) for name in totals})
        return exposition(m.all())
