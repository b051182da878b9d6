"""The metric types and Prometheus' text format (kueue_server/metrics.py),
and the JSON log lines (kueue/logs.py)."""

from __future__ import annotations

import json
import logging
import math
import sys

import pytest

from kueue import logs
from kueue_server.metrics import Counter, Gauge, Histogram, exposition


def test_counter_and_gauge_lines_with_escaped_labels() -> None:
    c = Counter("x_total", "Things.", ["outcome"], known=[("ok",)])
    c.inc(labels=("bad",))
    c.inc(2, labels=("bad",))
    g = Gauge("y", 'A "gauge" with a \\ backslash.', ["name"])
    g.set(1.5, ('a"b\\c\nd',))
    plain = Counter("z_total", "No labels.")
    assert exposition([c, g, plain]) == (
        "# HELP x_total Things.\n"
        "# TYPE x_total counter\n"
        'x_total{outcome="bad"} 3\n'
        'x_total{outcome="ok"} 0\n'
        '# HELP y A "gauge" with a \\\\ backslash.\n'
        "# TYPE y gauge\n"
        'y{name="a\\"b\\\\c\\nd"} 1.5\n'
        "# HELP z_total No labels.\n"
        "# TYPE z_total counter\n"
        "z_total 0\n"
    )


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    h = Histogram("t_seconds", "Times.", [1, 0.1, 10])
    for v in (0.05, 0.1, 0.5, 3, 100, math.nan):
        h.observe(v)
    assert h.lines() == [
        't_seconds_bucket{le="0.1"} 2',
        't_seconds_bucket{le="1"} 3',
        't_seconds_bucket{le="10"} 4',
        't_seconds_bucket{le="+Inf"} 5',
        "t_seconds_sum 103.65",
        "t_seconds_count 5",
    ]


def test_json_log_lines_carry_event_fields_and_stay_one_line() -> None:
    formatter = logs.JsonFormatter("kueue_server")
    record = logging.LogRecord("kueue_server", logging.INFO, __file__, 1, "job %d\nstarted", (7,), None)
    record.kueue_event = "job_started"
    record.kueue_fields = {"job": 7, "attempt": 2, "worker": "w1", "signal": None, "message": "not me"}
    line = formatter.format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "job 7\nstarted"  # base keys are never overwritten by fields
    assert (out["event"], out["job"], out["attempt"], out["worker"]) == ("job_started", 7, 2, "w1")
    assert "signal" not in out  # fields left empty are left out
    assert (out["level"], out["logger"], out["program"]) == ("info", "kueue_server", "kueue_server")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(formatter.format(failed))
    assert out["level"] == "error" and "ValueError: boom" in out["exception"]


def test_log_level_from_config_filters_events(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, sys.excepthook)
    try:
        for level, shown in (("warn", False), ("info", True), ("off", False), ("TRACE", True)):
            logs.setup(level, "kueue_server", "json")
            logs.event(logging.getLogger("kueue_server"), "job_started", "job %d started", 1, job=1)
            err = capsys.readouterr().err
            assert bool(err) is shown, level
            if shown:
                assert json.loads(err)["event"] == "job_started"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        sys.excepthook = saved[2]
        logging.captureWarnings(False)
