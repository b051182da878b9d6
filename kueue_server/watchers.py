"""Fan-out of job changes to watching streams (wait, watch, log -f).

Each watcher holds the set of job ids changed since it last looked, not a
queue of states: a slow reader sees the latest state of each job and never
holds the server back or makes it buffer without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Watch:
    def __init__(self, ids: frozenset[int] | None) -> None:
        self.ids = ids
        self.changed: dict[int, None] = {}
        self.event = asyncio.Event()

    def take(self) -> list[int]:
        changed = list(self.changed)
        self.changed.clear()
        self.event.clear()
        return changed


class Watchers:
    def __init__(self) -> None:
        self._all: set[Watch] = set()
        self._by_job: dict[int, set[Watch]] = {}

    def add(self, ids: Iterable[int] | None) -> Watch:
        watch = Watch(frozenset(ids) if ids is not None else None)
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

    def notify(self, job_ids: Iterable[int]) -> None:
        for job_id in job_ids:
            for watch in self._all:
                watch.changed[job_id] = None
                watch.event.set()
            for watch in self._by_job.get(job_id, ()):
                watch.changed[job_id] = None
                watch.event.set()

    def __len__(self) -> int:
        return len(self._all) + sum(len(w) for w in self._by_job.values())
