"""A program run on a real pseudo-terminal, its screen kept by pyte.

For tests of what a user sees on a terminal: the program finds a tty on
stdin, stdout and stderr, of a fixed size; everything it writes is kept raw
(to look for escape codes) and fed to a pyte screen (to look at the result).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import termios
import threading
from collections.abc import Sequence
from pathlib import Path

import pyte

from tests.cluster import wait_for


class PtySession:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cols: int = 100,
        rows: int = 30,
        cwd: Path | str | None = None,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**env, "TERM": env.get("TERM", "xterm-256color"), "COLUMNS": str(cols), "LINES": str(rows)}
        self.proc = subprocess.Popen(
            list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True
        )
        os.close(slave)
        self._master = master
        self._lock = threading.Lock()
        self._raw = bytearray()
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the program and its children closed the terminal
                return
            if not data:
                return
            with self._lock:
                self._raw += data
                self._stream.feed(data)

    @property
    def raw(self) -> bytes:
        with self._lock:
            return bytes(self._raw)

    def text(self) -> str:
        with self._lock:
            return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_text(self, needle: str, timeout: float = 60.0) -> str:
        try:
            return wait_for(lambda: self.text() if needle in self.text() else None, timeout, repr(needle))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen shows:\n{self.text()}") from None

    def wait_exit(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        with contextlib.suppress(OSError):
            os.close(self._master)

    def __enter__(self) -> PtySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
