"""The event loop the server and the worker run on.

The standard asyncio loop, unless KUEUE_EVENT_LOOP=uvloop asks for uvloop
(installed separately: pip install uvloop). uvloop is not a dependency:
measured side by side with bench/job_cost.py (2000 x true on 2 slots, three
rounds each, December 2026) it made no difference to the CPU the server and
the worker spend per job, nor to the rate, once their per-job work had been
cut; the switch stays for whoever wants to measure it on their machines.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "KUEUE_EVENT_LOOP"


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), or uvloop.run(main) when KUEUE_EVENT_LOOP=uvloop and it is installed."""
    if os.environ.get(ENV, "").strip().lower() == "uvloop":
        try:
            import uvloop
        except ImportError:
            logging.getLogger("kueue").warning(
                "%s=uvloop but uvloop is not installed (pip install uvloop): running the standard loop", ENV
            )
        else:
            return uvloop.run(main)
    return asyncio.run(main)
