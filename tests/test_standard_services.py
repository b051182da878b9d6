"""The standard gRPC health and reflection services of a real server, called
without the shared secret through their own generated stubs."""

from __future__ import annotations

import queue
import signal
import threading

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kueue.v1 import job_service_pb2 as jpb
from tests.cluster import Cluster

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
KUEUE_SERVICES = ["kueue.v1.ClusterService", "kueue.v1.JobService", "kueue.v1.WorkerService"]


def channel(cluster: Cluster) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{cluster.port}")


def test_health_check_says_serving_without_a_secret(cluster: Cluster) -> None:
    cluster.start_server()
    with channel(cluster) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ["", *KUEUE_SERVICES]:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == SERVING, service
        try:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
            raise AssertionError("an unknown service must be NOT_FOUND")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
        listed = health.List(health_pb2.HealthListRequest(), timeout=10)
        assert {name: s.status for name, s in listed.statuses.items()} == {
            name: SERVING for name in ["", *KUEUE_SERVICES]
        }
        # The secret is still needed for everything else.
        try:
            jpb_stub = ch.unary_unary(
                "/kueue.v1.JobService/ListJobs",
                request_serializer=jpb.ListJobsRequest.SerializeToString,
                response_deserializer=jpb.ListJobsResponse.FromString,
            )
            jpb_stub(jpb.ListJobsRequest(), timeout=10)
            raise AssertionError("ListJobs without a token must be refused")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_watch_sees_not_serving_when_the_server_stops(cluster: Cluster) -> None:
    cluster.start_server()
    statuses: queue.Queue[object] = queue.Queue()
    with channel(cluster) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)

        def read() -> None:
            try:
                for reply in watch:
                    statuses.put(reply.status)
            except grpc.RpcError as exc:
                statuses.put(exc.code())
            statuses.put("end")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert statuses.get(timeout=30) == SERVING
        assert cluster.server is not None
        cluster.server.send_signal(signal.SIGTERM)
        assert statuses.get(timeout=30) == NOT_SERVING
        # The stream then ends (server gone); nothing says SERVING again.
        rest = [statuses.get(timeout=30)]
        while rest[-1] != "end":
            rest.append(statuses.get(timeout=30))
        assert SERVING not in rest, rest
        reader.join(timeout=10)
    assert cluster.server.wait(timeout=30) == 0


def _reflect(ch: grpc.Channel, *requests: reflection_pb2.ServerReflectionRequest) -> list:
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    return list(stub.ServerReflectionInfo(iter(requests), timeout=10))


def test_reflection_lists_and_describes_the_kueue_services(cluster: Cluster) -> None:
    cluster.start_server()
    with channel(cluster) as ch:
        (listing,) = _reflect(ch, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = sorted(s.name for s in listing.list_services_response.service)
        assert names == sorted(
            [*KUEUE_SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
        )

        (described,) = _reflect(
            ch, reflection_pb2.ServerReflectionRequest(file_containing_symbol="kueue.v1.JobService")
        )
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in described.file_descriptor_response.file_descriptor_proto
        ]
        by_name = {f.name: f for f in files}
        assert "kueue/v1/job_service.proto" in by_name, sorted(by_name)
        (service,) = by_name["kueue/v1/job_service.proto"].service
        assert service.name == "JobService"
        assert {m.name for m in service.method} >= {"SubmitJobs", "ListJobs", "WatchJobs"}
