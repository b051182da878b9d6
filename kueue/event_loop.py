"""The event loop the server and the worker run on.

uvloop runs the loop's own work (callbacks, timers, file descriptor
readiness) in C. At hundreds of short jobs a second the worker's loop is the
bottleneck of the whole cluster, and every job costs it several callbacks,
timers and pipe and pidfd watches: uvloop takes a measurable part of that
away (bench/job_cost.py). Where uvloop is not installed, or when
KUEUE_EVENT_LOOP=asyncio asks for it (to rule the loop out when chasing a
problem), the standard loop runs the same code.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "KUEUE_EVENT_LOOP"


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), on uvloop unless it is missing or KUEUE_EVENT_LOOP=asyncio."""
    if os.environ.get(ENV, "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
