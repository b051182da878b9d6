"""The live views' loop: `kueue ls --watch`, `kueue workers --watch`, `kueue top`.

A Feed thread reads the server's stream; the main thread owns the terminal:
it draws with rich's Live on the alternate screen, at most
REDRAWS_PER_SECOND times a second and at least once a second (running times
advance), and reads keys in cbreak mode. `q`, Ctrl-C, SIGTERM and SIGHUP
leave it, Ctrl-Z suspends it; on every way out the terminal is as before
(line editing and echo on, cursor shown, the main screen back).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from kueue_client import terminal
from kueue_client.context import Context
from kueue_client.errors import UsageError
from kueue_client.live_feed import Feed, Request
from kueue_client.live_state import Snapshot
from kueue_client.status import parse_states

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from kueue_client.api import Client
    from kueue_client.live_views import Frame

REDRAWS_PER_SECOND = 4
TICK_SECONDS = 1.0
QUIT_KEYS = frozenset(b"qQ\x03\x04")  # q, and Ctrl-C / Ctrl-D should the tty not signal them

Screen = Callable[[Snapshot, int, int], "RenderableType"]


def require_terminal(what: str, instead: str) -> None:
    if not terminal.is_terminal() or os.environ.get("TERM") == "dumb":
        raise UsageError(f"{what} needs a terminal to draw on and stdout is not one ({instead})")


class _Leave(Exception):
    """SIGTERM or SIGHUP: leave the screen as cleanly as after `q`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Keys:
    """stdin in cbreak mode: keys arrive one by one, unechoed; Ctrl-C and
    Ctrl-Z still signal. `fd` is None when stdin is not a terminal."""

    def __init__(self) -> None:
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
        self.fd = fd if fd >= 0 and os.isatty(fd) else None
        self._saved = termios.tcgetattr(fd) if self.fd is not None else None

    def cbreak(self) -> None:
        if self.fd is not None:
            tty.setcbreak(self.fd)

    def restore(self) -> None:
        if self.fd is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


class _Signals:
    """SIGTERM and SIGHUP raise _Leave; SIGWINCH wakes the loop to redraw;
    SIGTSTP (Ctrl-Z) asks the loop to suspend."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self.suspend = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        def leave(signum: int, frame: FrameType | None) -> None:
            raise _Leave(signum)

        def resized(signum: int, frame: FrameType | None) -> None:
            self._wake()

        def stop(signum: int, frame: FrameType | None) -> None:
            self.suspend = True
            self._wake()

        wanted = {signal.SIGTERM: leave, signal.SIGHUP: leave, signal.SIGWINCH: resized, signal.SIGTSTP: stop}
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

    console = Console(highlight=False, no_color=terminal.no_color())
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)

    def wake() -> None:
        with contextlib.suppress(OSError):
            os.write(wake_w, b".")

    feed = Feed(client, request, rows(console.size.height), wake)
    signals = _Signals(wake)
    keys = _Keys()
    live = Live(
        console=console, screen=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
    )
    status = 0
    try:
        with signals.installed():
            try:
                keys.cbreak()
                live.start()
                feed.start()
                _loop(live, console, feed, screen, rows, keys, signals, wake_r)
            finally:
                live.stop()
                keys.restore()
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


def _select(fds: list[int], timeout: float) -> list[int]:
    return select.select(fds, [], [], timeout)[0]


def _loop(
    live: Live,
    console: Console,
    feed: Feed,
    screen: Screen,
    rows: Callable[[int], int],
    keys: _Keys,
    signals: _Signals,
    wake_r: int,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[list[int], float], list[int]] = _select,
) -> None:
    """Redraw when woken, but not sooner than 1/REDRAWS_PER_SECOND after the
    last redraw, and at least every TICK_SECONDS. `clock` and `wait(fds,
    timeout) -> ready fds` are injectable so the pacing can be tested on
    simulated time."""
    interval = 1.0 / REDRAWS_PER_SECOND
    last_draw = -TICK_SECONDS
    dirty = True
    watched = [wake_r] + ([keys.fd] if keys.fd is not None else [])
    while feed.fatal is None:
        if signals.suspend:
            signals.suspend = False
            _suspend(live, keys)
            last_draw, dirty = -TICK_SECONDS, True
        now = clock()
        due = last_draw + (interval if dirty else TICK_SECONDS)
        if now >= due:
            width, height = console.size
            feed.want_rows(rows(height))
            live.update(screen(feed.snapshot(), width, height), refresh=True)
            last_draw, dirty = now, False
            continue
        ready = wait(watched, due - now)
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            dirty = True
        if keys.fd is not None and keys.fd in ready:
            data = os.read(keys.fd, 64)
            if not data or QUIT_KEYS.intersection(data):
                return


def _suspend(live: Live, keys: _Keys) -> None:
    """Ctrl-Z: give the terminal back as it was, stop until continued (`fg`),
    then take it again. The stream goes on meanwhile."""
    live.stop()
    keys.restore()
    os.kill(os.getpid(), signal.SIGSTOP)
    keys.cbreak()
    live.start()


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


def top(args: argparse.Namespace, ctx: Context, states: list[str]) -> int:
    """`kueue top`: workers, the newest jobs (of these states; all if none)
    and the summary on one screen."""
    from kueue_client import live_views

    require_terminal("kueue top", "kueue workers and kueue ls print the tables once")
    wanted = tuple(parse_states(states))
    frame = _frame("kueue top", ctx, wanted, all_workers=args.all)
    workers = [0]

    def rows(height: int) -> int:
        return live_views.top_rows(height, workers[0])[1]

    def screen(snap: Snapshot, width: int, height: int) -> RenderableType:
        workers[0] = len(live_views.shown_workers(snap.workers or [], frame.all_workers))
        return live_views.top_screen(snap, frame, width, height)

    return run(ctx.client, Request(wanted, True), screen, rows)


__all__ = ["ls_watch", "require_terminal", "run", "top", "workers_watch"]
