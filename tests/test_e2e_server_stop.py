"""End to end: a server told to stop ends the clients' watching streams at
once, saying it is stopping, instead of holding them (and its own exit)
until its grace time for calls in flight is up."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kueue_client.errors import KueueError
from tests.cluster import Cluster
from tests.test_e2e_core import submit, wait_state


def open_stream(client: Any, kind: str, job_id: int) -> Iterator[Any]:
    if kind == "wait":
        stream = iter(client.watch([job_id]))
    elif kind == "log -f":
        stream = iter(client.read_output(job_id, follow=True))
    else:
        stream = iter(client.watch_list())
    next(stream)  # the stream is open and has answered
    return stream


@pytest.mark.parametrize("kind", ["wait", "log -f", "ls --watch"])
def test_a_stopping_server_ends_watching_streams_saying_so(
    cluster: Cluster, tmp_path: Path, kind: str
) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    job_id = submit(cluster, "sh", "-c", "echo started; sleep 600", cwd=tmp_path)
    wait_state(cluster, job_id, "JOB_STATE_RUNNING")
    client = cluster.client()
    stream = open_stream(client, kind, job_id)
    ended: list[BaseException | None] = []

    def drain() -> None:
        try:
            for _ in stream:
                pass
        except BaseException as exc:  # handed to the test
            ended.append(exc)
        else:
            ended.append(None)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert cluster.stop_server(signal.SIGTERM) == 0
    reader.join(timeout=30)
    assert ended, "the stream did not end"
    (error,) = ended
    assert isinstance(error, KueueError), error
    assert error.code == "UNAVAILABLE"
    assert str(error).startswith(f"the kueue server at {client.address} is stopping"), str(error)
    log = cluster.server_log()
    assert "Traceback" not in log and " ERROR " not in log, log
