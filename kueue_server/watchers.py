"""Fan-out of job changes to watching streams (wait, watch, log -f).

Each watcher holds the set of job ids changed since it last looked, not a
queue of states: a slow reader sees the latest state of each job and never
holds the server back or makes it buffer without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable


class StreamsClosed(Exception):
    """The server is stopping: a watching stream ends now (Watchers.close)."""


class Watch:
    def __init__(self, ids: frozenset[int] | None, cap: int | None = None) -> None:
        self.ids = ids
        self.changed: dict[int, None] = {}
        self.event = asyncio.Event()
        # Set by Watchers.close(), with the event: the stream's owner ends it.
        self.closed = False
        # With a cap, more changes than `cap` between two looks collapse into
        # `overflow` ("anything may have changed"): memory stays constant
        # however many jobs change while the reader is slow.
        self.cap = cap
        self.overflow = False

    def note(self, job_ids: Collection[int]) -> None:
        if not self.overflow:
            self.changed.update(dict.fromkeys(job_ids))
            if self.cap is not None and len(self.changed) > self.cap:
                self.overflow = True
                self.changed.clear()
        self.event.set()

    def take(self) -> list[int]:
        changed = list(self.changed)
        self.changed.clear()
        self.event.clear()
        return changed

    def take_all(self) -> tuple[list[int], bool]:
        """(changed ids, overflow), and start afresh."""
        overflow, self.overflow = self.overflow, False
        return self.take(), overflow


class Watchers:
    def __init__(self) -> None:
        self._all: set[Watch] = set()
        self._by_job: dict[int, set[Watch]] = {}
        self.closed = False

    def add(self, ids: Iterable[int] | None, cap: int | None = None) -> Watch:
        watch = Watch(frozenset(ids) if ids is not None else None, cap)
        if self.closed:
            watch.closed = True
            watch.event.set()
        if watch.ids is None:
            self._all.add(watch)
        else:
            for job_id in watch.ids:
                self._by_job.setdefault(job_id, set()).add(watch)
        return watch

    def remove(self, watch: Watch) -> None:
        self._all.discard(watch)
        for job_id in watch.ids or ():
            watchers = self._by_job.get(job_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._by_job[job_id]

    def notify(self, job_ids: Collection[int]) -> None:
        if not job_ids:
            return
        for watch in self._all:
            watch.note(job_ids)
        if not self._by_job:
            return
        for job_id in job_ids:
            for watch in self._by_job.get(job_id, ()):
                watch.changed[job_id] = None
                watch.event.set()

    def close(self) -> None:
        """The server is stopping: wake every watch, marked closed, so that
        the streams end now rather than when the server's grace time for
        calls in flight is up (a watching stream never ends by itself)."""
        self.closed = True
        for watch in [*self._all, *(w for ws in self._by_job.values() for w in ws)]:
            watch.closed = True
            watch.event.set()

    def __len__(self) -> int:
        return len(self._all) + sum(len(w) for w in self._by_job.values())
