"""kueue/logs.py's shortcuts give the same records and lines as the logging
module's own way."""

from __future__ import annotations

import io
import logging
import sys
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


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_setup_text_lines_equal_the_logging_formatter_ones() -> None:
    fast = logs.TextFormatter(program="kueue_server")
    usual = logging.Formatter("%(asctime)s kueue_server %(levelname)s %(name)s: %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = sys.exc_info()
    records = [
        logging.LogRecord("kueue_server", logging.INFO, "f", 1, "job %d on %s", (7, "w1"), None),
        logging.LogRecord("x.y", logging.WARNING, "f", 1, "job %(job)d", ({"job": 3},), None),
        logging.LogRecord("x", logging.DEBUG, "f", 1, "100%% é\nsecond line", (), None),
        logging.LogRecord("x", logging.ERROR, "f", 1, "failed", (), failed),
    ]
    stacked = logging.LogRecord("x", logging.INFO, "f", 1, "here", (), None, sinfo="Stack (most recent)")
    for record in [*records, stacked]:
        assert fast.format(record) == usual.format(record)
        assert (record.message, record.asctime) == (record.getMessage(), usual.formatTime(record))


@pytest.fixture
def batching() -> Iterator[tuple[logging.Logger, Writes]]:
    """A BatchingHandler on the root logger, as setup() installs it."""
    stream = Writes()
    handler = logs.BatchingHandler(stream)
    handler.setFormatter(logs.TextFormatter(program="p"))
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield logging.getLogger("kueue_test_batching"), stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


def messages(text: str) -> list[str]:
    return [line.rsplit(": ", 1)[1] for line in text.splitlines()]


def test_lines_logged_in_one_write_go_out_together(batching: tuple[logging.Logger, Writes]) -> None:
    logger, stream = batching
    logger.info("alone")
    assert messages(stream.getvalue()) == ["alone"]
    with logs.one_write():
        logger.info("a")
        with logs.one_write():
            logs.event(logger, "job_started", "job %d started", 7, job=7)
        logger.info("c")
        assert len(stream.writes) == 1
    assert len(stream.writes) == 2
    assert messages(stream.writes[1]) == ["a", "job 7 started", "c"]


def test_warnings_go_out_at_once_after_what_is_held(batching: tuple[logging.Logger, Writes]) -> None:
    logger, stream = batching
    with logs.one_write():
        logger.info("first")
        logger.warning("second")
        assert len(stream.writes) == 1
        assert messages(stream.writes[0]) == ["first", "second"]
        logger.info("third")
    assert messages(stream.getvalue()) == ["first", "second", "third"]


def test_held_lines_go_out_when_an_exception_ends_one_write(batching: tuple[logging.Logger, Writes]) -> None:
    logger, stream = batching
    with pytest.raises(RuntimeError), logs.one_write():
        logger.info("before the crash")
        raise RuntimeError("crash")
    assert messages(stream.getvalue()) == ["before the crash"]
