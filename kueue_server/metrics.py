"""Counters, gauges and histograms, and the Prometheus text exposition format
(version 0.0.4) they are served in.

Small on purpose: the server needs a dozen metrics, no registry, no
processes, no exemplars. Updates come from the event loop, except the store's
commit timings, which come from its writer thread: each metric has a lock.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence

Labels = tuple[str, ...]


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help.replace(chr(92), chr(92) * 2)}",
            f"# TYPE {self.name} {self.kind}",
        ]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(Metric):
    """Only goes up (from zero at server start)."""

    kind = "counter"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), known: Iterable[Labels] = ()
    ) -> None:
        super().__init__(name, help, labelnames)
        # Known label sets are shown at 0 from the start, so rate() sees the first event.
        self._values: dict[Labels, float] = dict.fromkeys(known, 0.0) if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, labels: Labels = ()) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels = ()) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Gauge(Metric):
    """A value set whenever it is read (set_all) or changed (set)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[Labels, float] = {}

    def set(self, value: float, labels: Labels = ()) -> None:
        with self._lock:
            self._values[labels] = value

    def set_all(self, values: dict[Labels, float]) -> None:
        with self._lock:
            self._values = dict(values)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Histogram(Metric):
    """Cumulative buckets with upper bounds `buckets` (+Inf added), sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help)
        self.buckets = sorted(float(b) for b in buckets)
        # Per bucket, observations falling in it alone; summed when rendered.
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def lines(self) -> list[str]:
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._count
        out = []
        running = 0
        for bound, c in zip([*self.buckets, math.inf], counts, strict=True):
            running += c
            out.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        out.append(f"{self.name}_sum {_number(total)}")
        out.append(f"{self.name}_count {n}")
        return out


def exposition(metrics: Iterable[Metric]) -> str:
    """The text format Prometheus scrapes (text/plain; version=0.0.4)."""
    lines: list[str] = []
    for metric in metrics:
        lines += metric.header()
        lines += metric.lines()
    return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
