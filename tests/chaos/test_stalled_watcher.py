"""Chaos: live views that stop reading must not hold the server back.

Three WatchList streams are opened and never read while jobs run through a
real server and worker. Every job must still finish; when the streams are
finally read they hold no backlog (the latest state comes right after the
stale first message), and the server's memory has not grown with the
changes they missed.
"""

from __future__ import annotations

import grpc
import psutil

from kueue import auth
from kueue.rpc import CHANNEL_OPTIONS
from kueue.v1 import job_service_pb2 as jpb
from kueue_client import job_spec
from kueue_server.watchers import Watchers
from tests.cluster import Cluster, wait_for

WATCH_LIST = "/kueue.v1.JobService/WatchList"
JOBS = 200
# Jobs that never run (no worker has the cpus) and make the first message of
# each watcher large: it cannot fit the transport's buffers, so a watcher
# that does not read blocks the server's coroutine on it at once.
FAT_JOBS = 100
FAT_ARGUMENT = "x" * 32 * 1024
STALLED = 3


def test_stalled_watchers_do_not_slow_dispatch_nor_pile_up(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_worker("w1", worker_max_parallel_jobs=4)
    cluster.wait_workers("w1")
    client = cluster.client()
    # A reader stalled down to its transport: no window beyond 64 KiB is
    # granted (no BDP probing), so what it does not read stays unsent.
    options = [*CHANNEL_OPTIONS, ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65536)]
    channel = grpc.insecure_channel(f"127.0.0.1:{cluster.port}", options=options)
    calls = []
    try:
        # Connected before the jobs go in: a watcher whose connection is
        # still being made when they run first sees some of them finished.
        grpc.channel_ready_future(channel).result(timeout=60)
        client.submit(job_spec(["true", FAT_ARGUMENT], cpus=10_000), [{}] * FAT_JOBS)
        server = psutil.Process(cluster.server.pid)  # type: ignore[union-attr]
        rss_before = server.memory_info().rss

        watch = channel.unary_stream(WATCH_LIST, request_serializer=None, response_deserializer=None)
        request = jpb.WatchListRequest(limit=1000, include_workers=True, min_interval_ms=100)
        for _ in range(STALLED):
            calls.append(
                watch(request.SerializeToString(), metadata=auth.metadata(cluster.secret, WATCH_LIST))
            )

        ids = client.submit(job_spec(["true"]), [{}] * JOBS).job_ids
        assert len(ids) == JOBS

        def all_done() -> bool:
            summary = client.list_jobs(limit=1).summary
            assert summary.failed == 0, summary
            return summary.succeeded == JOBS

        # Generous: 200 `true` on 4 slots take seconds; this bound only
        # catches a server held back by its watchers.
        wait_for(all_done, 240, f"{JOBS} jobs to finish with {STALLED} stalled watchers")
        rss_after = server.memory_info().rss

        for call in calls:
            seen = []
            for raw in call:
                msg = jpb.WatchListResponse.FromString(raw)
                seen.append(msg.summary.succeeded)
                if msg.summary.succeeded == JOBS:
                    break
            # The first message is from when the watcher connected; the
            # next one is already the latest state: nothing piled up.
            assert seen[0] == 0, seen
            print("messages read from a stalled watcher:", seen)
            assert len(seen) <= 3, seen
        # Each changed job is a set entry, never a queued message; what the
        # stalled streams hold is their one first message each.
        print(f"server RSS {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after")
        assert rss_after - rss_before < 100 * 1024 * 1024, (rss_before, rss_after)
        assert cluster.server is not None and cluster.server.poll() is None
    finally:
        for call in calls:
            call.cancel()
        channel.close()
        client.close()


def test_a_capped_watch_keeps_constant_memory_however_much_changes() -> None:
    watchers = Watchers()
    capped = watchers.add(None, cap=100)
    plain = watchers.add(None)
    for start in range(0, 100_000, 1000):
        watchers.notify(range(start, start + 1000))
    assert capped.overflow and len(capped.changed) == 0 and capped.event.is_set()
    assert len(plain.changed) == 100_000
    assert capped.take_all() == ([], True)
    watchers.notify([7, 8])
    assert capped.take_all() == ([7, 8], False)
