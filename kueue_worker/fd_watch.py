"""Readiness of the jobs' descriptors (output pipes, pidfds) through one
epoll of our own, itself watched by the event loop.

Every job registers three descriptors and removes them again a moment later.
Through the loop that costs about 16 us each (a handle, a selector key, a
transport check, an exception for the key not found) and every readiness
goes through the loop's ready queue; a plain epoll registration costs about
2 us, and one loop callback serves all descriptors ready at once. Where
there is no epoll (not Linux), the loop's own add_reader is used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)

# At most this many ready descriptors handled per turn of the loop (the
# rest stay ready for the next turn: level-triggered).
MAX_EVENTS = 256


class FdWatch:
    """Calls a descriptor's callback on the loop while it is readable."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # No reference to the loop: the loop's reader holds this watch, and
        # the watch must not keep the loop (a key of _watches) alive.
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._epoll = select.epoll()
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        """Stop watching fd; before it is closed (its number may come back)."""
        if self._callbacks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def close(self, fd: int) -> None:
        """Stop watching fd and close it. The close takes it out of the epoll
        (ours is the only descriptor of its file), which spares a syscall: a
        job's three descriptors are closed this way."""
        self._callbacks.pop(fd, None)
        os.close(fd)

    def _dispatch(self) -> None:
        callbacks = self._callbacks
        for fd, _ in self._epoll.poll(0, MAX_EVENTS):
            # Removed meanwhile by an earlier callback of this turn: skip it.
            callback = callbacks.get(fd)
            if callback is None:
                continue
            try:
                callback()
            except Exception:
                # As the loop would for its own readers: one failing job must
                # not keep the others from being served.
                log.exception("callback for descriptor %d failed", fd)


class _LoopReaders:
    """The loop's own add_reader, for systems without epoll."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # see FdWatch

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        loop = self._loop()
        assert loop is not None
        loop.add_reader(fd, callback)

    def remove(self, fd: int) -> None:
        loop = self._loop()
        if loop is not None:
            loop.remove_reader(fd)

    def close(self, fd: int) -> None:
        self.remove(fd)
        os.close(fd)


Watch = FdWatch | _LoopReaders
_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watch] = weakref.WeakKeyDictionary()


def of(loop: asyncio.AbstractEventLoop) -> Watch:
    """The watch of this loop, made on first use; its epoll is closed when
    the loop has gone."""
    watch = _watches.get(loop)
    if watch is None:
        watch = FdWatch(loop) if hasattr(select, "epoll") else _LoopReaders(loop)
        _watches[loop] = watch
    return watch
