"""Logging set-up shared by the server and the worker.

Two formats: "text" (one human line per record) and "json" (one JSON object
per line, for log shippers). State changes are logged with `event()`, which
attaches a machine-readable event name and fields: the text format shows the
message only, the JSON format the message and the fields.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kueue import config as kconfig

if TYPE_CHECKING:
    import asyncio

LEVELS = {
    "off": logging.CRITICAL + 10,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}
FORMATS = ("text", "json")

# Attributes of a LogRecord that carry an event (see event()).
_EVENT = "kueue_event"
_FIELDS = "kueue_fields"


def event(
    logger: logging.Logger, name: str, message: str, *args: object, level: int = logging.INFO, **fields: Any
) -> None:
    """Log a state change (at info unless told): `message % args` for people,
    `name` and `fields` (job, attempt, worker, state, ...) for machines."""
    if not logger.isEnabledFor(level):
        return
    template = _record_template()
    if template is None:
        logger.log(level, message, *args, extra={_EVENT: name, _FIELDS: fields})
        return
    if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]  # type: ignore[assignment]  # as LogRecord does
    created = time.time()
    # The server logs three state changes of every job, the worker two: with
    # logging as setup() leaves it, the line is made and handed over
    # directly, for a third of the usual cost (record, filters, handler
    # lookup and lock, formatting through the record).
    handler = _direct_handler(logger, level)
    if handler is not None and handler.emit_event(created, level, logger.name, message, args, name, fields):
        return
    # A record made the standard way costs more than the rest of the line
    # (caller lookup, path splitting).
    record = _new_record(logging.LogRecord)
    attrs = record.__dict__
    attrs.update(template)
    attrs["name"] = logger.name
    attrs["msg"] = message
    attrs["args"] = args
    attrs["levelname"] = logging.getLevelName(level)
    attrs["levelno"] = level
    attrs["created"] = created
    attrs["msecs"] = int((created - int(created)) * 1000) + 0.0
    attrs["relativeCreated"] = (created - logging._startTime) * 1000  # type: ignore[attr-defined]
    attrs[_EVENT] = name
    attrs[_FIELDS] = fields
    logger.handle(record)


_new_record = object.__new__


def _direct_handler(logger: logging.Logger, level: int) -> BatchingHandler | None:
    """The one handler a record of this logger would reach, if it is a
    BatchingHandler and nothing on the way needs the record itself (a
    filter, another handler); None otherwise."""
    if logger.disabled:
        return None
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters:
            return None
        handlers = node.handlers
        if handlers:
            if node.parent is not None or len(handlers) != 1:
                return None
            handler = handlers[0]
            if type(handler) is not BatchingHandler or handler.filters or level < handler.level:
                return None
            return handler
        if not node.propagate:
            return None
        node = node.parent
    return None


_template: dict[str, Any] | None = None


def _record_template() -> dict[str, Any] | None:
    """What every record of event() holds besides its message, level and
    time, as logging would make it; None when logging is set up to record
    more (the caller, thread or process, a custom record factory)."""
    global _template
    if (
        logging._srcfile is not None  # type: ignore[attr-defined]
        or logging.logThreads
        or logging.logProcesses
        or logging.logMultiprocessing
        or getattr(logging, "logAsyncioTasks", False)
        or logging.getLogRecordFactory() is not logging.LogRecord
    ):
        return None
    if _template is None:
        # The arguments Logger._log passes when it does not look up the caller.
        made = logging.LogRecord("", logging.INFO, "(unknown file)", 0, "", (), None, "(unknown function)")
        _template = dict(made.__dict__)
    return _template


# What json.dumps(..., default=str, ensure_ascii=False) would make, without a
# new encoder per line.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, program, message, and
    for events the event name and its fields."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        out = self._object(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, _EVENT, None),
            getattr(record, _FIELDS, {}),
        )
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return _ENCODER.encode(out)

    def event_line(
        self,
        created: float,
        level: int,
        logger: str,
        message: str,
        args: Any,
        name: str,
        fields: Mapping[str, Any],
    ) -> str:
        """What format() makes of event()'s record, without the record."""
        text = message % args if args else message
        return _ENCODER.encode(self._object(created, logging.getLevelName(level), logger, text, name, fields))

    def _object(
        self,
        created: float,
        levelname: str,
        logger: str,
        message: str,
        name: str | None,
        fields: Mapping[str, Any],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": _iso_time(created),
            "level": levelname.lower(),
            "logger": logger,
            "program": self.program,
            "message": message,
        }
        if name is not None:
            out["event"] = name
            for key, value in fields.items():
                if value is not None:
                    out.setdefault(key, value)
        return out


class TextFormatter(logging.Formatter):
    """logging.Formatter with the date and time of the last second kept:
    formatting them was a good part of a log line's cost. With `program`, the
    format is setup()'s own, and a line without exception or stack is made
    in one step, as logging.Formatter would make it."""

    _second = -1
    _text = ""

    def __init__(self, fmt: str | None = None, *, program: str | None = None) -> None:
        if program is not None:
            fmt = _text_format(program)
        super().__init__(fmt)
        self._program = program

    def format(self, record: logging.LogRecord) -> str:
        if self._program is None or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = message = record.getMessage()
        record.asctime = asctime = self.formatTime(record)
        return self._line(asctime, record.levelname, record.name, message)

    def _line(self, asctime: str, levelname: str, logger: str, message: str) -> str:
        """setup()'s format, made in one step as logging.Formatter would make it."""
        return f"{asctime} {self._program} {levelname} {logger}: {message}"

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        return self._time_text(record.created, record.msecs)

    def _time_text(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self.default_time_format, time.localtime(second))
            self._second = second
        return self.default_msec_format % (self._text, msecs)

    def event_line(self, created: float, level: int, logger: str, message: str, args: Any) -> str | None:
        """What format() makes of event()'s record, without the record; None
        where this formatter is not setup()'s own."""
        if self._program is None or self.converter is not time.localtime:
            return None
        # As LogRecord computes msecs.
        msecs = int((created - int(created)) * 1000) + 0.0
        text = message % args if args else message
        return self._line(self._time_text(created, msecs), logging.getLevelName(level), logger, text)


def _text_format(program: str) -> str:
    return f"%(asctime)s {program} %(levelname)s %(name)s: %(message)s"


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that, inside one_write(), holds lines below WARNING
    and writes them in one write when the outermost one_write() ends: the
    server logs three lines per job after its commits, and a write and a
    flush of the stream per line were most of their cost. On the loop given
    to hold_briefly() (the worker's), lines logged on its thread are held
    for up to HOLD_SECONDS. Elsewhere, and at WARNING and above, a line goes
    out at once, after what is held."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._held.append(line)
        if record.levelno < logging.WARNING and (_holding or _held_on_loop()):
            return
        self._write_held(record)

    def emit_event(
        self,
        created: float,
        level: int,
        logger: str,
        message: str,
        args: Any,
        name: str,
        fields: Mapping[str, Any],
    ) -> bool:
        """emit() for event()'s record, made as a line directly; False when
        this handler's formatter cannot (the caller then makes the record)."""
        formatter = self.formatter
        try:
            if type(formatter) is TextFormatter:
                line = formatter.event_line(created, level, logger, message, args)
            elif type(formatter) is JsonFormatter:
                line = formatter.event_line(created, level, logger, message, args, name, fields)
            else:
                return False
        except Exception:
            return False  # the usual way reports what is wrong with it
        if line is None:
            return False
        self.acquire()
        try:
            self._held.append(line)
            if not (level < logging.WARNING and (_holding or _held_on_loop())):
                self._write_held(None, report=True)
        finally:
            self.release()
        return True

    def _write_held(self, record: logging.LogRecord | None, report: bool = False) -> None:
        held = self._held
        if not held:
            return
        text = self.terminator.join(held) + self.terminator
        held.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except RecursionError:
            raise
        except Exception:
            if record is None and report:
                record = logging.makeLogRecord({"msg": text.rstrip(self.terminator)})
            if record is not None:
                self.handleError(record)

    def flush(self) -> None:
        self.acquire()
        try:
            if self._held:
                self._write_held(None)
            elif self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()
        finally:
            self.release()


_holding = 0


class _OneWrite:
    """See one_write(); a class, as the server enters it after every commit."""

    def __enter__(self) -> None:
        global _holding
        _holding += 1

    def __exit__(self, *exc: object) -> None:
        global _holding
        _holding -= 1
        if not _holding:
            _flush_batching()


_ONE_WRITE = _OneWrite()

# How long at most lines below WARNING logged on the worker's loop wait, to
# go out together (hold_briefly). The worker logs two lines a job: a write
# and a loop callback for each turn of its loop cost a short job about 5 us,
# a write every 20 ms next to nothing, and a line 20 ms late tells a reader
# the same (its time is when it was logged).
HOLD_SECONDS = 0.02

# The loop whose lines are held, and its thread (hold_briefly).
_hold_loop: tuple[asyncio.AbstractEventLoop, int] | None = None
_hold_flush_due = False


def hold_briefly(loop: asyncio.AbstractEventLoop | None) -> None:
    """Hold lines below WARNING logged on loop's thread for up to
    HOLD_SECONDS, then write them in one write (None: stop, writing what is
    held). A line at WARNING or above writes what is held with it, and so
    does logging.shutdown() at exit; only a killed process loses them."""
    global _hold_loop, _hold_flush_due
    _hold_loop = None if loop is None else (loop, threading.get_ident())
    _hold_flush_due = False
    if loop is None:
        _flush_batching()


def _held_on_loop() -> bool:
    """Whether a line logged now waits (on the held loop's thread), the
    write of what is held being set up if it was not."""
    global _hold_flush_due
    held = _hold_loop
    if held is None or threading.get_ident() != held[1]:
        return False
    if not _hold_flush_due:
        loop = held[0]
        if loop.is_closed():
            return False
        _hold_flush_due = True
        loop.call_later(HOLD_SECONDS, _end_of_hold)
    return True


def _end_of_hold() -> None:
    global _hold_flush_due
    _hold_flush_due = False
    if not _holding:  # else the outermost one_write() writes them
        _flush_batching()


def _flush_batching() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BatchingHandler):
            handler.flush()


def one_write() -> _OneWrite:
    """Lines logged inside (by code that does not wait: the count is one for
    the process) go out in one write when it ends, even by an exception."""
    return _ONE_WRITE


_iso_second = -1
_iso_text = ""


def _iso_time(created: float) -> str:
    global _iso_second, _iso_text
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    if seconds != _iso_second:
        _iso_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _iso_second = seconds
    return f"{_iso_text}.{millis:03d}Z"


def level_of(name: str) -> int | None:
    return LEVELS.get(name.strip().lower())


def setup(level: str, program: str, fmt: str = "text") -> None:
    handler = BatchingHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(program))
        # Whatever else reports on stderr must keep to one object per line too.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
    else:
        handler.setFormatter(TextFormatter(program=program))
    # A state change is a log line, so a line must be cheap: neither format
    # shows the caller's file, thread or process, so do not look them up.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # Python 3.12+
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_of(level) or logging.INFO)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    logging.getLogger("kueue").critical("uncaught exception", exc_info=(kind, exc, tb))


def start_program(
    program: str, config_path: str | None, log_format: str | None = None
) -> kconfig.Config | None:
    """Load the config and set up logging for a long-running program; None
    (after one line on stderr) when the config cannot be used. `log_format`
    (from the command line) wins over common_settings.log_format."""
    try:
        config = kconfig.load(config_path)
    except kconfig.ConfigError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return None
    setup(config.common_settings.log_level, program, log_format or config.common_settings.log_format)
    for warning in config.warnings:
        logging.getLogger(program).warning("%s", warning)
    return config
