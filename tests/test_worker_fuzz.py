"""A worker never crashes on what its server sends: a fake server answers a
real kueue_worker's Register, then sends random messages (built from the
descriptors with edge values, in batches and alone, and now and then random
bytes), ends the stream, and does it again when the worker comes back. The
worker must keep running, come back each time, log no traceback, and stop
cleanly on SIGTERM.

For safety every Assign, however random otherwise, runs `true` with its
output in pipes: nothing random is executed or written to. The draws are
seeded, so a failure reproduces."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from kueue.v1 import worker_service_pb2 as wpb
from tests.cluster import Cluster, wait_for
from tests.random_messages import fill

SESSIONS = 8
MESSAGES_PER_SESSION = 80
# How long a session goes on hearing the worker after the last random message.
LISTEN_SECONDS = 1.0

MEMBERS = [f.name for f in wpb.ConnectResponse.DESCRIPTOR.oneofs_by_name["msg"].fields]


def _made_safe(msg: wpb.ConnectResponse, work: Path) -> wpb.ConnectResponse:
    """Every Assign in msg (batches included) runs `true`, its output in pipes."""
    if msg.HasField("assign"):
        spec = msg.assign.spec
        del spec.command[:]
        spec.command.append("true")
        spec.shell = False
        spec.stdout_path = spec.stderr_path = ""
        if spec.cwd not in ("", "/", str(work)):
            spec.cwd = str(work)
        msg.assign.job_id = msg.assign.job_id % 8 + 1
        msg.assign.attempt = msg.assign.attempt % 3 + 1
    for inner in msg.batch.messages:
        _made_safe(inner, work)
    return msg


def _random_response(rng: random.Random, work: Path) -> bytes:
    # Random bytes and ServerStopping end the session: now and then only.
    if rng.random() < 0.01:
        return rng.randbytes(rng.choice([1, 40, 2000]))
    msg = wpb.ConnectResponse()
    member = rng.choice(MEMBERS)
    while member == "server_stopping" and rng.random() < 0.9:
        member = rng.choice(MEMBERS)
    fill(getattr(msg, member), rng)
    getattr(msg, member).SetInParent()
    return _made_safe(msg, work).SerializeToString()


class FakeServer:
    """WorkerService.Connect that answers Register, then sends random messages."""

    def __init__(self, work: Path, seed: int) -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.sessions = 0
        self.heard = 0
        self.lock = threading.Lock()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        handler = grpc.stream_stream_rpc_method_handler(
            self.connect, request_deserializer=wpb.ConnectRequest.FromString, response_serializer=bytes
        )
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("kueue.v1.WorkerService", {"Connect": handler})]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def connect(
        self, requests: Iterator[wpb.ConnectRequest], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        first = next(requests)
        assert first.WhichOneof("msg") == "register", first
        with self.lock:
            self.sessions += 1
            rng = random.Random(self.rng.random())
        listener = threading.Thread(target=self._listen, args=(requests,), daemon=True)
        listener.start()
        yield wpb.ConnectResponse(
            registered=wpb.Registered(
                worker_id=first.register.worker_id, heartbeat_interval_seconds=1.0, batches=True
            )
        ).SerializeToString()
        for _ in range(MESSAGES_PER_SESSION):
            yield _random_response(rng, self.work)
        # Bounded: the stream ends here whatever the worker still says.
        listener.join(LISTEN_SECONDS)

    def _listen(self, requests: Iterator[wpb.ConnectRequest]) -> None:
        try:
            for _ in requests:
                with self.lock:
                    self.heard += 1
        except grpc.RpcError:
            pass


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeServer]:
    work = tmp_path / "work"
    work.mkdir()
    server = FakeServer(work, seed=20261204)
    server.server.start()
    try:
        yield server
    finally:
        server.server.stop(grace=None)


def test_random_messages_from_the_server_never_crash_the_worker(fake: FakeServer, cluster: Cluster) -> None:
    worker = cluster.start_worker("w1", port=fake.port)
    # Each session ends after its random messages; the worker comes back for the next.
    wait_for(lambda: fake.sessions >= SESSIONS or worker.poll() is not None, 120, f"{SESSIONS} sessions")
    assert worker.poll() is None, cluster.worker_log("w1")[-5000:]
    assert fake.heard > 0  # it answered (heartbeats, replies, finishes), not only listened
    log = cluster.worker_log("w1")
    assert "Traceback" not in log, log[-5000:]
    # Random bytes from the server are said in one line (grpcio logged a traceback).
    assert "(the server sent a message that does not parse: " in log, log[-5000:]
    # It still stops as it should.
    worker.send_signal(signal.SIGTERM)
    began = time.monotonic()
    code = worker.wait(timeout=60)
    cluster.workers.pop("w1")
    assert code == 0, (code, time.monotonic() - began, cluster.worker_log("w1")[-3000:])
