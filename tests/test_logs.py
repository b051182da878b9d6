"""kueue/logs.py's shortcuts give the same records and lines as the logging
module's own way."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from kueue import logs

VARYING = {"created", "msecs", "relativeCreated"}


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def set_up_logging() -> Iterator[None]:
    """What logs.setup sets on the logging module, put back afterwards."""
    names = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
    saved = {name: getattr(logging, name) for name in names}
    try:
        logging._srcfile = None  # type: ignore[attr-defined]
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        yield
    finally:
        for name, value in saved.items():
            setattr(logging, name, value)


@pytest.mark.parametrize("args", [(7, "w1"), ({"job": 7},), ()])
def test_event_records_equal_those_logging_makes(set_up_logging: None, args: tuple[object, ...]) -> None:
    logger = logging.getLogger("kueue_test_logs")
    keep = Keep()
    logger.addHandler(keep)
    logger.propagate = False
    try:
        message = "job %(job)d" if args and isinstance(args[0], dict) else ("job %d on %s" if args else "job")
        logs.event(logger, "job_started", message, *args, level=logging.WARNING, job=7, worker="w1")
        logger.log(
            logging.WARNING,
            message,
            *args,
            extra={"kueue_event": "job_started", "kueue_fields": {"job": 7, "worker": "w1"}},
        )
    finally:
        logger.removeHandler(keep)
        logger.propagate = True
    fast, usual = keep.records
    assert {k: v for k, v in fast.__dict__.items() if k not in VARYING} == {
        k: v for k, v in usual.__dict__.items() if k not in VARYING
    }
    assert set(fast.__dict__) == set(usual.__dict__)
    assert abs(fast.created - usual.created) < 60
    assert fast.getMessage() == usual.getMessage()


def test_event_takes_the_usual_way_when_logging_records_the_caller() -> None:
    logger = logging.getLogger("kueue_test_logs_caller")
    keep = Keep()
    logger.addHandler(keep)
    logger.propagate = False
    try:
        logs.event(logger, "job_started", "job %d", 3, level=logging.WARNING, job=3)
    finally:
        logger.removeHandler(keep)
        logger.propagate = True
    (record,) = keep.records
    if logging._srcfile is not None:  # type: ignore[attr-defined]
        assert record.funcName != "(unknown function)"
    assert record.getMessage() == "job 3"


def test_cached_times_equal_the_formatted_ones() -> None:
    usual = logging.Formatter("%(asctime)s %(message)s")
    cached = logs.TextFormatter("%(asctime)s %(message)s")
    start = time.time()
    # Within one second, across second, minute and day boundaries, and back.
    for created in [start, start + 0.5, start + 1.001, start + 61, start + 86400.999, start, 0.25]:
        record = logging.LogRecord("x", logging.INFO, "f", 1, "m", (), None)
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        assert cached.formatTime(record) == usual.formatTime(record)
        assert cached.formatTime(record, "%H:%M") == usual.formatTime(record, "%H:%M")
        seconds = int(created)
        iso = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int((created - seconds) * 1000):03d}Z"
        )
        assert logs._iso_time(created) == iso
