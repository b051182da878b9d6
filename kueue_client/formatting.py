"""Small text formatters for tables: durations, dates, sizes and truncation."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Sequence
from typing import Any

ELLIPSIS = "..."


def seconds(ts: Any) -> float | None:
    """Epoch seconds of a protobuf Timestamp field, None when unset (zero)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.seconds + ts.nanos / 1e9


def format_duration(seconds: float) -> str:
    """Compact and fixed in precision: `35s`, `4m 05s`, `1h 02m`, `3d 04h`."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def format_date(epoch: float | None, now: float | None = None) -> str:
    """Local time, as short as stays unambiguous: `14:03:12` today,
    `Mar 05 14:03` this year, `2023-03-05 14:03` before."""
    if epoch is None:
        return "-"
    now = time.time() if now is None else now
    when = time.localtime(epoch)
    today = time.localtime(now)
    if when[:3] == today[:3]:
        return time.strftime("%H:%M:%S", when)
    if when.tm_year == today.tm_year:
        return time.strftime("%b %d %H:%M", when)
    return time.strftime("%Y-%m-%d %H:%M", when)


def format_datetime(epoch: float | None) -> str:
    """Full local date and time for detail views."""
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def format_mb(megabytes: float) -> str:
    """Memory given in MiB: `512 MiB`, `15.6 GiB`, `1.5 TiB`."""
    if megabytes < 1024:
        return f"{megabytes:.0f} MiB"
    if megabytes < 1024 * 1024:
        return f"{megabytes / 1024:.1f} GiB"
    return f"{megabytes / 1024 / 1024:.1f} TiB"


def format_bytes(count: float) -> str:
    if count < 1024:
        return f"{count:.0f} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return format_mb(count / 1024 / 1024)


def format_frequency(mhz: float) -> str:
    if mhz <= 0:
        return "-"
    return f"{mhz / 1000:.1f} GHz" if mhz >= 1000 else f"{mhz:.0f} MHz"


def is_utf8(text: str) -> bool:
    """Whether `text` can be sent: bytes that are not UTF-8 (in a path, an
    argument, the environment) arrive as surrogates, which protobuf strings
    cannot carry."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def text_width(text: str) -> int:
    """Columns `text` takes on a terminal: two for a wide (CJK, emoji) character."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def pad(text: str, width: int, right: bool = False) -> str:
    """`text` padded with spaces to `width` columns (on the left when `right`)."""
    spaces = " " * max(0, width - text_width(text))
    return spaces + text if right else text + spaces


def _take(text: str, width: int, from_end: bool) -> str:
    """As many characters from the start (or end) of `text` as fit in `width` columns."""
    if text.isascii():
        return (text[len(text) - width :] if width > 0 else "") if from_end else text[: max(0, width)]
    from rich.cells import get_character_cell_size

    taken, used = [], 0
    for char in reversed(text) if from_end else text:
        size = get_character_cell_size(char)
        if used + size > width:
            break
        taken.append(char)
        used += size
    return "".join(reversed(taken) if from_end else taken)


def truncate_front(text: str, width: int) -> str:
    """Keeps the end: `...2/3_Synthesis/run`. The end of a path is what tells
    directories apart."""
    if text_width(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return _take(text, width, from_end=True)
    return ELLIPSIS + _take(text, width - len(ELLIPSIS), from_end=True)


def truncate_back(text: str, width: int) -> str:
    """Keeps the start: `python train.py --ep...`. The start of a command is
    what tells commands apart."""
    if text_width(text) <= width:
        return text
    if width <= len(ELLIPSIS):
        return _take(text, width, from_end=False)
    return _take(text, width - len(ELLIPSIS), from_end=False) + ELLIPSIS


# Control characters other than the line breaks and tabs single_line turns
# into spaces: C0, DEL and C1 (0x9b alone starts an escape sequence on some
# terminals).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return "^" + chr(code + 0x40)  # as cat -v and less show them: ESC is ^[
    return "^?" if code == 0x7F else "\ufffd"


def printable(text: str) -> str:
    """`text` with its control characters made visible: a job's command or
    directory is anyone's text, and must not drive the terminal of whoever
    lists the queue."""
    return text if text.isprintable() else _CONTROLS.sub(lambda m: _shown(m.group()), text)


def single_line(text: str) -> str:
    """Table cells are one line: newlines and tabs become spaces."""
    return printable(" ".join(text.splitlines()).replace("\t", " "))


def command_text(command: Sequence[str], shell: bool) -> str:
    """The command as one would type it: a shell command as is, an argument
    vector quoted where needed."""
    if shell:
        return single_line(command[0] if command else "")
    return single_line(shlex.join(command))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
