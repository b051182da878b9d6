"""grpcio's complaint about a send to a call that had just ended is not an error of ours."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from kueue_server.grpc_log import GRPC_CORE_LOGGER, quiet_call_end_races
from tests.test_logs import Keep


@pytest.fixture
def recorded() -> Iterator[tuple[logging.Logger, Keep]]:
    logger = logging.getLogger(GRPC_CORE_LOGGER)
    root = logging.getLogger()
    recorder = Keep()
    saved = (list(logger.filters), root.level)
    root.addHandler(recorder)
    try:
        quiet_call_end_races()
        quiet_call_end_races()  # twice, as a restarted serve() would: one filter
        assert len(logger.filters) == len(saved[0]) + 1
        yield logger, recorder
    finally:
        root.removeHandler(recorder)
        logger.filters[:] = saved[0]
        root.setLevel(saved[1])


def _grpcio_complains(logger: logging.Logger) -> None:
    # As grpcio's _handle_exceptions words it (grpcio 1.85).
    try:
        raise RuntimeError('Failed "execute_batch"')
    except RuntimeError:
        logger.exception(
            "ExecuteBatchError raised in core by servicer method [/kueue.v1.WorkerService/Connect]"
        )


def test_a_send_to_an_ended_call_is_debug_not_error(recorded: tuple[logging.Logger, Keep]) -> None:
    logger, recorder = recorded
    logging.getLogger().setLevel(logging.INFO)
    _grpcio_complains(logger)
    assert recorder.records == []
    logging.getLogger().setLevel(logging.DEBUG)
    _grpcio_complains(logger)
    assert [r.levelname for r in recorder.records] == ["DEBUG"]


def test_grpcio_s_other_errors_stay_errors(recorded: tuple[logging.Logger, Keep]) -> None:
    logger, recorder = recorded
    logging.getLogger().setLevel(logging.INFO)
    logger.error("Unexpected [ValueError] raised by servicer method [/kueue.v1.JobService/Submit]")
    assert [r.levelname for r in recorder.records] == ["ERROR"]
