"""The server never crashes on input: every method of every service, called
with random well-formed messages (built from the descriptors, with edge
values: huge and negative numbers, NaN, NUL bytes, long strings, unknown
enum values) and with random bytes, by an authenticated client and by a
fake worker on its stream. Each call ends with some status; afterwards the
server still runs, answers, and logged no traceback.

No worker runs here, so nothing submitted is ever executed. The draws are
seeded, so a failure reproduces."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf.message import Message

from kueue import auth, rpc
from kueue.v1 import cluster_service_pb2, common_pb2, job_service_pb2, worker_service_pb2
from tests.cluster import Cluster
from tests.random_messages import fill, scalar

CALLS_PER_METHOD = 25
RAW_CALLS_PER_METHOD = 5
STREAM_MESSAGES = 40
STREAMS_PER_METHOD = 8
JOBS = 25
DEADLINE = 5.0


def _methods() -> Iterator[tuple[str, d.MethodDescriptor]]:
    for module in (job_service_pb2, cluster_service_pb2, worker_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield f"/{service.full_name}/{method.name}", method


def _request_class(method: d.MethodDescriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(method.input_type)


def _valid_spec() -> common_pb2.JobSpec:
    return common_pb2.JobSpec(command=["true"], cwd="/tmp", resources=common_pb2.Resources(slots=1))


def _payloads(path: str, method: d.MethodDescriptor, rng: random.Random) -> list[bytes]:
    cls = _request_class(method)
    payloads = [fill(cls(), rng).SerializeToString() for _ in range(CALLS_PER_METHOD)]
    if path.endswith("/SubmitJobs"):
        # Most random specs are refused at the door: start from one that is
        # not, and change a few of its fields, so that some get queued.
        for _ in range(CALLS_PER_METHOD):
            request = job_service_pb2.SubmitJobsRequest(spec=_valid_spec())
            payloads.append(fill(request, rng, skip=0.85).SerializeToString())
    payloads += [rng.randbytes(rng.choice([1, 7, 100, 5000])) for _ in range(RAW_CALLS_PER_METHOD)]
    return payloads


def _retarget(msg: Message, rng: random.Random) -> None:
    """Point what names a job at one of the queued ones, mostly, in every nested message."""
    for field, value in msg.ListFields():
        if field.name == "job_id" and rng.random() < 0.7:
            msg.job_id = rng.randint(1, JOBS)
        elif field.name == "attempt" and rng.random() < 0.7:
            msg.attempt = rng.randint(0, 3)
        elif field.type == d.FieldDescriptor.TYPE_MESSAGE and not (field.message_type.GetOptions().map_entry):
            for inner in value if field.is_repeated else [value]:
                _retarget(inner, rng)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "cluster")
    try:
        cluster.start_server()
        yield cluster
    finally:
        cluster.close()


def _call_all(channel: grpc.Channel, secret: str, rng: random.Random) -> dict[str, set[grpc.StatusCode]]:
    seen: dict[str, set[grpc.StatusCode]] = {}
    for path, method in _methods():
        statuses = seen.setdefault(path, set())
        if method.client_streaming:
            continue  # below
        for payload in _payloads(path, method, rng):
            md = auth.metadata(secret, path)
            try:
                if method.server_streaming:
                    call = channel.unary_stream(path)(payload, metadata=md, timeout=0.5)
                    for _ in range(3):
                        next(call)
                    call.cancel()
                    statuses.add(grpc.StatusCode.OK)
                else:
                    channel.unary_unary(path)(payload, metadata=md, timeout=DEADLINE)
                    statuses.add(grpc.StatusCode.OK)
            except StopIteration:
                statuses.add(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                statuses.add(err.code())
    return seen


def _opening(path: str, rng: random.Random, k: int) -> Message:
    """A valid first message of a stream, with a few fields changed."""
    if path.endswith("/Connect"):
        msg = worker_service_pb2.ConnectRequest()
        fill(msg.register, rng, skip=0.85)
        reg = msg.register
        reg.worker_id, reg.name = f"fuzz-{k}", f"fuzz-{k}"
        reg.draining = False  # so that it is offered jobs
        if not reg.capacity.slots:
            reg.capacity.slots, reg.capacity.cpus, reg.capacity.ram_mb = 4, 4, 4096
        return msg
    msg = job_service_pb2.AttachRequest()
    msg.start.spec.CopyFrom(_valid_spec())
    fill(msg.start, rng, skip=0.9)
    return msg


def _stream(
    channel: grpc.Channel, secret: str, path: str, method: d.MethodDescriptor, rng: random.Random, k: int
) -> set[grpc.StatusCode]:
    """A bidirectional stream: a valid opening, its first answer awaited (a
    worker's Registered and offers), then random messages, among them random
    bytes in every other stream; read while it lasts."""
    cls = _request_class(method)
    members = method.input_type.oneofs[0].fields
    answered = threading.Event()

    def requests() -> Iterator[bytes]:
        yield _opening(path, rng, k).SerializeToString()
        answered.wait(DEADLINE)
        for _ in range(STREAM_MESSAGES):
            if k % 2 and rng.random() < 0.05:
                yield rng.randbytes(rng.choice([1, 50, 3000]))
                continue
            msg = cls()
            member = rng.choice(members)
            if member.type == d.FieldDescriptor.TYPE_MESSAGE:
                fill(getattr(msg, member.name), rng)
                getattr(msg, member.name).SetInParent()  # chosen even if left empty
            else:
                setattr(msg, member.name, scalar(member, rng))
            _retarget(msg, rng)
            yield msg.SerializeToString()

    call = channel.stream_stream(path)(requests(), metadata=auth.metadata(secret, path), timeout=DEADLINE)
    try:
        for _ in call:
            answered.set()
    except grpc.RpcError as err:
        return {err.code()}
    finally:
        answered.set()
    return {grpc.StatusCode.OK}


def test_random_input_never_crashes_the_server(server: Cluster) -> None:
    rng = random.Random(20261204)
    channel = rpc.sync_channel(f"127.0.0.1:{server.port}", rpc.CHANNEL_OPTIONS, None)
    try:
        with server.client() as client:
            for _ in range(JOBS):  # for the fake workers to be offered and to report on
                client.submit(_valid_spec())
        seen = _call_all(channel, server.secret, rng)
        for path, method in _methods():
            if method.client_streaming:
                for k in range(STREAMS_PER_METHOD):
                    seen[path] |= _stream(channel, server.secret, path, method, rng, k % 3)
        assert server.server is not None and server.server.poll() is None, server.server_log()
        # It still answers, well-formed requests as before.
        with server.client() as client:
            client.list_jobs()
            job_id = client.submit(_valid_spec()).job_ids[0]
            assert client.get_job(job_id).job.id == job_id
    finally:
        channel.close()
    for path, statuses in seen.items():
        # None was a fault of the server's; of a unary method, some input was taken.
        assert grpc.StatusCode.UNKNOWN not in statuses, (path, statuses)
        assert grpc.StatusCode.INTERNAL not in statuses, (path, statuses)
        if not path.endswith(("/Connect", "/Attach")):
            assert statuses - {grpc.StatusCode.INVALID_ARGUMENT}, (path, statuses)
    log = server.server_log()
    assert "Traceback" not in log, log[-5000:]
    # The fake workers were taken as workers, and offered the queued jobs.
    assert "fuzz-0" in log and "offered to fuzz-" in log, log[-3000:]
