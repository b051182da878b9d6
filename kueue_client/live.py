"""The live views' loop: `kueue ls --watch`, `kueue workers --watch`, `kueue top`.

A thread reads the server's WatchList stream into a LiveState (reconnecting
when the server goes away); the main thread owns the terminal: it draws with
rich's Live on the alternate screen, at most REDRAWS_PER_SECOND times a
second and at least once a second (running times advance), and reads keys
in cbreak mode. `q`, Ctrl-C, SIGTERM and SIGHUP leave it; the terminal is
restored on every way out (cooked mode, cursor shown, main screen back).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from kueue_client import terminal
from kueue_client.context import Context
from kueue_client.errors import KueueError, UsageError
from kueue_client.live_state import LiveState, Snapshot
from kueue_client.status import parse_states

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from kueue_client.api import Client, ListWatch
    from kueue_client.live_views import Frame

REDRAWS_PER_SECOND = 4
TICK_SECONDS = 1.0
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
# Errors after which trying again cannot help: say so and leave.
FATAL_CODES = frozenset({"UNAUTHENTICATED", "INVALID_ARGUMENT", "UNIMPLEMENTED", "PERMISSION_DENIED"})
QUIT_KEYS = frozenset(b"qQ\x03\x04")  # q, Ctrl-C and Ctrl-D (should the tty not signal)

Screen = Callable[[Snapshot, int, int], "RenderableType"]


@dataclass(frozen=True)
class Request:
    states: tuple[int, ...]
    include_workers: bool


class Feed:
    """Reads WatchList in a thread; keeps the latest state and any problem."""

    def __init__(self, client: Client, request: Request, limit: int, wake: Callable[[], None]) -> None:
        self._client = client
        self._request = request
        self._limit = limit
        self._wake = wake
        self._lock = threading.Lock()
        self._state = LiveState()
        self._stream: ListWatch | None = None
        self._stopping = threading.Event()
        self._restart = False
        self.fatal: KueueError | None = None
        self._thread = threading.Thread(target=self._run, name="kueue-live-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.cancel()
        self._thread.join(timeout=5)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._state.snapshot()

    def want_rows(self, rows: int) -> None:
        """A taller terminal needs more rows than asked for: ask again."""
        with self._lock:
            if rows <= self._limit:
                return
            self._limit = rows
            self._restart = True
            stream = self._stream
        if stream is not None:
            stream.cancel()

    def _run(self) -> None:
        delay = RETRY_FIRST_SECONDS
        while not self._stopping.is_set():
            with self._lock:
                self._restart = False
                stream = self._stream = self._client.watch_list(
                    self._request.states, self._limit, self._request.include_workers
                )
            try:
                for msg in stream:
                    with self._lock:
                        self._state.apply(msg)
                    delay = RETRY_FIRST_SECONDS
                    self._wake()
                error: KueueError | None = None
            except KueueError as exc:
                error = exc
            if self._stopping.is_set():
                return
            with self._lock:
                if self._restart:
                    continue
                received = self._state.received
            if error is not None and (error.code in FATAL_CODES or not received):
                # Never connected (wrong address, server down) or refused: as
                # any other verb would, say why and leave.
                self.fatal = error
                self._wake()
                return
            with self._lock:
                if not self._state.problem:
                    when = time.strftime("%H:%M:%S")
                    self._state.problem = (
                        f"lost the kueue server at {self._client.address} at {when}; reconnecting..."
                    )
            self._wake()
            self._stopping.wait(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def require_terminal(what: str, instead: str) -> None:
    if not terminal.is_terminal() or os.environ.get("TERM") == "dumb":
        raise UsageError(f"{what} needs a terminal to draw on and stdout is not one ({instead})")


class _Leave(Exception):
    """SIGTERM or SIGHUP: leave the screen as cleanly as after `q`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys arrive one by one, unechoed; Ctrl-C still
    signals), restored on the way out. None when stdin is not a terminal."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _signals(wake: Callable[[], None]) -> Iterator[None]:
    def leave(signum: int, frame: FrameType | None) -> None:
        raise _Leave(signum)

    def resized(signum: int, frame: FrameType | None) -> None:
        wake()

    wanted = {signal.SIGTERM: leave, signal.SIGHUP: leave, signal.SIGWINCH: resized}
    saved = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run(client: Client, request: Request, screen: Screen, rows: Callable[[int], int]) -> int:
    """Draw `screen` until the user leaves; `rows(height)` is how many job
    rows the screen shows on a terminal that tall (asked of the server)."""
    from rich.console import Console
    from rich.live import Live

    console = Console(highlight=False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)

    def wake() -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(wake_w, b".")

    feed = Feed(client, request, rows(console.size.height), wake)
    status = 0
    try:
        with (
            _signals(wake),
            _keys() as keys,
            Live(
                console=console,
                screen=True,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            ) as live,
        ):
            feed.start()
            _loop(live, console, feed, screen, rows, keys, wake_r)
    except KeyboardInterrupt:
        pass
    except _Leave as leave:
        status = 128 + leave.signum
    finally:
        feed.stop()
        os.close(wake_r)
        os.close(wake_w)
    if feed.fatal is not None:
        raise feed.fatal
    return status


def _loop(
    live: Live,
    console: Console,
    feed: Feed,
    screen: Screen,
    rows: Callable[[int], int],
    keys: int | None,
    wake_r: int,
) -> None:
    interval = 1.0 / REDRAWS_PER_SECOND
    last_draw = -TICK_SECONDS
    dirty = True
    watched = [wake_r] + ([keys] if keys is not None else [])
    while feed.fatal is None:
        now = time.monotonic()
        due = last_draw + (interval if dirty else TICK_SECONDS)
        if now >= due:
            width, height = console.size
            feed.want_rows(rows(height))
            live.update(screen(feed.snapshot(), width, height), refresh=True)
            last_draw, dirty = now, False
            continue
        ready, _, _ = select.select(watched, [], [], due - now)
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            dirty = True
        if keys is not None and keys in ready:
            data = os.read(keys, 64)
            if not data or QUIT_KEYS.intersection(data):
                return


# ---------------------------------------------------------------- verbs


def _frame(title: str, ctx: Context, states: tuple[int, ...] = (), all_workers: bool = False) -> Frame:
    from kueue_client.live_views import Frame

    return Frame(title, ctx.client.address, frozenset(states), all_workers)


def ls_watch(args: argparse.Namespace, ctx: Context, states: list[str]) -> int:
    """`kueue ls --watch`: the job table, kept current."""
    from kueue_client import live_views

    if args.json:
        raise UsageError("--watch draws on the terminal; it does not go with --json")
    require_terminal("kueue ls --watch", "kueue ls without --watch prints the table once")
    wanted = tuple(parse_states(states))
    frame = _frame("kueue ls --watch", ctx, wanted)

    def rows(height: int) -> int:
        return args.n if args.n else live_views.ls_rows(height)

    def screen(snap: Snapshot, width: int, height: int) -> RenderableType:
        return live_views.ls_screen(snap, frame, width, height)

    return run(ctx.client, Request(wanted, False), screen, rows)


def workers_watch(args: argparse.Namespace, ctx: Context) -> int:
    """`kueue workers --watch`: the worker table, kept current."""
    from kueue_client import live_views

    if args.json:
        raise UsageError("--watch draws on the terminal; it does not go with --json")
    require_terminal("kueue workers --watch", "kueue workers without --watch prints the table once")
    frame = _frame("kueue workers --watch", ctx, all_workers=args.all)

    def screen(snap: Snapshot, width: int, height: int) -> RenderableType:
        return live_views.workers_screen(snap, frame, width, height)

    return run(ctx.client, Request((), True), screen, lambda height: 0)


def top(args: argparse.Namespace, ctx: Context) -> int:
    """`kueue top`: workers, the newest jobs and the summary on one screen."""
    from kueue_client import live_views

    require_terminal("kueue top", "kueue workers and kueue ls print the tables once")
    frame = _frame("kueue top", ctx, all_workers=args.all)
    workers = [0]

    def rows(height: int) -> int:
        return live_views.top_rows(height, workers[0])[1]

    def screen(snap: Snapshot, width: int, height: int) -> RenderableType:
        workers[0] = len(live_views.shown_workers(snap.workers or [], frame.all_workers))
        return live_views.top_screen(snap, frame, width, height)

    return run(ctx.client, Request((), True), screen, rows)


__all__ = ["Feed", "Request", "ls_watch", "require_terminal", "run", "top", "workers_watch"]
