"""What a live view knows of the server: the window of jobs, counters and
workers, kept current from WatchList messages. Pure: no I/O, no rich."""

from __future__ import annotations

from dataclasses import dataclass, field

from kueue.v1 import common_pb2, job_service_pb2


@dataclass(frozen=True)
class Snapshot:
    """One consistent picture, for drawing."""

    # Jobs in the window, oldest first (as `kueue ls` lists them).
    jobs: list[common_pb2.Job]
    summary: common_pb2.JobSummary
    matching: int
    # None until the server has sent them (or when they were not asked for).
    workers: list[common_pb2.Worker] | None
    # False until the first message: nothing to show yet.
    received: bool
    # What is wrong right now (server lost, reconnecting), empty when all is well.
    problem: str


@dataclass
class LiveState:
    jobs: dict[int, common_pb2.Job] = field(default_factory=dict)
    window: list[int] = field(default_factory=list)
    summary: common_pb2.JobSummary = field(default_factory=common_pb2.JobSummary)
    matching: int = 0
    workers: list[common_pb2.Worker] | None = None
    received: bool = False
    problem: str = ""

    def apply(self, msg: job_service_pb2.WatchListResponse) -> None:
        for job in msg.jobs:
            self.jobs[job.id] = job
        self.window = list(msg.window_ids)
        if len(self.jobs) > len(self.window):
            keep = set(self.window)
            self.jobs = {i: job for i, job in self.jobs.items() if i in keep}
        self.summary = msg.summary
        self.matching = msg.matching
        if msg.HasField("workers"):
            self.workers = list(msg.workers.workers)
        self.received = True
        self.problem = ""

    def snapshot(self) -> Snapshot:
        return Snapshot(
            jobs=[self.jobs[i] for i in self.window if i in self.jobs],
            summary=self.summary,
            matching=self.matching,
            workers=None if self.workers is None else list(self.workers),
            received=self.received,
            problem=self.problem,
        )
