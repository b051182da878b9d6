"""The live list's window bookkeeping (kueue_server.list_watch), against the
scheduling core directly: whatever changes, the window worked out from the
previous one and the changed ids is the one a fresh listing gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kueue_server.list_watch import Params, next_window
from kueue_server.model import State
from tests.test_scheduler import make, submit

STATES = list(State)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 60),
    st.sets(st.sampled_from(STATES)),
    st.integers(1, 12),
    st.lists(
        st.tuples(
            st.sampled_from(["state", "submit", "remove"]), st.integers(0, 200), st.sampled_from(STATES)
        ),
        max_size=30,
    ),
)
def test_next_window_is_the_fresh_window(
    initial: int, wanted: set[State], limit: int, changes: list[tuple[str, int, State]]
) -> None:
    s = make()
    submit(s, initial)
    params = Params(frozenset(wanted) or None, limit, False, 0.25)
    window = [j.id for j in s.recent(params.states, limit)]
    changed: set[int] = set()
    for kind, pick, state in changes:
        ids = sorted(s.jobs)
        if kind == "submit" or not ids:
            changed.update(submit(s, 1 + pick % 3))
            continue
        job_id = ids[pick % len(ids)]
        if kind == "remove":
            s._remove(job_id)
        elif s.jobs[job_id].state is not state:
            s._set_state(s.jobs[job_id], state)
        changed.add(job_id)
    fresh = [j.id for j in s.recent(params.states, limit)]
    moved = next_window(s, params, window, set(window), changed)
    if moved is not None:
        assert moved == fresh
    else:
        # Found afresh only when something in the window left it.
        assert any(
            i not in s.jobs or (params.states is not None and s.jobs[i].state not in params.states)
            for i in window
            if i in changed
        )
    assert next_window(s, params, fresh, set(fresh), set()) == fresh
