"""JobService.WatchList: the stream behind `kueue ls --watch` and `kueue top`.

One coroutine per watcher, on the server's loop. The flusher only marks job
ids as changed in the watcher's Watch (a capped set: constant memory however
slow the reader); everything else happens here, at most once per interval:
finding the window (the newest `limit` matching jobs; from the previous one
and the changed ids when it can), comparing it with what the client holds,
and sending only the jobs that changed or entered it, with the counters.
While the client does not read, this coroutine waits in its write and
changes pile up as ids, not as messages: when it reads again it gets the
latest state, not a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kueue.v1 import job_service_pb2 as jpb
from kueue_server import convert
from kueue_server.app import App
from kueue_server.convert import summary_message
from kueue_server.model import State
from kueue_server.scheduler import Scheduler
from kueue_server.watchers import StreamsClosed

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
            moved = None if first or overflow else next_window(sched, params, window, held, changed)
            if moved is None:
                moved = [job.id for job in sched.recent(params.states, params.limit)] if params.limit else []
            window = moved
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
                    async with asyncio.timeout(timeout):
                        await watch.event.wait()
            if watch.closed:
                raise StreamsClosed
    finally:
        app.watchers.remove(watch)


def next_window(
    sched: Scheduler, params: Params, window: list[int], held: set[int], changed: set[int]
) -> list[int] | None:
    """The window (newest first) after `changed`, from the old one: O(changed +
    limit), not O(jobs). None when it must be found afresh: a job in it left
    the filter or was removed, and which older job takes its place is not known.

    The old window holds the newest matching jobs, so a matching job outside
    it that did not change is older than all of it; only changed jobs can
    enter, and only by being newer than its oldest (or when it is not full)."""
    if not params.limit:
        return []
    states = params.states
    full = len(window) >= params.limit
    oldest = window[-1] if window else 0
    entering = []
    for job_id in changed:
        job = sched.jobs.get(job_id)
        matches = job is not None and (states is None or job.state in states)
        if job_id in held:
            if not matches:
                return None
        elif matches and (not full or job_id > oldest):
            entering.append(job_id)
    if not entering:
        return window
    return heapq.nlargest(params.limit, itertools.chain(window, entering))


def _workers(sched: Scheduler) -> jpb.WorkerList:
    # The same workers as ListWorkers with include_disconnected.
    workers = [w for w in sched.workers.values() if w.connected or w.capacity.slots]
    workers.sort(key=lambda w: w.name)
    return jpb.WorkerList(workers=[convert.worker_message(w) for w in workers])
