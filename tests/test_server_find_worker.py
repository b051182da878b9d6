"""Which remembered worker an operator's id or name means (kueue drain, show-worker)."""

from __future__ import annotations

import pytest

from kueue_server.cluster_service import find_worker
from kueue_server.model import WorkerRecord
from kueue_server.scheduler import SchedulerError


def worker(worker_id: str, name: str, *, connected: bool, last_seen: float = 0.0) -> WorkerRecord:
    w = WorkerRecord(id=worker_id, name=name)
    w.connected, w.last_seen = connected, last_seen
    return w


def remembered(*workers: WorkerRecord) -> dict[str, WorkerRecord]:
    return {w.id: w for w in workers}


def test_a_name_held_by_a_dead_record_and_a_connected_one_means_the_connected_one() -> None:
    # w1 came back under a new id (its id file was lost): both are remembered.
    old = worker("aaaa1111", "w1", connected=False, last_seen=100.0)
    new = worker("bbbb2222", "w1", connected=True, last_seen=50.0)
    assert find_worker(remembered(old, new), "w1") is new
    assert find_worker(remembered(new, old), "w1") is new


def test_among_records_none_connected_the_latest_seen_is_meant() -> None:
    old = worker("aaaa1111", "w1", connected=False, last_seen=100.0)
    newer = worker("bbbb2222", "w1", connected=False, last_seen=200.0)
    assert find_worker(remembered(old, newer), "w1") is newer


def refusal(workers: dict[str, WorkerRecord], id_or_name: str) -> tuple[str, str]:
    with pytest.raises(SchedulerError) as refused:
        find_worker(workers, id_or_name)
    return refused.value.code, str(refused.value)


def test_two_connected_workers_of_one_name_need_the_id() -> None:
    a = worker("aaaa1111", "node", connected=True)
    b = worker("bbbb2222", "node", connected=True)
    assert refusal(remembered(a, b), "node") == (
        "INVALID_ARGUMENT",
        "several connected workers match 'node' (ids aaaa1111, bbbb2222); give the whole id",
    )
    assert find_worker(remembered(a, b), "bbbb2222") is b
    assert find_worker(remembered(a, b), "bbb") is b


def test_nothing_matching_says_so() -> None:
    assert refusal(remembered(worker("aaaa1111", "w1", connected=True)), "w9") == (
        "NOT_FOUND",
        "no worker 'w9'",
    )
    assert refusal({}, "") == ("NOT_FOUND", "no worker ''")
