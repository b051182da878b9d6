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
import time
from typing import Any

from kueue import config as kconfig

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
    if logger.isEnabledFor(level):
        logger.log(level, message, *args, extra={_EVENT: name, _FIELDS: fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, program, message, and
    for events the event name and its fields."""

    def __init__(self, program: str) -> None:
        super().__init__()
        self.program = program

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "program": self.program,
            "message": record.getMessage(),
        }
        name = getattr(record, _EVENT, None)
        if name is not None:
            out["event"] = name
            for key, value in getattr(record, _FIELDS, {}).items():
                if value is not None:
                    out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


def _iso_time(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def level_of(name: str) -> int | None:
    return LEVELS.get(name.strip().lower())


def setup(level: str, program: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(program))
        # Whatever else reports on stderr must keep to one object per line too.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {program} %(levelname)s %(name)s: %(message)s"))
    # A state change is a log line, so a line must be cheap: neither format
    # shows the caller's file, thread or process, so do not look them up.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
