"""The reading side of the live views: a thread that keeps a LiveState
current from the server's WatchList stream, and reconnects when the server
goes away (saying so in the state's `problem` line)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kueue_client.errors import KueueError
from kueue_client.live_state import LiveState, Snapshot

if TYPE_CHECKING:
    from kueue_client.api import Client, ListWatch

RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
# Errors after which trying again cannot help: say so and leave.
FATAL_CODES = frozenset({"UNAUTHENTICATED", "INVALID_ARGUMENT", "UNIMPLEMENTED", "PERMISSION_DENIED"})


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
