"""How long a batching stream writer (the worker's and the server's ends of
WorkerService.Connect) waits after a write that did not fill a batch.

A write costs far more CPU than waiting does (about 125 us each side, and on
the server every batch a worker writes starts a commit round), so messages a
moment apart should share one. How long a moment is depends on the traffic:
a stream carrying a few messages now and then (an attached `kueue run`: a
Started, some output, a Finished) is answered within the short wait, while
one whose last batch was busy (an array of short jobs: an acknowledgement,
a start and a finish per job, hundreds a second) waits longer and so writes
fewer, larger batches. Against 2 ms after every write, 8 ms after busy
batches took the server's CPU per job in an array of `true` from about 0.35
to 0.27 ms (bench/job_cost.py, three rounds each); 16 ms took it from 0.32
to 0.24, the worker's from 0.71 to 0.64, and the rate up by 12% (eight
alternating rounds, medians). 32 ms, with a prefetch of 128, did no better
than 16; at 16 ms a prefetch of 64 did no better than 32.
"""

from __future__ import annotations

QUIET_SECONDS = 0.002
BUSY_SECONDS = 0.016
# A batch of at least this many messages marks the stream as busy.
BUSY_MESSAGES = 8


def after_batch(messages: int) -> float:
    """Seconds to wait after writing a batch (not full) of this many messages."""
    return BUSY_SECONDS if messages >= BUSY_MESSAGES else QUIET_SECONDS
