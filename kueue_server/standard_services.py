"""The standard gRPC services beside kueue.v1: health checking
(grpc.health.v1.Health) and server reflection, so that load balancers and
grpcurl-style tools work with the server.

Both answer without the shared secret (see PUBLIC_SERVICES): health says only
whether the server serves, and reflection describes the public protos/ files.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kueue.v1 import cluster_service_pb2, job_service_pb2, worker_service_pb2

KUEUE_SERVICES = tuple(
    service.full_name
    for module in (job_service_pb2, cluster_service_pb2, worker_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# grpcurl and other reflection clients try v1 first and fall back to v1alpha,
# the only version grpcio-reflection serves.
REFLECTION_SERVICE = reflection.SERVICE_NAME
PUBLIC_SERVICES = frozenset({HEALTH_SERVICE, REFLECTION_SERVICE})

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health(health.aio.HealthServicer):
    """grpcio's health servicer, starting NOT_SERVING, with `List` too."""

    def __init__(self) -> None:
        super().__init__()
        # grpcio's servicer starts with the server SERVING; ours is not yet.
        self._server_status = {name: NOT_SERVING for name in ("", *KUEUE_SERVICES)}
        # Status changes in progress (kept referenced until done).
        self._updates: set[asyncio.Future[None]] = set()

    async def serving(self) -> None:
        """The store is open and the server listens: every service serves."""
        for name in ("", *KUEUE_SERVICES):
            await self.set(name, SERVING)

    async def not_serving(self) -> None:
        """The store fails its commits: reads work, but no change can be kept."""
        for name in ("", *KUEUE_SERVICES):
            await self.set(name, NOT_SERVING)

    def follow_store(self, ok: bool) -> None:
        """App.on_store_health: NOT_SERVING while the store fails, SERVING again after."""
        task = asyncio.ensure_future(self.serving() if ok else self.not_serving())
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._server_status.items()
            }
        )


def add_standard_services(server: Any) -> Health:
    """Add health and reflection to a grpc.aio server (before it starts)."""
    servicer = Health()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection((*KUEUE_SERVICES, HEALTH_SERVICE, REFLECTION_SERVICE), server)
    return servicer
