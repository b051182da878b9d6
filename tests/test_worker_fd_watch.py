"""The jobs' descriptor watch: one epoll served by the loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os

import pytest

from kueue_worker import fd_watch

DEADLINE = 20.0


def test_readable_descriptors_are_served_until_removed() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        watch = fd_watch.of(loop)
        assert fd_watch.of(loop) is watch
        r, w = os.pipe()
        got: list[bytes] = []
        more = asyncio.Event()

        def readable() -> None:
            got.append(os.read(r, 100))
            more.set()

        watch.add(r, readable)
        os.write(w, b"one")
        await asyncio.wait_for(more.wait(), DEADLINE)
        more.clear()
        os.write(w, b"two")
        await asyncio.wait_for(more.wait(), DEADLINE)
        assert got == [b"one", b"two"]
        watch.remove(r)
        watch.remove(r)  # twice is harmless
        os.write(w, b"three")
        # A turn of the loop that would have served it (epoll has it ready).
        for _ in range(5):
            await asyncio.sleep(0)
        assert got == [b"one", b"two"]
        assert os.read(r, 100) == b"three"
        for fd in (r, w):
            os.close(fd)

    asyncio.run(go())


def test_one_failing_callback_is_logged_and_the_others_still_served(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        watch = fd_watch.of(asyncio.get_running_loop())
        bad_r, bad_w = os.pipe()
        good_r, good_w = os.pipe()
        served = asyncio.Event()

        def bad() -> None:
            watch.remove(bad_r)
            raise RuntimeError("broken callback")

        def good() -> None:
            os.read(good_r, 100)
            watch.remove(good_r)
            served.set()

        watch.add(bad_r, bad)
        watch.add(good_r, good)
        os.write(bad_w, b"x")
        os.write(good_w, b"x")
        await asyncio.wait_for(served.wait(), DEADLINE)
        for fd in (bad_r, bad_w, good_r, good_w):
            os.close(fd)

    with caplog.at_level(logging.ERROR, logger="kueue_worker.fd_watch"):
        asyncio.run(go())
    assert "broken callback" in caplog.text


def test_a_descriptor_removed_by_an_earlier_callback_of_the_same_turn_is_skipped() -> None:
    async def go() -> list[str]:
        watch = fd_watch.of(asyncio.get_running_loop())
        a_r, a_w = os.pipe()
        b_r, b_w = os.pipe()
        calls: list[str] = []
        done = asyncio.Event()

        def first(name: str, other: int) -> None:
            calls.append(name)
            # Whichever comes first takes the other one off (as a job's end
            # closes its second pipe): the other must not be called.
            watch.remove(other)
            watch.remove(a_r if other == b_r else b_r)
            done.set()

        watch.add(a_r, lambda: first("a", b_r))
        watch.add(b_r, lambda: first("b", a_r))
        os.write(a_w, b"x")
        os.write(b_w, b"x")
        await asyncio.wait_for(done.wait(), DEADLINE)
        for _ in range(5):
            await asyncio.sleep(0)
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)
        return calls

    assert len(asyncio.run(go())) == 1


def test_the_epoll_goes_with_its_loop() -> None:
    def epolls() -> int:
        count = 0
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor
                count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventpoll]"
        return count

    async def make() -> None:
        fd_watch.of(asyncio.get_running_loop())

    gc.collect()
    before = epolls()
    for _ in range(5):
        asyncio.run(make())
    gc.collect()
    assert epolls() <= before


def watched(watch: fd_watch.Watch) -> list[int]:
    """The descriptors in the watch's epoll, as the kernel lists them."""
    assert isinstance(watch, fd_watch.FdWatch)
    with open(f"/proc/self/fdinfo/{watch._epoll.fileno()}") as info:
        return [int(line.split()[1]) for line in info if line.startswith("tfd:")]


def test_a_descriptor_closed_through_the_watch_leaves_its_epoll() -> None:
    async def go() -> None:
        watch = fd_watch.of(asyncio.get_running_loop())
        r, w = os.pipe()
        old: list[bytes] = []
        watch.add(r, lambda: old.append(b"called"))
        assert r in watched(watch)
        os.write(w, b"ready")  # readable, and then closed unserved
        watch.close(r)
        os.close(w)
        assert r not in watched(watch)
        with pytest.raises(OSError):
            os.fstat(r)
        # The next descriptor gets the same number; only its own readiness counts.
        r2, w2 = os.pipe()
        assert r2 == r
        served = asyncio.Event()

        def readable() -> None:
            assert os.read(r2, 100) == b"new"
            watch.close(r2)
            served.set()

        watch.add(r2, readable)
        os.write(w2, b"new")
        await asyncio.wait_for(served.wait(), DEADLINE)
        assert old == []
        assert r2 not in watched(watch)
        os.close(w2)

    asyncio.run(go())
