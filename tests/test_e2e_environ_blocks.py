"""The server sends a job's environment as one block (Assign.environ) only to
a worker that registered Register.environ_blocks, and as the spec's map to
any other. A real server; the workers are raw Connect streams, so that the
Assign can be read as it arrives."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kueue import rpc
from kueue.v1 import common_pb2, worker_service_pb2_grpc
from kueue.v1 import worker_service_pb2 as wpb
from kueue_client.spec import job_spec
from tests.cluster import Cluster

SYSTEM = common_pb2.SystemInfo(hostname="raw", kernel="test", cpu_cores=2, memory_total_mb=4096)


async def first_assign(cluster: Cluster, environ_blocks: bool, env: dict[str, str]) -> wpb.Assign:
    """Register a raw worker, submit one job with `env`, and return its Assign."""
    channel = rpc.aio_channel(f"127.0.0.1:{cluster.port}", rpc.CHANNEL_OPTIONS, None)
    try:
        stub = rpc.AuthedStub(
            worker_service_pb2_grpc.WorkerServiceStub(channel), "kueue.v1.WorkerService", cluster.secret
        )
        call = stub.Connect()
        await call.write(
            wpb.ConnectRequest(
                register=wpb.Register(
                    worker_id=uuid.uuid4().hex,
                    name="raw",
                    system=SYSTEM,
                    capacity=common_pb2.Resources(slots=1, cpus=2, ram_mb=4096),
                    version="test",
                    environ_blocks=environ_blocks,
                )
            )
        )
        async with asyncio.timeout(60):
            registered = await call.read()
            assert registered.WhichOneof("msg") == "registered"
            spec = job_spec(["true"], cpus=0, ram_mb=0, cwd="/tmp", env=env)
            with cluster.client() as client:
                await asyncio.to_thread(client.submit, spec)
            while True:
                msg = await call.read()
                assert isinstance(msg, wpb.ConnectResponse), msg  # not the end of the stream
                if msg.WhichOneof("msg") == "assign":
                    call.cancel()
                    return msg.assign
    finally:
        await channel.close()


@pytest.mark.parametrize("environ_blocks", [True, False])
def test_the_server_sends_an_environment_block_only_to_workers_that_take_one(
    cluster: Cluster, environ_blocks: bool
) -> None:
    cluster.start_server()
    env = {"ONE": "1", "SPACED": "a b"}
    assign = asyncio.run(first_assign(cluster, environ_blocks, env))
    if environ_blocks:
        assert not assign.spec.env
        entries = assign.environ.split(b"\0")
        assert entries.pop() == b""  # each entry ends with a NUL
        # The spec's PWD (its cwd) is the worker's to set (convert.WORKER_SETS): not in the block.
        assert sorted(entries) == [b"ONE=1", b"SPACED=a b"]
    else:
        assert assign.environ == b""
        assert dict(assign.spec.env) == {**env, "PWD": "/tmp"}
