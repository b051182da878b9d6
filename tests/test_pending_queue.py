"""The pending queue hands out the oldest pending job, however jobs came in:
new ones in bulk (push_new) or requeued ones one by one (push)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kueue_server.model import Shape
from kueue_server.pending_queue import PendingQueue

SHAPES = [Shape(), Shape(cpus=2)]

# ("new", count, shape index), ("requeue", which picked job), ("pick",)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("new"), st.integers(1, 20), st.integers(0, 1)),
        st.tuples(st.just("requeue"), st.integers(0, 1000)),
        st.tuples(st.just("pick")),
    ),
    max_size=60,
)


@given(operations)
def test_the_oldest_pending_job_is_picked_first(ops: list[tuple[object, ...]]) -> None:
    pending: dict[int, Shape] = {}
    shape_of: dict[int, Shape] = {}
    picked: list[int] = []
    queue = PendingQueue(lambda job_id: job_id in pending)
    next_id = 1
    for op in ops:
        if op[0] == "new":
            count, shape = op[1], SHAPES[op[2]]  # type: ignore[index]
            ids = list(range(next_id, next_id + count))  # type: ignore[operator]
            next_id += count  # type: ignore[operator]
            pending.update(dict.fromkeys(ids, shape))
            shape_of.update(dict.fromkeys(ids, shape))
            queue.push_new(shape, ids)
        elif op[0] == "requeue" and picked:
            job_id = picked.pop(op[1] % len(picked))  # type: ignore[operator]
            pending[job_id] = shape_of[job_id]
            queue.push(shape_of[job_id], job_id)
        elif op[0] == "pick":
            job_id = queue.pick(lambda shape: True, lambda job_id: True)
            assert job_id == (min(pending) if pending else None)
            if job_id is not None:
                del pending[job_id]
                picked.append(job_id)
    while pending:
        assert queue.pick(lambda shape: True, lambda job_id: True) == min(pending)
        del pending[min(pending)]
    assert queue.pick(lambda shape: True, lambda job_id: True) is None
