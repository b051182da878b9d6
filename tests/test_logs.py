"""kueue/logs.py's shortcuts give the same records and lines as the logging
module's own way."""

from __future__ import annotations

import asyncio
import io
import json
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


@pytest.fixture
def only_handler(set_up_logging: None) -> Iterator[Writes]:
    """A stream for _install(), which makes setup()'s kind of handler the root
    logger's only one: the root's handlers are put back afterwards."""
    stream = Writes()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    root.handlers[:] = []
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _install(stream: Writes, fmt: str) -> logs.BatchingHandler:
    """In the test's body: pytest adds its capturing handlers to the root
    only once the test is called, and with them event() takes the usual way."""
    handler = logs.BatchingHandler(stream)
    handler.setFormatter(
        logs.JsonFormatter("kueue_server") if fmt == "json" else logs.TextFormatter(program="kueue_server")
    )
    logging.getLogger().handlers[:] = [handler]
    return handler


def _without_time(line: str, fmt: str) -> object:
    if fmt == "json":
        out = json.loads(line)
        del out["time"]
        return out
    return line.split(" ", 2)[2]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("args", [(7, "w1"), ({"job": 7},), ()])
def test_event_lines_made_directly_equal_those_made_from_a_record(
    only_handler: Writes, fmt: str, args: tuple[object, ...]
) -> None:
    handler = _install(only_handler, fmt)
    logger = logging.getLogger("kueue_test_direct.child")
    message = (
        "job %(job)d" if args and isinstance(args[0], dict) else ("job %d on %s" if args else "100% done")
    )
    fields = {"job": 7, "worker": "w1", "signal": None, "program": "not me"}
    assert logs._direct_handler(logger, logging.INFO) is handler
    logs.event(logger, "job_started", message, *args, **fields)
    # A filter anywhere (here one that lets everything through) needs the record: the usual way.
    logger.addFilter(lambda record: True)
    try:
        assert logs._direct_handler(logger, logging.INFO) is None
        logs.event(logger, "job_started", message, *args, **fields)
    finally:
        logger.filters.clear()
    direct, usual = only_handler.getvalue().splitlines()
    assert _without_time(direct, fmt) == _without_time(usual, fmt)
    # Each line went out at once (not inside one_write).
    assert len(only_handler.writes) == 2


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_event_lines_made_directly_carry_the_time_a_record_would(only_handler: Writes, fmt: str) -> None:
    handler = _install(only_handler, fmt)
    formatter = handler.formatter
    start = time.time()
    for created in [start, start + 0.999, start + 61.5, 0.25]:
        record = logging.LogRecord("x.y", logging.WARNING, "(unknown file)", 0, "job %d", (3,), None)
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        record.kueue_event = "job_started"
        record.kueue_fields = {"job": 3}
        assert isinstance(formatter, logs.TextFormatter | logs.JsonFormatter)
        if isinstance(formatter, logs.JsonFormatter):
            line = formatter.event_line(
                created, logging.WARNING, "x.y", "job %d", (3,), "job_started", {"job": 3}
            )
        else:
            line = formatter.event_line(created, logging.WARNING, "x.y", "job %d", (3,))
        assert line == formatter.format(record)


def test_events_reach_every_handler_when_there_are_more(only_handler: Writes) -> None:
    handler = _install(only_handler, "text")
    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        logger = logging.getLogger("kueue_test_direct")
        assert logs._direct_handler(logger, logging.INFO) is None
        logs.event(logger, "job_started", "job %d", 1, job=1)
    finally:
        logging.getLogger().removeHandler(keep)
    assert [r.getMessage() for r in keep.records] == ["job 1"]
    assert messages(only_handler.getvalue()) == ["job 1"]
    # A handler's own filter and level are honoured too.
    handler.addFilter(lambda record: record.getMessage() != "job 2")
    logs.event(logger, "job_started", "job %d", 2, job=2)
    handler.filters.clear()
    handler.setLevel(logging.WARNING)
    logs.event(logger, "job_started", "job %d", 3, job=3)
    logs.event(logger, "job_failed", "job %d", 4, level=logging.WARNING, job=4)
    assert messages(only_handler.getvalue()) == ["job 1", "job 4"]


def test_events_made_directly_are_held_inside_one_write(only_handler: Writes) -> None:
    _install(only_handler, "text")
    logger = logging.getLogger("kueue_test_direct")
    with logs.one_write():
        logs.event(logger, "a", "first")
        logs.event(logger, "b", "second")
        assert only_handler.writes == []
        logs.event(logger, "c", "third", level=logging.WARNING)
        assert len(only_handler.writes) == 1
    assert messages(only_handler.getvalue()) == ["first", "second", "third"]


@pytest.mark.parametrize("direct", [True, False])
def test_lines_logged_on_the_loop_go_out_together_a_moment_later(only_handler: Writes, direct: bool) -> None:
    """hold_briefly (the worker's loop): lines below WARNING logged on the
    loop's thread wait up to HOLD_SECONDS and go out in one write; a
    warning takes what is held with it, and a line from another thread
    goes out at once."""
    if direct:
        _install(only_handler, "text")
    else:  # a record the usual way: a filter on the way needs it
        _install(only_handler, "text").addFilter(lambda record: True)
    logger = logging.getLogger("kueue_test_turns")

    async def written(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(only_handler.writes) < count:
            assert time.monotonic() < deadline, "the held lines were never written"
            await asyncio.sleep(logs.HOLD_SECONDS / 4)

    async def scenario() -> None:
        logs.hold_briefly(asyncio.get_running_loop())
        try:
            logs.event(logger, "a", "first")
            logger.info("second")
            assert only_handler.writes == []
            await written(1)
            assert [messages(w) for w in only_handler.writes] == [["first", "second"]]
            logs.event(logger, "c", "third")
            logger.warning("fourth")
            assert [messages(w) for w in only_handler.writes[1:]] == [["third", "fourth"]]
            await asyncio.to_thread(logger.info, "from a thread")
            assert messages(only_handler.writes[-1]) == ["from a thread"]
            logs.event(logger, "d", "fifth")
            with logs.one_write():  # the outermost one_write writes it, not the hold
                logger.info("sixth")
                logs._end_of_hold()  # the hold ends meanwhile
                assert messages(only_handler.writes[-1]) == ["from a thread"]
            assert messages(only_handler.writes[-1]) == ["fifth", "sixth"]
            logger.info("seventh")
        finally:
            logs.hold_briefly(None)  # writes what is held
        assert messages(only_handler.writes[-1]) == ["seventh"]
        logger.info("eighth")  # no longer held
        assert messages(only_handler.writes[-1]) == ["eighth"]

    asyncio.run(scenario())
