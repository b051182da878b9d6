"""How a worker run as several processes (worker_settings.worker_processes)
divides its machine: each process is a worker of its own, with a name of its
own and an equal share of the slots, CPUs and RAM.

One process's event loop starts at most about a thousand short jobs a second
(it spawns, reaps and reports every job in turn); several processes spread
that work over the cores. A job's slots must fit in one share; its CPUs and
RAM only in the machine, as the server counts them for all the processes of
a machine (Register.machine), but a process starts a job it holds for a free
slot only within its share of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class ShareError(ValueError):
    """A share that cannot be used; the message says why."""


@dataclass(frozen=True)
class Share:
    """Process `index` (from 1) of `count`."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Share:
        """ "I/N", as the supervisor passes it (--process)."""
        m = re.fullmatch(r"([0-9]+)/([0-9]+)", text)
        if m is None or not 1 <= int(m[1]) <= int(m[2]):
            raise ShareError(f"not a process number I/N with 1 <= I <= N: {text!r}")
        return cls(int(m[1]), int(m[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def part(self, total: int) -> int:
        """This process's part of `total` units: equal parts, the first
        processes taking one more each while a remainder lasts."""
        return total // self.count + (1 if self.index <= total % self.count else 0)

    def fraction(self, total: int) -> float:
        """part(total) as a fraction of total (1.0 for an empty total)."""
        return self.part(total) / total if total > 0 else 1.0

    def worker_name(self, base: str) -> str:
        """The first process keeps the worker's name (and so its identity and
        the jobs of a run before processes were split); the others add /I."""
        return base if self.index == 1 else f"{base}/{self.index}"


WHOLE = Share()


def fitting(count: int, cpu_cores: int) -> int:
    """How many processes this machine runs of the `count` asked for: one
    per CPU at most (a config shared by machines of all sizes asks the same
    of each)."""
    return max(1, min(count, cpu_cores))
