"""kueue.v1.ClusterService: read-only views of workers and global resources."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc

import kueue
from kueue.v1 import cluster_service_pb2 as cpb
from kueue.v1 import cluster_service_pb2_grpc, common_pb2
from kueue_server import convert
from kueue_server.app import App
from kueue_server.job_service import abort_on
from kueue_server.model import WorkerRecord
from kueue_server.scheduler import SchedulerError
from kueue_server.store import StoreError

log = logging.getLogger("kueue_server")


def find_worker(workers: Mapping[str, WorkerRecord], id_or_name: str) -> WorkerRecord:
    """The worker an operator means by an id, a name or an id's start
    (SchedulerError if none, or several connected ones). The server remembers
    a worker that came back under a new id (its id file lost) by both
    records: the connected one is meant."""
    if id_or_name in workers:
        return workers[id_or_name]
    shown = repr(id_or_name[:200])
    for matches in (
        [w for w in workers.values() if w.name == id_or_name],
        [w for w in workers.values() if id_or_name and w.id.startswith(id_or_name)],
    ):
        if len(matches) > 1:
            connected = [w for w in matches if w.connected]
            if len(connected) == 1:
                return connected[0]
            if not connected:
                return max(matches, key=lambda w: w.last_seen)
            ids = ", ".join(sorted(w.id for w in connected))
            raise SchedulerError(
                "INVALID_ARGUMENT", f"several connected workers match {shown} (ids {ids}); give the whole id"
            )
        if matches:
            return matches[0]
    raise SchedulerError("NOT_FOUND", f"no worker {shown}")


class ClusterService(cluster_service_pb2_grpc.ClusterServiceServicer):
    def __init__(self, app: App) -> None:
        self.app = app

    async def ListWorkers(
        self, request: cpb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ListWorkersResponse:
        workers = [
            w
            for w in self.app.scheduler.workers.values()
            # One gone quiet with jobs still on it is part of what runs where.
            if w.connected or w.jobs or (request.include_disconnected and w.capacity.slots)
        ]
        workers.sort(key=lambda w: w.name)
        return cpb.ListWorkersResponse(workers=[convert.worker_message(w) for w in workers])

    async def _find(self, id_or_name: str, context: grpc.aio.ServicerContext) -> WorkerRecord:
        try:
            return find_worker(self.app.scheduler.workers, id_or_name)
        except SchedulerError as exc:
            await abort_on(context, exc)
            raise

    async def DrainWorker(
        self, request: cpb.DrainWorkerRequest, context: grpc.aio.ServicerContext
    ) -> cpb.DrainWorkerResponse:
        worker = await self._find(request.id, context)
        self.app.scheduler.drain(worker.id, request.drain)
        self.app.observer.worker_drained(worker, request.drain)
        try:
            await self.app.commit()  # a drain outlives a restart of the server
        except StoreError as exc:
            await abort_on(context, exc)
        return cpb.DrainWorkerResponse(worker=convert.worker_message(worker))

    async def GetWorker(
        self, request: cpb.GetWorkerRequest, context: grpc.aio.ServicerContext
    ) -> cpb.GetWorkerResponse:
        worker = await self._find(request.id, context)
        jobs = [convert.job_message(self.app.scheduler.jobs[j]) for j in sorted(worker.jobs)]
        return cpb.GetWorkerResponse(worker=convert.worker_message(worker), jobs=jobs)

    async def ListResources(
        self, request: cpb.ListResourcesRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ListResourcesResponse:
        sched = self.app.scheduler
        return cpb.ListResourcesResponse(
            resources=[
                common_pb2.GlobalResource(name=name, total=total, used=sched.global_used[name])
                for name, total in sorted(sched.limits.global_resources.items())
            ]
        )

    async def GetServerInfo(
        self, request: cpb.GetServerInfoRequest, context: grpc.aio.ServicerContext
    ) -> cpb.GetServerInfoResponse:
        app = self.app
        return cpb.GetServerInfoResponse(
            version=kueue.__version__,
            server_name=app.config.common_settings.server_name,
            uptime_seconds=app.clock() - app.started_at,
        )
