"""What grpcio logs about calls that ended while the server answered them."""

from __future__ import annotations

import logging

GRPC_CORE_LOGGER = "grpc._cython.cygrpc"
# grpcio's words when a send of a servicer (its final status among them) fails
# because the call has just ended: the client left, or its deadline passed, a
# moment before grpcio noticed. Nothing went wrong on our side.
_CALL_ENDED = "ExecuteBatchError raised in core by servicer method"


class CallEndedFilter(logging.Filter):
    """Turns grpcio's ERROR about a send to a call that had just ended into a
    DEBUG record: at ERROR it read as a server fault to operators (and to the
    fuzz tests), though it is a race in grpcio any client can trigger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(_CALL_ENDED):
            record.levelno = logging.DEBUG
            record.levelname = logging.getLevelName(logging.DEBUG)
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_call_end_races() -> None:
    logger = logging.getLogger(GRPC_CORE_LOGGER)
    if not any(isinstance(f, CallEndedFilter) for f in logger.filters):
        logger.addFilter(CallEndedFilter())
