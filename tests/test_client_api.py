"""Client.wait and error translation, with WatchJobs replaced by scripted
streams: no server and no sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kueue.v1 import common_pb2, job_service_pb2
from kueue_client import Client, KueueError, api

State = common_pb2.JobState


def update(job_id: int, state: int, **fields: Any) -> job_service_pb2.WatchJobsResponse:
    return job_service_pb2.WatchJobsResponse(job=common_pb2.Job(id=job_id, state=state, **fields))


def removed(job_id: int) -> job_service_pb2.WatchJobsResponse:
    return job_service_pb2.WatchJobsResponse(removed=True, removed_id=job_id)


class ScriptedWatch:
    """Replaces Client.watch: each call plays the next script; a KueueError in
    a script is raised at that point of the stream."""

    def __init__(self, *scripts: list[Any]) -> None:
        self.scripts = list(scripts)
        self.requests: list[list[int]] = []

    def __call__(self, ids: Any = ()) -> Iterator[job_service_pb2.WatchJobsResponse]:
        self.requests.append(list(ids))
        script = self.scripts.pop(0)

        def stream() -> Iterator[job_service_pb2.WatchJobsResponse]:
            for item in script:
                if isinstance(item, Exception):
                    raise item
                yield item

        return stream()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setattr(api.time, "sleep", lambda seconds: None)
    with Client(address="127.0.0.1:9", secret="s") as c:
        yield c


def test_wait_returns_final_jobs_in_the_order_asked(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    watch = ScriptedWatch(
        [
            update(2, State.JOB_STATE_RUNNING),
            update(1, State.JOB_STATE_PENDING),
            update(2, State.JOB_STATE_SUCCEEDED, exit_code=0),
            update(1, State.JOB_STATE_RUNNING),
            update(1, State.JOB_STATE_FAILED, exit_code=3),
            update(1, State.JOB_STATE_FAILED, exit_code=3),  # never read: all final before
        ]
    )
    monkeypatch.setattr(client, "watch", watch)
    seen: list[tuple[int, int]] = []
    jobs = client.wait([1, 2, 1], on_change=lambda job: seen.append((job.id, job.state)))
    assert [(j.id, j.state) for j in jobs] == [(1, State.JOB_STATE_FAILED), (2, State.JOB_STATE_SUCCEEDED)]
    assert seen == [
        (2, State.JOB_STATE_RUNNING),
        (1, State.JOB_STATE_PENDING),
        (2, State.JOB_STATE_SUCCEEDED),
        (1, State.JOB_STATE_RUNNING),
        (1, State.JOB_STATE_FAILED),
    ]
    assert watch.requests == [[1, 2]]


def test_wait_for_an_unknown_job_is_a_usage_error(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "watch", ScriptedWatch([removed(7)]))
    with pytest.raises(KueueError, match="no job 7") as info:
        client.wait([7])
    assert info.value.exit_status == 2


def test_a_job_removed_while_waited_for_is_an_error(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "watch", ScriptedWatch([update(7, State.JOB_STATE_RUNNING), removed(7)]))
    with pytest.raises(KueueError, match="job 7 was removed before it finished"):
        client.wait([7])


def test_wait_survives_a_server_restart(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    lost = KueueError("cannot reach the kueue server", code="UNAVAILABLE")
    watch = ScriptedWatch(
        [update(1, State.JOB_STATE_RUNNING), update(2, State.JOB_STATE_SUCCEEDED), lost],
        [lost],
        [update(1, State.JOB_STATE_SUCCEEDED)],
    )
    monkeypatch.setattr(client, "watch", watch)
    jobs = client.wait([1, 2])
    assert [j.state for j in jobs] == [State.JOB_STATE_SUCCEEDED, State.JOB_STATE_SUCCEEDED]
    # After reconnecting only the jobs not yet final are asked for.
    assert watch.requests == [[1, 2], [1], [1]]


def test_a_server_never_reached_fails_at_once(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    lost = KueueError("cannot reach the kueue server", code="UNAVAILABLE")
    monkeypatch.setattr(client, "watch", ScriptedWatch([lost]))
    with pytest.raises(KueueError, match="cannot reach"):
        client.wait([1])


def test_a_server_gone_for_good_ends_the_wait(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    lost = KueueError("cannot reach the kueue server", code="UNAVAILABLE")
    clock = iter(float(t) for t in range(0, 10_000, 30))
    monkeypatch.setattr(api.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(
        client, "watch", ScriptedWatch([update(1, State.JOB_STATE_RUNNING), lost], *([[lost]] * 20))
    )
    with pytest.raises(KueueError, match="lost the kueue server"):
        client.wait([1])


def test_wait_for_nothing(client: Client) -> None:
    assert client.wait([]) == []


def test_unreachable_server_through_the_real_channel() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(address=f"127.0.0.1:{port}", secret="s") as c:
        with pytest.raises(KueueError, match=f"cannot reach the kueue server at 127.0.0.1:{port}") as info:
            c.server_info()
        assert info.value.code == "UNAVAILABLE"
        with pytest.raises(KueueError, match="cannot reach"):
            list(c.watch([1]))
