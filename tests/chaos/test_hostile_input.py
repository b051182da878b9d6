"""Chaos: hostile and malformed input against a real server process.

Unauthenticated calls to every method, malformed and out-of-range requests,
a worker stream that speaks nonsense, random bytes and random nonsense
messages (hypothesis) to every method (the 14 of kueue.v1 and the 4 public
ones of the standard health and reflection services), and garbage TCP peers.
The server must answer with the right status, never crash or wedge, never
leave a half-made job, and not flood its log.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as gdesc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kueue import auth
from kueue.rpc import CHANNEL_OPTIONS
from kueue.v1 import cluster_service_pb2 as cpb
from kueue.v1 import common_pb2 as common
from kueue.v1 import job_service_pb2 as jpb
from kueue.v1 import worker_service_pb2 as wpb
from tests.cluster import Cluster, wait_for

INVALID = grpc.StatusCode.INVALID_ARGUMENT
CALL_TIMEOUT = 10.0

# Every method of every service: path -> (request class, client streaming, server streaming).
METHODS: dict[str, tuple[type[Message], bool, bool]] = {}
for _module in (jpb, cpb, wpb):
    for _service in _module.DESCRIPTOR.services_by_name.values():
        for _method in _service.methods:
            METHODS[f"/{_service.full_name}/{_method.name}"] = (
                getattr(_module, _method.input_type.name)
                if _method.input_type.file is _module.DESCRIPTOR
                else None,  # type: ignore[assignment]
                _method.client_streaming,
                _method.server_streaming,
            )
assert len(METHODS) == 15, sorted(METHODS)
assert all(cls is not None for cls, _, _ in METHODS.values())

# The standard services, which answer without a token (kueue_server/standard_services.py).
PUBLIC_METHODS: dict[str, tuple[type[Message], bool, bool]] = {}
for _module in (health_pb2, reflection_pb2):
    for _service in _module.DESCRIPTOR.services_by_name.values():
        for _method in _service.methods:
            PUBLIC_METHODS[f"/{_service.full_name}/{_method.name}"] = (
                getattr(_module, _method.input_type.name),
                _method.client_streaming,
                _method.server_streaming,
            )
assert sorted(PUBLIC_METHODS) == [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/List",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
], sorted(PUBLIC_METHODS)
KINDS = {**METHODS, **PUBLIC_METHODS}

SUBMIT = "/kueue.v1.JobService/SubmitJobs"
LIST_JOBS = "/kueue.v1.JobService/ListJobs"
CONNECT = "/kueue.v1.WorkerService/Connect"
INFO = "/kueue.v1.ClusterService/GetServerInfo"
WATCH_LIST = "/kueue.v1.JobService/WatchList"


def good_spec(**overrides: Any) -> common.JobSpec:
    spec = common.JobSpec(
        command=["true"],
        cwd="/tmp",
        env={"PATH": "/usr/bin:/bin"},
        resources=common.Resources(slots=1, cpus=1, ram_mb=10),
    )
    for key, value in overrides.items():
        field = getattr(spec, key)
        if isinstance(value, Message):
            field.CopyFrom(value)
        elif isinstance(value, list):
            del field[:]
            field.extend(value)
        elif isinstance(value, dict):
            field.clear()
            field.update(value)
        else:
            setattr(spec, key, value)
    return spec


def register(worker_id: str = "fake-worker-0001", name: str = "fake", slots: int = 4) -> wpb.ConnectRequest:
    return wpb.ConnectRequest(
        register=wpb.Register(
            worker_id=worker_id,
            name=name,
            capacity=common.Resources(slots=slots, cpus=64, ram_mb=1 << 20),
            version="0",
        )
    )


# A request each method would act on if it were authenticated.
PAYLOADS: dict[str, list[Message]] = {
    SUBMIT: [jpb.SubmitJobsRequest(spec=good_spec())],
    LIST_JOBS: [jpb.ListJobsRequest()],
    "/kueue.v1.JobService/GetJob": [jpb.GetJobRequest(id=1)],
    "/kueue.v1.JobService/CancelJob": [jpb.CancelJobRequest(id=1, kill=True)],
    "/kueue.v1.JobService/CleanJobs": [jpb.CleanJobsRequest(all=True)],
    "/kueue.v1.JobService/WatchJobs": [jpb.WatchJobsRequest(ids=[1])],
    WATCH_LIST: [jpb.WatchListRequest(limit=10, include_workers=True)],
    "/kueue.v1.JobService/ReadOutput": [jpb.ReadOutputRequest(id=1, follow=True)],
    "/kueue.v1.JobService/Attach": [jpb.AttachRequest(start=jpb.AttachStart(spec=good_spec()))],
    "/kueue.v1.ClusterService/ListWorkers": [cpb.ListWorkersRequest(include_disconnected=True)],
    "/kueue.v1.ClusterService/GetWorker": [cpb.GetWorkerRequest(id="fake")],
    "/kueue.v1.ClusterService/DrainWorker": [cpb.DrainWorkerRequest(id="fake", drain=True)],
    "/kueue.v1.ClusterService/ListResources": [cpb.ListResourcesRequest()],
    INFO: [cpb.GetServerInfoRequest()],
    CONNECT: [register()],
}
assert set(PAYLOADS) == set(METHODS)


# ---------------------------------------------------------------- raw calls


class Raw:
    """Generic calls with bytes in and bytes out, with any metadata."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.channel = grpc.insecure_channel(f"127.0.0.1:{cluster.port}", options=CHANNEL_OPTIONS)

    def close(self) -> None:
        self.channel.close()

    def token(self, method: str, secret: str | None = None) -> tuple[tuple[str, str], ...]:
        return auth.metadata(secret or self.cluster.secret, method)

    def call(
        self,
        method: str,
        requests: list[bytes],
        metadata: tuple[tuple[str, str], ...] | None,
        *,
        timeout: float = CALL_TIMEOUT,
        max_responses: int = 1000,
    ) -> tuple[grpc.StatusCode, str, list[bytes]]:
        """(status, details, responses). A streaming call is cancelled (status
        CANCELLED) once it has given max_responses, or after `timeout` s as
        DEADLINE_EXCEEDED: a watch that waits for ever is not an error."""
        _, client_streaming, server_streaming = KINDS[method]
        kind = ("stream" if client_streaming else "unary") + "_" + ("stream" if server_streaming else "unary")
        stub = getattr(self.channel, kind)(method, request_serializer=None, response_deserializer=None)
        arg: Any = iter(requests) if client_streaming else requests[0]
        try:
            if not server_streaming:
                return grpc.StatusCode.OK, "", [stub(arg, metadata=metadata, timeout=timeout)]
            call = stub(arg, metadata=metadata, timeout=timeout)
            out = []
            for response in call:
                out.append(response)
                if len(out) >= max_responses:
                    call.cancel()
                    return grpc.StatusCode.CANCELLED, "", out
            return grpc.StatusCode.OK, "", out
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", []

    def ok_call(self, method: str, request: Message) -> bytes:
        code, details, out = self.call(method, [request.SerializeToString()], self.token(method))
        assert code == grpc.StatusCode.OK, (method, code, details)
        return out[0]

    def jobs(self) -> list[common.Job]:
        reply = jpb.ListJobsResponse.FromString(
            self.ok_call(LIST_JOBS, jpb.ListJobsRequest(include_env=True))
        )
        return list(reply.jobs)

    def workers(self) -> list[common.Worker]:
        method = "/kueue.v1.ClusterService/ListWorkers"
        reply = cpb.ListWorkersResponse.FromString(
            self.ok_call(method, cpb.ListWorkersRequest(include_disconnected=True))
        )
        return list(reply.workers)

    def assert_healthy(self, within: float = 5.0) -> None:
        """The server process lives and answers an authenticated call promptly."""
        assert self.cluster.server is not None and self.cluster.server.poll() is None, (
            "server died:\n" + self.cluster.server_log()[-5000:]
        )
        started = time.monotonic()
        code, details, _ = self.call(
            INFO, [cpb.GetServerInfoRequest().SerializeToString()], self.token(INFO), timeout=within
        )
        assert code == grpc.StatusCode.OK, (code, details, self.cluster.server_log()[-5000:])
        code, details, _ = self.call(
            LIST_JOBS, [jpb.ListJobsRequest().SerializeToString()], self.token(LIST_JOBS), timeout=within
        )
        assert code == grpc.StatusCode.OK, (code, details, self.cluster.server_log()[-5000:])
        assert time.monotonic() - started < within


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("hostile") / "c")
    cluster.global_resources = {"genus": 2}
    try:
        cluster.start_server()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def raw(server: Cluster) -> Iterator[Raw]:
    r = Raw(server)
    try:
        yield r
        r.assert_healthy()
    finally:
        r.close()


def cancel_all(raw: Raw) -> None:
    """Cancel every job that has not ended, so earlier tests' jobs stay out of the way."""
    method = "/kueue.v1.JobService/CancelJob"
    for job in raw.jobs():
        if job.state in (common.JOB_STATE_PENDING, common.JOB_STATE_OFFERED, common.JOB_STATE_RUNNING):
            request = jpb.CancelJobRequest(id=job.id, kill=True).SerializeToString()
            code, details, _ = raw.call(method, [request], raw.token(method))
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION), (code, details)


# ---------------------------------------------------------------- authentication


def bad_tokens(raw: Raw, method: str) -> dict[str, tuple[tuple[str, str], ...] | None]:
    other = INFO if method != INFO else LIST_JOBS
    stale = str(int(time.time()) - 3600)
    return {
        "none": None,
        "empty": ((auth.METADATA_KEY, ""),),
        "wrong secret": raw.token(method, secret="not the secret"),
        "other method": raw.token(other),
        "garbage": ((auth.METADATA_KEY, "v1 x y z"),),
        "too old": (
            (auth.METADATA_KEY, f"v1 {stale} abc {auth.mac(raw.cluster.secret, method, stale, 'abc')}"),
        ),
        "wrong scheme": ((auth.METADATA_KEY, "v2" + auth.make_token(raw.cluster.secret, method)[2:]),),
    }


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_refuses_bad_authentication(raw: Raw, method: str) -> None:
    before_jobs, before_workers = raw.jobs(), raw.workers()
    payload = [m.SerializeToString() for m in PAYLOADS[method]]
    for what, metadata in bad_tokens(raw, method).items():
        code, details, out = raw.call(method, payload, metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method, what, code, details)
        assert details, (method, what)
        assert out == []

    # Replay: the token is spent by a first call (that does nothing harmful:
    # an empty request is refused or answered), then refused on the payload.
    metadata = raw.token(method)
    code, details, _ = raw.call(method, [b""], metadata, timeout=0.5, max_responses=1)
    assert code != grpc.StatusCode.UNAUTHENTICATED, (method, code, details)
    code, details, out = raw.call(method, payload, metadata)
    assert code == grpc.StatusCode.UNAUTHENTICATED, (method, "replay", code, details)
    assert "replayed" in details

    assert raw.jobs() == before_jobs
    assert [w.id for w in raw.workers()] == [w.id for w in before_workers]


PUBLIC_PAYLOADS: dict[str, Message] = {
    "/grpc.health.v1.Health/Check": health_pb2.HealthCheckRequest(service="kueue.v1.JobService"),
    "/grpc.health.v1.Health/List": health_pb2.HealthListRequest(),
    "/grpc.health.v1.Health/Watch": health_pb2.HealthCheckRequest(),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": reflection_pb2.ServerReflectionRequest(
        list_services=""
    ),
}
assert set(PUBLIC_PAYLOADS) == set(PUBLIC_METHODS)


@pytest.mark.parametrize("method", sorted(PUBLIC_METHODS))
def test_public_methods_answer_with_or_without_any_token(raw: Raw, method: str) -> None:
    """Health and reflection need no secret, and a bad token changes nothing."""
    payload = [PUBLIC_PAYLOADS[method].SerializeToString()]
    for what, metadata in {**bad_tokens(raw, method), "good": raw.token(method)}.items():
        code, details, out = raw.call(method, payload, metadata, timeout=5, max_responses=1)
        # Watch never ends by itself: cancelled after its first answer.
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED), (method, what, code, details)
        assert len(out) == 1, (method, what, out)


def test_unauthenticated_flood_is_refused_and_logged_sparingly(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c")
    try:
        cluster.start_server()
        raw = Raw(cluster)
        try:
            payload = jpb.SubmitJobsRequest(spec=good_spec()).SerializeToString()
            started = time.monotonic()
            for i in range(300):
                metadata = None if i % 2 else raw.token(SUBMIT, secret="wrong")
                code, _, _ = raw.call(SUBMIT, [payload], metadata)
                assert code == grpc.StatusCode.UNAUTHENTICATED
            elapsed = time.monotonic() - started
            assert raw.jobs() == []
            raw.assert_healthy()
        finally:
            raw.close()
        log = cluster.server_log()
        refused = [line for line in log.splitlines() if "refused" in line]
        # One warning, then at most one per 10 s with a count of the rest.
        assert 1 <= len(refused) <= 2 + int(elapsed / 10), "\n".join(refused)
        assert not any(" ERROR " in line or "Traceback" in line for line in log.splitlines()), log[-5000:]
    finally:
        cluster.close()


# ---------------------------------------------------------------- malformed requests


def submit(raw: Raw, request: jpb.SubmitJobsRequest) -> tuple[grpc.StatusCode, str]:
    code, details, _ = raw.call(SUBMIT, [request.SerializeToString()], raw.token(SUBMIT))
    return code, details


def res(**kw: Any) -> common.Resources:
    base = {"slots": 1, "cpus": 1, "ram_mb": 10}
    base.update(kw)
    return common.Resources(**base)


INVALID_SPECS: dict[str, tuple[grpc.StatusCode, common.JobSpec]] = {
    "no command": (INVALID, good_spec(command=[])),
    "empty program": (INVALID, good_spec(command=["", "x"])),
    "empty cwd": (INVALID, good_spec(cwd="")),
    "relative cwd": (INVALID, good_spec(cwd="tmp/x")),
    "dot cwd": (INVALID, good_spec(cwd="./x")),
    "zero slots": (INVALID, good_spec(resources=res(slots=0))),
    "huge slots": (INVALID, good_spec(resources=res(slots=2**32 - 1))),
    "huge cpus": (INVALID, good_spec(resources=res(cpus=2**32 - 1))),
    "huge ram": (INVALID, good_spec(resources=res(ram_mb=2**64 - 1))),
    "unknown resource": (INVALID, good_spec(resources=res(global_resources={"nope": 1}))),
    "empty resource name": (INVALID, good_spec(resources=res(global_resources={"": 1}))),
    "huge known resource": (
        INVALID,
        good_spec(resources=res(global_resources={"genus": 2**32 - 1})),
    ),
    "long relative cwd": (INVALID, good_spec(cwd="r" * 8000)),
    "long unknown resource name": (
        INVALID,
        good_spec(resources=res(global_resources={"n" * 100_000: 1})),
    ),
    "many unknown resources": (
        INVALID,
        good_spec(resources=res(global_resources={f"name{i:04}" * 8: 1 for i in range(5000)})),
    ),
    "oversize command": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        good_spec(command=["echo", "x" * (2 * 1024 * 1024)]),
    ),
    "oversize env": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        good_spec(env={f"V{i}": "y" * 1024 * 1024 for i in range(5)}),
    ),
    "oversize cwd": (grpc.StatusCode.RESOURCE_EXHAUSTED, good_spec(cwd="/" + "d" * (8 * 1024 * 1024))),
    "oversize user": (grpc.StatusCode.RESOURCE_EXHAUSTED, good_spec(user="u" * (8 * 1024 * 1024))),
    "oversize stdout path": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        good_spec(stdout_path="/" + "p" * (8 * 1024 * 1024)),
    ),
}


@pytest.mark.parametrize("what", sorted(INVALID_SPECS))
def test_invalid_submission_is_refused_whole(raw: Raw, what: str) -> None:
    expected, spec = INVALID_SPECS[what]
    before = raw.jobs()
    for instances in (0, 3):
        request = jpb.SubmitJobsRequest(spec=spec, instances=[jpb.JobInstance()] * instances)
        code, details = submit(raw, request)
        assert code == expected, (what, code, details)
        assert details
        code, details, _ = raw.call(
            "/kueue.v1.JobService/Attach",
            [jpb.AttachRequest(start=jpb.AttachStart(spec=spec)).SerializeToString()],
            raw.token("/kueue.v1.JobService/Attach"),
        )
        assert code == expected, (what, "attach", code, details)
    assert raw.jobs() == before


def test_oversize_arrays_are_refused_whole(raw: Raw) -> None:
    before = raw.jobs()
    million = jpb.SubmitJobsRequest(spec=good_spec(), instances=[jpb.JobInstance()] * 1_000_000)
    code, details = submit(raw, million)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert details
    # Bigger than the message limit: refused by gRPC itself.
    fat = jpb.SubmitJobsRequest(
        spec=good_spec(), instances=[jpb.JobInstance(env={"X": "z" * (1 << 20)}) for _ in range(70)]
    )
    code, details = submit(raw, fat)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    # An array whose instances together carry a huge environment.
    heavy = jpb.SubmitJobsRequest(
        spec=good_spec(), instances=[jpb.JobInstance(env={"X": "z" * (1 << 20)}) for _ in range(12)]
    )
    code, details = submit(raw, heavy)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    # One job's environment (spec plus instance) too large.
    big = jpb.SubmitJobsRequest(
        spec=good_spec(env={"A": "a" * (3 << 20)}), instances=[jpb.JobInstance(env={"B": "b" * (2 << 20)})]
    )
    code, details = submit(raw, big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert raw.jobs() == before


def test_unknown_ids_and_absurd_numbers(raw: Raw) -> None:
    job_id = jpb.SubmitJobsResponse.FromString(
        raw.ok_call(SUBMIT, jpb.SubmitJobsRequest(spec=good_spec()))
    ).job_ids[0]
    before = raw.jobs()
    unknown = [0, 2**63, 2**64 - 1, job_id + 10_000]
    for i in unknown:
        for method, request in (
            ("/kueue.v1.JobService/GetJob", jpb.GetJobRequest(id=i, tail_bytes=2**32 - 1)),
            ("/kueue.v1.JobService/CancelJob", jpb.CancelJobRequest(id=i, kill=True)),
            ("/kueue.v1.JobService/ReadOutput", jpb.ReadOutputRequest(id=i, offset=-(2**63), follow=True)),
        ):
            code, details, _ = raw.call(method, [request.SerializeToString()], raw.token(method))
            assert code == grpc.StatusCode.NOT_FOUND, (method, i, code, details)
            assert details
    for name in ("", "\0", "nope", "x" * 100_000):
        method = "/kueue.v1.ClusterService/GetWorker"
        code, details, _ = raw.call(
            method, [cpb.GetWorkerRequest(id=name).SerializeToString()], raw.token(method)
        )
        assert code == grpc.StatusCode.NOT_FOUND, (name[:10], code, details)

    # Unknown ids in a watch are reported as removed, once each.
    method = "/kueue.v1.JobService/WatchJobs"
    code, details, out = raw.call(
        method,
        [jpb.WatchJobsRequest(ids=[*unknown, unknown[0]]).SerializeToString()],
        raw.token(method),
        max_responses=len(unknown),
    )
    assert code == grpc.StatusCode.CANCELLED, (code, details)
    assert [jpb.WatchJobsResponse.FromString(b).removed_id for b in out] == unknown

    # Absurd but well-typed numbers on an existing job.
    for offset in (2**63 - 1, -(2**63), -1, 0):
        method = "/kueue.v1.JobService/ReadOutput"
        request = jpb.ReadOutputRequest(id=job_id, offset=offset, streams=[0, 1, 2, 99, -5])
        code, details, _ = raw.call(method, [request.SerializeToString()], raw.token(method))
        assert code == grpc.StatusCode.OK, (offset, code, details)
    method = "/kueue.v1.JobService/GetJob"
    code, details, _ = raw.call(
        method, [jpb.GetJobRequest(id=job_id, tail_bytes=2**32 - 1).SerializeToString()], raw.token(method)
    )
    assert code == grpc.StatusCode.OK, (code, details)
    for states, want in (
        ([99], grpc.StatusCode.INVALID_ARGUMENT),
        ([0], grpc.StatusCode.INVALID_ARGUMENT),
        ([-3, 1], grpc.StatusCode.INVALID_ARGUMENT),
        ([1, 2, 3, 4, 5, 6] * 1000, grpc.StatusCode.OK),
    ):
        request = jpb.ListJobsRequest(states=states, limit=2**32 - 1)
        code, details, _ = raw.call(LIST_JOBS, [request.SerializeToString()], raw.token(LIST_JOBS))
        assert code == want, (states, code, details)
        if want != grpc.StatusCode.OK:
            assert "unknown job state" in details
    assert raw.jobs() == before


def test_watch_list_refuses_unknown_states_and_clamps_numbers(raw: Raw) -> None:
    for states in ([99], [0], [-3, 1], [2**31 - 1]):
        request = jpb.WatchListRequest(states=states, limit=10)
        code, details, out = raw.call(WATCH_LIST, [request.SerializeToString()], raw.token(WATCH_LIST))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (states, code, details)
        assert "unknown job state" in details and out == []


def test_watch_list_clamps_absurd_numbers(tmp_path: Path) -> None:
    # A server of its own: the 1100 jobs it needs would burden the other tests.
    cluster = Cluster(tmp_path / "c")
    try:
        cluster.start_server()
        raw = Raw(cluster)
        try:
            submitted = jpb.SubmitJobsRequest(
                spec=good_spec(resources=res(cpus=10_000)), instances=[jpb.JobInstance()] * 1100
            )
            raw.ok_call(SUBMIT, submitted)
            # The first message comes at once, with at most 1000 jobs.
            for limit, interval in ((2**32 - 1, 2**32 - 1), (2**32 - 1, 1), (0, 0)):
                request = jpb.WatchListRequest(
                    states=[1, 2, 3, 4, 5, 6] * 1000,
                    limit=limit,
                    include_workers=True,
                    min_interval_ms=interval,
                )
                code, details, out = raw.call(
                    WATCH_LIST, [request.SerializeToString()], raw.token(WATCH_LIST), max_responses=1
                )
                assert code == grpc.StatusCode.CANCELLED, (limit, interval, code, details)
                first = jpb.WatchListResponse.FromString(out[0])
                assert len(first.jobs) == len(first.window_ids) == min(limit, 1000)
                assert first.matching == 1100 and first.HasField("workers")
            raw.assert_healthy()
        finally:
            raw.close()
    finally:
        cluster.close()


def test_attach_must_start_with_start(raw: Raw) -> None:
    before = raw.jobs()
    method = "/kueue.v1.JobService/Attach"
    for requests in (
        [],
        [jpb.AttachRequest(signal=2)],
        [jpb.AttachRequest(kill=True)],
        [jpb.AttachRequest(stdin=jpb.AttachStdin(attempt=1, offset=2**64 - 1, data=b"x"))],
        [jpb.AttachRequest()],
    ):
        code, details, _ = raw.call(method, [r.SerializeToString() for r in requests], raw.token(method))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (requests, code, details)
    assert raw.jobs() == before


# ---------------------------------------------------------------- worker stream


class FakeWorker:
    """A WorkerService.Connect stream driven by the test."""

    def __init__(self, raw: Raw, first: wpb.ConnectRequest) -> None:
        self._lock = threading.Condition()
        self._queue: list[wpb.ConnectRequest | None] = [first]
        self.received: list[wpb.ConnectResponse] = []
        stub = raw.channel.stream_stream(
            CONNECT,
            request_serializer=wpb.ConnectRequest.SerializeToString,
            response_deserializer=wpb.ConnectResponse.FromString,
        )
        self.call = stub(self._requests(), metadata=raw.token(CONNECT), timeout=60)
        self._got = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[wpb.ConnectRequest]:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue)
                msg = self._queue.pop(0)
            if msg is None:
                return
            yield msg

    def _read(self) -> None:
        try:
            for msg in self.call:
                with self._got:
                    self.received.append(msg)
                    self._got.notify_all()
        except grpc.RpcError:
            pass
        with self._got:
            self._got.notify_all()

    def send(self, *msgs: wpb.ConnectRequest) -> None:
        with self._lock:
            self._queue.extend(msgs)
            self._lock.notify_all()

    def wait(
        self, predicate: Callable[[wpb.ConnectResponse], bool], timeout: float = 15.0
    ) -> wpb.ConnectResponse:
        deadline = time.monotonic() + timeout
        with self._got:
            while True:
                for msg in self.received:
                    if predicate(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0 or self.call.done():
                    raise AssertionError(f"no such message; got {self.received}, {self.call.code()}")
                self._got.wait(left)

    def close(self) -> None:
        self.send(None)
        self.call.cancel()
        self._reader.join(10)


def test_connect_must_start_with_a_proper_register(raw: Raw) -> None:
    before = raw.workers()
    for requests in (
        [],
        [wpb.ConnectRequest()],
        [wpb.ConnectRequest(heartbeat=wpb.Heartbeat())],
        [wpb.ConnectRequest(finished=wpb.Finished(job_id=1, attempt=1, exit_code=0))],
        [wpb.ConnectRequest(output=wpb.Output(job_id=1, attempt=1, stream=1, data=b"x"))],
        [register(worker_id="")],
        [register(name="")],
    ):
        code, details, _ = raw.call(CONNECT, [r.SerializeToString() for r in requests], raw.token(CONNECT))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (requests, code, details)
        assert details
    assert [w.id for w in raw.workers()] == [w.id for w in before]


def nonsense_for(job_ids: list[int]) -> list[wpb.ConnectRequest]:
    out = []
    for job_id in job_ids:
        for attempt in (0, 1, 7, 2**32 - 1):
            out += [
                wpb.ConnectRequest(
                    output=wpb.Output(job_id=job_id, attempt=attempt, stream=s, offset=off, data=b"junk")
                )
                for s in (0, 1, 2, 99, -1)
                for off in (0, 2**63, 2**64 - 5)
            ]
            out += [
                wpb.ConnectRequest(
                    finished=wpb.Finished(
                        job_id=job_id,
                        attempt=attempt,
                        exit_code=-(2**31),
                        signal=2**31 - 1,
                        run_time_seconds=float("nan"),
                        peak_memory_bytes=2**64 - 1,
                        stdout_bytes=2**64 - 1,
                        error="e" * 1000,
                    )
                ),
                wpb.ConnectRequest(started=wpb.Started(job_id=job_id, attempt=attempt, pid=-1)),
                wpb.ConnectRequest(
                    assignment_reply=wpb.AssignmentReply(job_id=job_id, attempt=attempt, accepted=False)
                ),
                wpb.ConnectRequest(
                    assignment_reply=wpb.AssignmentReply(job_id=job_id, attempt=attempt, accepted=True)
                ),
                wpb.ConnectRequest(stdin_ack=wpb.StdinAck(job_id=job_id, attempt=attempt, offset=2**64 - 1)),
            ]
    return out


def test_worker_nonsense_changes_no_job(raw: Raw) -> None:
    # The fake worker has no slot: no job can be placed on it, so every message
    # about any job is nonsense from that worker.
    spec = good_spec(resources=res(ram_mb=1 << 30))
    reply = jpb.SubmitJobsResponse.FromString(raw.ok_call(SUBMIT, jpb.SubmitJobsRequest(spec=spec)))
    before = raw.jobs()
    ids = [j.id for j in before]
    fake = FakeWorker(raw, register(worker_id="nonsense-worker", name="nonsense", slots=0))
    try:
        fake.wait(lambda m: m.HasField("registered"))
        fake.send(*nonsense_for([*ids, reply.job_ids[0] + 1000, 2**64 - 1]))
        fake.send(
            register(worker_id="nonsense-worker-2", name="again"),
            wpb.ConnectRequest(),
            wpb.ConnectRequest(
                heartbeat=wpb.Heartbeat(
                    external_use=common.Resources(slots=2**32 - 1, cpus=2**32 - 1, ram_mb=2**64 - 1)
                )
            ),
        )
        # A heartbeat round trip through the whole queue: everything was handled.
        wait_for(
            lambda: any(w.name == "nonsense" and w.free.cpus == 0 for w in raw.workers()),
            15,
            "the nonsense to be processed",
        )
        raw.assert_healthy()
        assert not fake.call.done() or fake.call.code() is None, fake.call.code()
        after = raw.jobs()
        assert [(j.id, j.state, j.attempt, j.stdout_bytes, j.stderr_bytes) for j in after] == [
            (j.id, j.state, j.attempt, j.stdout_bytes, j.stderr_bytes) for j in before
        ]
        assert all(m.WhichOneof("msg") in ("registered", "finished_ack", "kill") for m in fake.received), [
            m for m in fake.received if m.WhichOneof("msg") not in ("registered", "finished_ack", "kill")
        ]
    finally:
        fake.close()
    method = "/kueue.v1.JobService/CancelJob"
    for job_id in reply.job_ids:
        raw.call(method, [jpb.CancelJobRequest(id=job_id).SerializeToString()], raw.token(method))


def test_worker_nonsense_about_its_own_attempt(raw: Raw) -> None:
    """Absurd offsets and unknown stream values for the attempt the worker
    really holds: refused or ignored, and the server stays sane."""
    log_start = len(raw.cluster.server_log())
    cancel_all(raw)
    fake = FakeWorker(raw, register(worker_id="holder-worker", name="holder", slots=1))
    try:
        fake.wait(lambda m: m.HasField("registered"))
        spec = good_spec(resources=res(cpus=1, ram_mb=1))
        job_id = jpb.SubmitJobsResponse.FromString(
            raw.ok_call(SUBMIT, jpb.SubmitJobsRequest(spec=spec))
        ).job_ids[0]
        assign = fake.wait(lambda m: m.HasField("assign") and m.assign.job_id == job_id).assign
        attempt = assign.attempt
        fake.send(
            wpb.ConnectRequest(
                assignment_reply=wpb.AssignmentReply(job_id=job_id, attempt=attempt, accepted=True)
            ),
            wpb.ConnectRequest(started=wpb.Started(job_id=job_id, attempt=attempt, pid=1234)),
            wpb.ConnectRequest(
                output=wpb.Output(job_id=job_id, attempt=attempt, stream=1, offset=0, data=b"ok\n")
            ),
        )
        fake.wait(lambda m: m.HasField("output_ack") and m.output_ack.offset == 3)
        fake.send(
            *[
                wpb.ConnectRequest(
                    output=wpb.Output(job_id=job_id, attempt=attempt, stream=s, offset=off, data=b"junk")
                )
                for s in (0, 99, -1, 1, 2)
                for off in (2**63, 2**64 - 2)
            ],
            wpb.ConnectRequest(stdin_ack=wpb.StdinAck(job_id=job_id, attempt=attempt, offset=2**64 - 1)),
            wpb.ConnectRequest(
                output=wpb.Output(job_id=job_id, attempt=attempt, stream=1, offset=3, data=b"ok\n")
            ),
        )
        fake.wait(lambda m: m.HasField("output_ack") and m.output_ack.offset == 6)
        raw.assert_healthy()
        job = next(j for j in raw.jobs() if j.id == job_id)
        assert job.state == common.JOB_STATE_RUNNING
        assert (job.stdout_bytes, job.stderr_bytes) == (6, 0)
        method = "/kueue.v1.JobService/ReadOutput"
        code, details, out = raw.call(
            method, [jpb.ReadOutputRequest(id=job_id, streams=[1, 2]).SerializeToString()], raw.token(method)
        )
        assert code == grpc.StatusCode.OK, (code, details)
        assert b"".join(jpb.ReadOutputResponse.FromString(b).data for b in out) == b"ok\nok\n"
        fake.send(
            wpb.ConnectRequest(
                finished=wpb.Finished(
                    job_id=job_id,
                    attempt=attempt,
                    exit_code=0,
                    stdout_bytes=6,
                    run_time_seconds=float("inf"),
                    peak_memory_bytes=2**64 - 1,
                )
            )
        )
        fake.wait(lambda m: m.HasField("finished_ack") and m.finished_ack.job_id == job_id)
        job = next(j for j in raw.jobs() if j.id == job_id)
        assert job.state == common.JOB_STATE_SUCCEEDED
        assert job.exit_code == 0
        raw.assert_healthy()
        log = raw.cluster.server_log()[log_start:]
        assert "store commit failed" not in log and "Traceback" not in log, log[-5000:]
    finally:
        fake.close()


# ---------------------------------------------------------------- fuzzing

INT_RANGES = {
    gdesc.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    gdesc.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    gdesc.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    gdesc.FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    gdesc.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    gdesc.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    gdesc.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    gdesc.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    gdesc.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    gdesc.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    gdesc.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: gdesc.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return st.one_of(st.sampled_from([lo, hi, 0, 1, 2, -1 if lo < 0 else 3]), st.integers(lo, hi))
    if t == gdesc.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (gdesc.FieldDescriptor.TYPE_DOUBLE, gdesc.FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if t == gdesc.FieldDescriptor.TYPE_FLOAT else 64)
    if t == gdesc.FieldDescriptor.TYPE_STRING:
        return st.one_of(st.text(max_size=20), st.sampled_from(["/", "/tmp", "genus", "..", "\0", "true"]))
    if t == gdesc.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    raise AssertionError(f"unexpected field type {t}")


def _fill(draw: Any, message: Message, depth: int) -> Message:
    for field in message.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, value_f = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            target = getattr(message, field.name)
            for _ in range(draw(st.integers(0, 3))):
                key = draw(_scalar(key_f))
                target[key] = draw(_scalar(value_f))
        elif field.message_type is not None:
            if depth <= 0:
                continue
            if field.is_repeated:
                for _ in range(draw(st.integers(0, 3))):
                    _fill(draw, getattr(message, field.name).add(), depth - 1)
            else:
                getattr(message, field.name).SetInParent()
                _fill(draw, getattr(message, field.name), depth - 1)
        elif field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=4)))
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


@st.composite
def nonsense(draw: Any, cls: type[Message]) -> bytes:
    return _fill(draw, cls(), 3).SerializeToString()


@st.composite
def plausible_spec(draw: Any) -> common.JobSpec:
    """A good spec with random fields merged over it: often valid."""
    spec = good_spec()
    spec.MergeFromString(draw(nonsense(common.JobSpec)))
    return spec


@st.composite
def plausible_first(draw: Any, method: str) -> bytes:
    if method == SUBMIT:
        return jpb.SubmitJobsRequest(spec=draw(plausible_spec())).SerializeToString()
    if method == "/kueue.v1.JobService/Attach":
        start = jpb.AttachStart(spec=draw(plausible_spec()), kill_on_detach=draw(st.booleans()))
        return jpb.AttachRequest(start=start).SerializeToString()
    if method == CONNECT:
        msg = register(
            worker_id=f"fuzz-{draw(st.integers(0, 3))}", name="fuzz", slots=draw(st.integers(0, 4))
        )
        msg.register.MergeFromString(draw(nonsense(wpb.Register)))
        return msg.SerializeToString()
    return draw(nonsense(KINDS[method][0]))


def requests_for(method: str) -> st.SearchStrategy[list[bytes]]:
    cls, client_streaming, _ = KINDS[method]
    one = st.one_of(st.binary(max_size=200), nonsense(cls))
    first = st.one_of(one, plausible_first(method))
    if client_streaming:
        return st.builds(lambda a, b: [a, *b], first, st.lists(one, max_size=6)) | st.just([])
    return st.lists(first, min_size=1, max_size=1)


ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def undecodable(method: str, code: grpc.StatusCode, details: str) -> bool:
    """grpcio's own answer to a unary request that does not parse: it never
    reaches the interceptor's verdict or a handler (see
    test_undecodable_unary_requests_are_refused_cleanly)."""
    return (
        not KINDS[method][1]
        and code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
        and "DecodeError" in details
    )


def error_lines(log: str) -> list[str]:
    """ERROR lines of the server log, but grpcio's per-call complaint about an
    undecodable unary request (see test_undecodable_unary_requests_are_refused_cleanly)."""
    return [
        line
        for line in log.splitlines()
        if " ERROR " in line and "Unexpected [DecodeError] raised by servicer method" not in line
    ]


@pytest.mark.parametrize("method", sorted(KINDS))
def test_fuzz_every_method(raw: Raw, method: str) -> None:
    log_start = len(raw.cluster.server_log())
    _, _, server_streaming = KINDS[method]
    examples = 40 if server_streaming else 60
    seen: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(requests=requests_for(method), authed=st.sampled_from([True, True, True, False]))
    def run(requests: list[bytes], authed: bool) -> None:
        metadata = raw.token(method) if authed else None
        # A refusal comes back at once, so an unauthenticated call may wait for
        # it as long as a loaded machine needs; an accepted stream stays open,
        # so it is cut short (DEADLINE_EXCEEDED is allowed for it).
        refused = not authed and method not in PUBLIC_METHODS
        timeout = 10 if refused else 0.3
        code, details, _ = raw.call(method, requests, metadata, timeout=timeout, max_responses=2)
        seen[code.name] += 1
        if undecodable(method, code, details):
            return
        if refused:
            assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
        else:
            assert code in ALLOWED, (method, code, details)

    try:
        run()
    finally:
        cancel_all(raw)  # leave nothing for the next test to trip on
    print(method, dict(seen))
    assert sum(seen.values()) >= examples // 2, seen
    raw.assert_healthy()
    errors = error_lines(raw.cluster.server_log()[log_start:])
    assert not errors, "\n".join(errors[:20])


def test_undecodable_unary_requests_are_refused_cleanly(raw: Raw) -> None:
    log_start = len(raw.cluster.server_log())
    for method, (_, client_streaming, _) in sorted(METHODS.items()):
        if client_streaming:
            continue
        code, details, _ = raw.call(method, [b"\x00"], None, timeout=2)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method, code, details)
        code, details, _ = raw.call(method, [b"\x00"], raw.token(method), timeout=2)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
    for method, (_, client_streaming, _) in sorted(PUBLIC_METHODS.items()):
        if not client_streaming:
            code, details, _ = raw.call(method, [b"\x00"], None, timeout=2)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
    log = raw.cluster.server_log()[log_start:]
    assert " ERROR " not in log and "Traceback" not in log, log[-5000:]


def test_undecodable_stream_messages_are_refused_cleanly(raw: Raw) -> None:
    log_start = len(raw.cluster.server_log())
    before_jobs, before_workers = raw.jobs(), raw.workers()
    for method in ("/kueue.v1.JobService/Attach", CONNECT):
        for requests in ([b"\x00"], [b"\xff" * 10, b"\x00"]):
            code, details, _ = raw.call(method, requests, raw.token(method), timeout=5)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
    # A worker that registers and then sends garbage is dropped cleanly.
    code, details, _ = raw.call(
        CONNECT, [register("garbler", "garbler").SerializeToString(), b"\x00"], raw.token(CONNECT), timeout=5
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert not any(w.connected and w.name == "garbler" for w in raw.workers())
    assert raw.jobs() == before_jobs
    assert {w.id for w in raw.workers()} - {w.id for w in before_workers} <= {"garbler"}
    log = raw.cluster.server_log()[log_start:]
    assert " ERROR " not in log and "Traceback" not in log, log[-5000:]


# ---------------------------------------------------------------- garbage peers


def test_garbage_tcp_peers_do_not_wedge_the_server(raw: Raw) -> None:
    port = raw.cluster.port
    socks = []
    try:
        for payload in (
            b"",
            b"\x00" * 10,
            bytes(range(256)) * 8,
            b"GET / HTTP/1.1\r\nHost: x\r\n",  # half-open: no blank line
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # preface, then nothing
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64,
            b"POST /kueue.v1.JobService/ListJobs HTTP/1.1\r\nContent-Length: 100000\r\n\r\nabc",
        ):
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if payload:
                    s.sendall(payload)
                socks.append(s)
        raw.assert_healthy(within=5.0)
        # A separate channel, opened while the garbage connections are open.
        other = Raw(raw.cluster)
        try:
            other.assert_healthy(within=5.0)
        finally:
            other.close()
    finally:
        for s in socks:
            s.close()
    raw.assert_healthy()


def test_batches_are_handled_in_order_and_nesting_is_refused(raw: Raw) -> None:
    """A batch is its messages in order; a batch holding a batch or a
    Register drops the stream, and the server stays sane. A worker that did
    not say it reads batches gets none."""
    cancel_all(raw)
    fake = FakeWorker(raw, register(worker_id="batching-worker", name="batcher", slots=1))
    try:
        fake.wait(lambda m: m.HasField("registered"))
        assert fake.received[0].registered.batches
        spec = good_spec(resources=res(cpus=1, ram_mb=1))
        job_id = jpb.SubmitJobsResponse.FromString(
            raw.ok_call(SUBMIT, jpb.SubmitJobsRequest(spec=spec))
        ).job_ids[0]
        attempt = fake.wait(lambda m: m.HasField("assign") and m.assign.job_id == job_id).assign.attempt
        batch = wpb.ConnectRequestBatch(
            messages=[
                wpb.ConnectRequest(started=wpb.Started(job_id=job_id, attempt=attempt, pid=1234)),
                wpb.ConnectRequest(
                    output=wpb.Output(job_id=job_id, attempt=attempt, stream=1, offset=0, data=b"ok\n")
                ),
                wpb.ConnectRequest(
                    finished=wpb.Finished(job_id=job_id, attempt=attempt, exit_code=0, stdout_bytes=3)
                ),
            ]
        )
        fake.send(wpb.ConnectRequest(batch=batch))
        fake.wait(lambda m: m.HasField("finished_ack") and m.finished_ack.job_id == job_id)
        job = next(j for j in raw.jobs() if j.id == job_id)
        assert (job.state, job.stdout_bytes) == (common.JOB_STATE_SUCCEEDED, 3)
        assert not any(m.HasField("batch") for m in fake.received)
        nested = wpb.ConnectRequestBatch(messages=[wpb.ConnectRequest(batch=batch)])
        fake.send(wpb.ConnectRequest(batch=nested))
        wait_for(fake.call.done, 30, "the stream to be dropped")
        assert fake.call.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        fake.close()
    fake = FakeWorker(raw, register(worker_id="batching-worker-2", name="batcher2", slots=1))
    try:
        fake.wait(lambda m: m.HasField("registered"))
        fake.send(wpb.ConnectRequest(batch=wpb.ConnectRequestBatch(messages=[register()])))
        wait_for(fake.call.done, 30, "the stream to be dropped")
        assert fake.call.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        fake.close()
    raw.assert_healthy()
