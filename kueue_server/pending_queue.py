"""Pending jobs grouped by resource shape.

Each group is a min-heap of job ids (oldest first). Finding work for a worker
looks at the head of each group, so its cost depends on the number of distinct
shapes, not on the number of queued jobs. Removal is lazy: a heap may hold ids
that are no longer pending; they are dropped when they reach the head.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from kueue_server.model import Shape

# How far past a group's head we look for a job the worker has not rejected.
REJECT_SCAN = 32


class PendingQueue:
    def __init__(self, is_pending: Callable[[int], bool]) -> None:
        self._groups: dict[Shape, list[int]] = {}
        self._is_pending = is_pending

    def push(self, shape: Shape, job_id: int) -> None:
        heap = self._groups.get(shape)
        if heap is None:
            heap = self._groups[shape] = []
        heapq.heappush(heap, job_id)

    def push_new(self, shape: Shape, job_ids: list[int]) -> None:
        """Jobs just created, in increasing order: their ids exceed every id
        ever pushed (ids only grow), so appended at the end they keep each
        heap a heap, as pushing them one by one would at many times the cost."""
        heap = self._groups.get(shape)
        if heap is None:
            heap = self._groups[shape] = []
        heap.extend(job_ids)

    def _head(self, shape: Shape, heap: list[int]) -> int | None:
        while heap and not self._is_pending(heap[0]):
            heapq.heappop(heap)
        if not heap:
            del self._groups[shape]
            return None
        return heap[0]

    def pick(self, fits: Callable[[Shape], bool], eligible: Callable[[int], bool]) -> int | None:
        """The oldest pending job whose shape fits and that is eligible; removed from the queue."""
        found = self.peek(fits, eligible)
        if found is None:
            return None
        self.take(*found)
        return found[0]

    def peek(
        self, fits: Callable[[Shape], bool], eligible: Callable[[int], bool]
    ) -> tuple[int, Shape] | None:
        """The oldest pending job whose shape fits and that is eligible, and
        its shape; left in the queue."""
        best: tuple[int, Shape] | None = None
        for shape, heap in list(self._groups.items()):
            head = self._head(shape, heap)
            if head is None or not fits(shape):
                continue
            if best is not None and head > best[0]:
                continue
            candidate = head if eligible(head) else self._scan(heap, eligible)
            if candidate is not None and (best is None or candidate < best[0]):
                best = (candidate, shape)
        return best

    def take(self, job_id: int, shape: Shape) -> None:
        """Remove a job peek() found."""
        heap = self._groups[shape]
        if heap[0] == job_id:
            heapq.heappop(heap)
            if not heap:
                del self._groups[shape]
        # Otherwise the entry stays and is dropped lazily: the caller makes the
        # job non-pending, and a duplicate entry after a requeue is harmless.

    def _scan(self, heap: list[int], eligible: Callable[[int], bool]) -> int | None:
        found = [j for j in heap[:REJECT_SCAN] if self._is_pending(j) and eligible(j)]
        return min(found) if found else None
