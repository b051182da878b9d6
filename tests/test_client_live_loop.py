"""The live views' redraw pacing (kueue_client.live._loop) on simulated time:
however often the feed wakes the loop, it redraws at most REDRAWS_PER_SECOND
times a second, and still at least once every TICK_SECONDS when nothing wakes
it. No terminal, no server, no real sleeping: the loop's clock and its wait
for file descriptors are fakes that advance a simulated clock."""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from kueue_client import live

# Simulated times are multiples of 1/1024 s: sums and differences of them are
# exact in floating point, so the loop's `now >= due` is never off by a
# rounding error (which could otherwise make it wait for ~0 s forever).
TICK = 1 / 1024
START = 1000.0
SECONDS = 6.0


class _Stop(Exception):
    pass


class _Sim:
    """The fakes around _loop, on one simulated clock. The feed wakes the
    loop every gaps[i] seconds in turn (cycling); the feed ends, and with it
    the loop, at START + SECONDS."""

    def __init__(self, gaps: list[float]) -> None:
        self.now = START
        self.draws: list[float] = []
        self._gaps = gaps
        self._i = 0
        self._next_wake = START + gaps[0]
        self.wake_r, self._wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)

    def close(self) -> None:
        os.close(self.wake_r)
        os.close(self._wake_w)

    def clock(self) -> float:
        return self.now

    def wait(self, fds: list[int], timeout: float) -> list[int]:
        assert timeout > 0, "the loop waits only while a redraw is not due"
        assert fds == [self.wake_r]
        if self._next_wake <= self.now + timeout:
            self.now = max(self.now, self._next_wake)
            self._i += 1
            self._next_wake = self.now + self._gaps[self._i % len(self._gaps)]
            return [self.wake_r]
        self.now += timeout
        return []

    # Live, Console and Feed, as far as _loop uses them.
    def update(self, renderable: object, refresh: bool = False) -> None:
        assert refresh, "Live runs without auto refresh: every update must draw"
        self.draws.append(self.now)

    size = (80, 24)

    @property
    def fatal(self) -> Exception | None:
        return _Stop() if self.now >= START + SECONDS else None

    def want_rows(self, rows: int) -> None:
        pass

    def snapshot(self) -> object:
        return None

    def run(self) -> None:
        fake = cast(Any, self)
        live._loop(
            fake,
            fake,
            fake,
            lambda snap, width, height: "",
            lambda height: height,
            cast(Any, SimpleNamespace(fd=None)),
            live._Signals(lambda: None),
            self.wake_r,
            clock=self.clock,
            wait=self.wait,
        )


@contextlib.contextmanager
def _sim(gaps: list[float]) -> Iterator[_Sim]:
    sim = _Sim(gaps)
    try:
        yield sim
    finally:
        sim.close()


def _most_in_one_second(draws: list[float]) -> int:
    return max(bisect.bisect_left(draws, t + 1.0) - i for i, t in enumerate(draws))


def test_a_feed_that_wakes_the_loop_constantly_gets_four_redraws_a_second() -> None:
    with _sim([TICK]) as sim:  # a wake every millisecond
        sim.run()
    assert _most_in_one_second(sim.draws) <= live.REDRAWS_PER_SECOND
    # ...and not fewer: the changes are shown at the full rate.
    assert len(sim.draws) >= live.REDRAWS_PER_SECOND * SECONDS
    assert max(b - a for a, b in zip(sim.draws, sim.draws[1:], strict=False)) <= 1 / live.REDRAWS_PER_SECOND


def test_without_changes_the_loop_redraws_once_a_second() -> None:
    with _sim([100.0]) as sim:  # never woken within the run
        sim.run()
    gaps = {b - a for a, b in zip(sim.draws, sim.draws[1:], strict=False)}
    assert gaps == {live.TICK_SECONDS}  # running times advance


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2048), min_size=1, max_size=40).filter(any))
def test_redraws_stay_within_the_limit_whatever_the_wakes(ticks: list[int]) -> None:
    # Wakes come in bursts (0: at the same instant) and pauses (up to 2 s);
    # never all at one instant, or simulated time would stand still.
    with _sim([t * TICK for t in ticks]) as sim:
        sim.run()
    assert sim.draws[0] == START  # the first screen at once
    assert _most_in_one_second(sim.draws) <= live.REDRAWS_PER_SECOND
    assert all(b - a <= live.TICK_SECONDS for a, b in zip(sim.draws, sim.draws[1:], strict=False))
