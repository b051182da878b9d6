"""JobService.WatchList: the stream behind `kueue ls --watch` and `kueue top`.

One coroutine per watcher, on the server's loop. The flusher only marks job
ids as changed in the watcher's Watch (a capped set: constant memory however
slow the reader); everything else happens here, at most once per interval:
finding the window (the newest `limit` matching jobs), comparing it with what
the client holds, and sending only the jobs that changed or entered it, with
the counters. While the client does not read, this coroutine waits in its
write and changes pile up as ids, not as messages: when it reads again it
gets the latest state, not a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kueue.v1 import job_service_pb2 as jpb
from kueue_server import convert
from kueue_server.app import App
from kueue_server.convert import summary_message
from kueue_server.model import State
from kueue_server.scheduler import Scheduler

MAX_LIMIT = 1000
DEFAULT_INTERVAL = 0.25
MIN_INTERVAL = 0.1
MAX_INTERVAL = 10.0
# Workers change with every heartbeat: they are looked at once a second.
WORKERS_INTERVAL = 1.0
# Beyond this many changed ids between two messages the watcher stops
# recording them and looks at its whole window instead.
CHANGED_CAP = 4 * MAX_LIMIT


@dataclass(frozen=True)
class Params:
    states: frozenset[State] | None
    limit: int
    include_workers: bool
    interval: float

    @classmethod
    def of(cls, request: jpb.WatchListRequest, states: frozenset[State] | None) -> Params:
        interval = request.min_interval_ms / 1000 if request.min_interval_ms else DEFAULT_INTERVAL
        return cls(
            states=states,
            limit=min(request.limit, MAX_LIMIT),
            include_workers=request.include_workers,
            interval=min(MAX_INTERVAL, max(MIN_INTERVAL, interval)),
        )


async def stream(app: App, params: Params) -> AsyncIterator[jpb.WatchListResponse]:
    sched = app.scheduler
    loop = asyncio.get_running_loop()
    watch = app.watchers.add(None, cap=CHANGED_CAP)
    window: list[int] = []  # newest first
    last_counters: tuple[object, ...] | None = None
    last_workers: jpb.WorkerList | None = None
    workers_looked_at = -math.inf
    first = True
    try:
        while True:
            started = loop.time()
            changed_ids, overflow = watch.take_all()
            changed = set(changed_ids)
            held = set(window)
            if first or overflow or _window_may_change(sched, params, window, held, changed):
                window = [job.id for job in sched.recent(params.states, params.limit)] if params.limit else []
            send = window if first or overflow else [i for i in window if i not in held or i in changed]
            msg = jpb.WatchListResponse(
                jobs=[convert.job_message(sched.jobs[i]) for i in reversed(send)],
                window_ids=reversed(window),
                summary=summary_message(*sched.summary()),
                matching=sched.matching(params.states),
            )
            counters = (msg.summary.SerializeToString(), msg.matching, tuple(window))
            if params.include_workers and started - workers_looked_at >= WORKERS_INTERVAL:
                workers_looked_at = started
                workers = _workers(sched)
                if workers != last_workers:
                    msg.workers.CopyFrom(workers)
                    last_workers = workers
            if first or send or counters != last_counters or msg.HasField("workers"):
                yield msg
            last_counters = counters
            first = False
            # At most one message per interval; then wait for a change, or for
            # the next look at the workers.
            await asyncio.sleep(max(0.0, started + params.interval - loop.time()))
            if not watch.event.is_set():
                timeout = None
                if params.include_workers:
                    timeout = max(0.0, workers_looked_at + WORKERS_INTERVAL - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.event.wait(), timeout)
    finally:
        app.watchers.remove(watch)


def _window_may_change(
    sched: Scheduler, params: Params, window: list[int], held: set[int], changed: set[int]
) -> bool:
    """Whether a changed job could alter which jobs are in the window: one in
    it left the filter (or was removed), or one outside now matches and is
    newer than the oldest in a full window. O(changed), not O(jobs)."""
    if not params.limit:
        return False
    states = params.states
    full = len(window) >= params.limit
    oldest = window[-1] if window else 0
    for job_id in changed:
        job = sched.jobs.get(job_id)
        matches = job is not None and (states is None or job.state in states)
        if job_id in held:
            if not matches:
                return True
        elif matches and (not full or job_id > oldest):
            return True
    return False


def _workers(sched: Scheduler) -> jpb.WorkerList:
    # The same workers as ListWorkers with include_disconnected.
    workers = [w for w in sched.workers.values() if w.connected or w.capacity.slots]
    workers.sort(key=lambda w: w.name)
    return jpb.WorkerList(workers=[convert.worker_message(w) for w in workers])
