"""The live list (kueue_server.list_watch): the window bookkeeping against the
scheduling core directly (whatever changes, the window worked out from the
previous one and the changed ids is the one a fresh listing gives), and the
stream against a running App (the whole window first, then only changes,
nothing while idle, the whole window again after an overflow)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kueue import config as kconfig
from kueue.v1 import common_pb2
from kueue.v1 import job_service_pb2 as jpb
from kueue_server import list_watch
from kueue_server.app import App
from kueue_server.list_watch import CHANGED_CAP, MIN_INTERVAL, Params, next_window, stream
from kueue_server.model import Amount, State
from kueue_server.scheduler import Scheduler
from kueue_server.watchers import StreamsClosed, Watch, Watchers
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


# ------------------------------------------------- the stream, on a real App
#
# stream() against a running App (scheduler core, in-memory store, flusher):
# changes reach it the way they do in the server, through a commit and the
# watchers. Every wait below is for a condition, with a deadline.

DEADLINE = 20.0


class _ParkEvent(asyncio.Event):
    """The watch's event, counting the times the stream sat down to wait on
    it: the stream is then idle, and anything it sends later was caused by
    what happened after."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0
        self.parked = asyncio.Condition()

    async def wait(self) -> Literal[True]:
        async with self.parked:
            self.waits += 1
            self.parked.notify_all()
        return await super().wait()

    async def parked_at_least(self, n: int) -> None:
        async with asyncio.timeout(DEADLINE), self.parked:
            await self.parked.wait_for(lambda: self.waits >= n)


class _Watchers(Watchers):
    """The App's watchers, handing out watches whose event is a _ParkEvent."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[_ParkEvent] = []

    def add(self, ids: Iterable[int] | None, cap: int | None = None) -> Watch:
        watch = super().add(ids, cap)
        watch.event = _ParkEvent()
        self.events.append(watch.event)
        return watch


@contextlib.asynccontextmanager
async def _running_app(tmp_path: Path) -> AsyncIterator[App]:
    cfg = kconfig.parse(kconfig.template(), tmp_path / "config.toml")
    cfg.server_settings.data_dir = str(tmp_path / "data")
    app = App(cfg, ephemeral_store=True)
    app.watchers = _Watchers()
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def _submit(app: App, n: int) -> list[int]:
    spec = common_pb2.JobSpec(command=["true"], cwd="/tmp", resources=common_pb2.Resources(slots=1, cpus=1))
    jobs, _ = await app.submit(spec, [None] * n)
    return [j.id for j in jobs]


async def _cancel(app: App, *job_ids: int) -> None:
    for job_id in job_ids:
        app.scheduler.cancel(job_id, False, app.clock())
    await app.commit()  # the flusher notifies the watchers after the commit


async def _next(gen: AsyncIterator[jpb.WatchListResponse]) -> jpb.WatchListResponse:
    return await asyncio.wait_for(anext(gen), DEADLINE)


def _ids(msg: jpb.WatchListResponse) -> list[int]:
    return [j.id for j in msg.jobs]


def test_stream_sends_the_window_then_only_changes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _running_app(tmp_path) as app:
            ids = await _submit(app, 8)
            gen = stream(app, Params(None, 5, False, MIN_INTERVAL))
            try:
                # First message: the whole window (oldest first) and the counters.
                first = await _next(gen)
                assert _ids(first) == ids[3:]
                assert list(first.window_ids) == ids[3:]
                assert first.matching == 8
                assert (first.summary.pending, first.summary.canceled) == (8, 0)
                event = app.watchers.events[0]

                # One job changes: only that job, with the new counters.
                await _cancel(app, ids[6])
                msg = await _next(gen)
                assert _ids(msg) == [ids[6]]
                assert msg.jobs[0].state == State.CANCELED
                assert list(msg.window_ids) == ids[3:]
                assert (msg.summary.pending, msg.summary.canceled) == (7, 1)

                # A change outside the window: no job, only the new counters.
                await _cancel(app, ids[0])
                msg = await _next(gen)
                assert _ids(msg) == []
                assert list(msg.window_ids) == ids[3:]
                assert (msg.summary.pending, msg.summary.canceled) == (6, 2)

                # Idle: the stream sits waiting for a change and sends nothing;
                # what it sends next is exactly the change made after that.
                pending = asyncio.ensure_future(anext(gen))
                await event.parked_at_least(event.waits + 1)
                assert not pending.done()
                await _cancel(app, ids[7])
                msg = await asyncio.wait_for(pending, DEADLINE)
                assert _ids(msg) == [ids[7]]
                assert (msg.summary.pending, msg.summary.canceled) == (5, 3)

                # New jobs enter the window; the ones pushed out are not sent.
                new = await _submit(app, 2)
                msg = await _next(gen)
                assert _ids(msg) == new
                assert list(msg.window_ids) == [*ids[5:], *new]
                assert msg.matching == 10
            finally:
                await gen.aclose()
            assert len(app.watchers) == 0  # the stream's watch is gone with it

    asyncio.run(scenario())


def test_stream_with_a_state_filter_sends_what_enters_the_window(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _running_app(tmp_path) as app:
            ids = await _submit(app, 6)
            gen = stream(app, Params(frozenset({State.PENDING}), 3, False, MIN_INTERVAL))
            try:
                assert _ids(await _next(gen)) == ids[3:]
                # A job in the window leaves the filter: the older pending job
                # that takes its place is sent (the client has not seen it),
                # the one that left only disappears from window_ids.
                await _cancel(app, ids[4])
                msg = await _next(gen)
                assert _ids(msg) == [ids[2]]
                assert list(msg.window_ids) == [ids[2], ids[3], ids[5]]
                assert msg.matching == 5
            finally:
                await gen.aclose()

    asyncio.run(scenario())


def test_stream_idle_with_workers_sends_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With workers included the stream wakes once a second to look at them;
    while neither they nor the jobs change, it sends nothing."""
    looks = [0]
    real_workers = list_watch._workers

    def counted(sched: Scheduler) -> jpb.WorkerList:
        looks[0] += 1
        return real_workers(sched)

    monkeypatch.setattr(list_watch, "_workers", counted)

    async def scenario() -> None:
        async with _running_app(tmp_path) as app:
            # A worker with no room: nothing is dispatched to it.
            app.scheduler.connect_worker(
                "w1", "w1", Amount(0, 0, 0), common_pb2.SystemInfo(), "", [], app.clock()
            )
            await app.commit()
            ids = await _submit(app, 3)
            gen = stream(app, Params(None, 5, True, MIN_INTERVAL))
            try:
                first = await _next(gen)
                assert _ids(first) == ids
                assert [w.id for w in first.workers.workers] == ["w1"]
                event = app.watchers.events[0]
                pending = asyncio.ensure_future(anext(gen))
                # Two more looks at the workers while idle, and nothing sent.
                seen = looks[0]
                while looks[0] < seen + 2:
                    await event.parked_at_least(event.waits + 1)
                assert not pending.done()
                await _cancel(app, ids[1])
                msg = await asyncio.wait_for(pending, DEADLINE)
                assert _ids(msg) == [ids[1]]
                assert not msg.HasField("workers")
            finally:
                await gen.aclose()

    asyncio.run(scenario())


def test_stream_sends_the_whole_window_after_overflow(tmp_path: Path) -> None:
    """More changes between two messages than the watch records: the stream
    cannot tell what changed, so it sends the whole window again."""

    async def scenario() -> None:
        async with _running_app(tmp_path) as app:
            ids = await _submit(app, CHANGED_CAP + 10)
            gen = stream(app, Params(None, 5, False, MIN_INTERVAL))
            try:
                window = ids[-5:]
                assert _ids(await _next(gen)) == window
                # Only jobs outside the window change, more than the cap of
                # them: nothing in the window did, yet all of it is sent.
                await _cancel(app, *ids[: CHANGED_CAP + 1])
                msg = await _next(gen)
                assert _ids(msg) == window
                assert list(msg.window_ids) == window
                assert msg.summary.canceled == CHANGED_CAP + 1
                # And after that, changes only again.
                await _cancel(app, window[0])
                msg = await _next(gen)
                assert _ids(msg) == [window[0]]
            finally:
                await gen.aclose()

    asyncio.run(scenario())


def test_closing_the_watchers_ends_a_waiting_stream(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _running_app(tmp_path) as app:
            await _submit(app, 3)
            gen = stream(app, Params(None, 5, False, MIN_INTERVAL))
            try:
                await _next(gen)
                waiting = asyncio.ensure_future(_next(gen))
                await app.watchers.events[0].parked_at_least(1)  # it waits for a change
                app.watchers.close()
                with pytest.raises(StreamsClosed):
                    await waiting
            finally:
                await gen.aclose()

    asyncio.run(scenario())


def test_closing_the_watchers_wakes_every_watch_and_later_ones_come_closed() -> None:
    async def scenario() -> None:
        watchers = Watchers()
        every, one = watchers.add(None), watchers.add([7])
        watchers.close()
        later = watchers.add([8])
        for watch in (every, one, later):
            assert watch.closed
            await asyncio.wait_for(watch.event.wait(), DEADLINE)

    asyncio.run(scenario())
