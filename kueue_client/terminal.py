"""Where output goes: rich on a terminal, plain text elsewhere.

Plain text is chosen when stdout is not a terminal, NO_COLOR is set (any
value, see no-color.org) or TERM=dumb; then rich is never imported and no
escape code is written.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def no_color() -> bool:
    """NO_COLOR is set, to any value, even empty (rich alone would ignore
    an empty one: the live views pass this on so they agree with the rest)."""
    return "NO_COLOR" in os.environ


def use_rich(stream: TextIO | None = None) -> bool:
    if no_color() or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def width() -> int | None:
    """Columns to fit plain text into; None (no cutting) when not a terminal."""
    if not is_terminal():
        return None
    return shutil.get_terminal_size().columns


def height() -> int:
    return shutil.get_terminal_size().lines


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def show(renderable: RenderableType) -> None:
    console().print(renderable)


def warn(message: str) -> None:
    print(f"kueue: warning: {message}", file=sys.stderr)
