"""kueue.v1.JobService: what clients call."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable

import grpc
from google.protobuf.message import DecodeError

from kueue import rpc, status_details
from kueue.v1 import job_service_pb2 as jpb
from kueue.v1 import job_service_pb2_grpc
from kueue_server import convert, limits, list_watch, output_files
from kueue_server.app import App
from kueue_server.attach import AttachSession
from kueue_server.convert import summary_message
from kueue_server.model import FINAL, JobRecord, State
from kueue_server.scheduler import Scheduler, SchedulerError
from kueue_server.store import StoreError
from kueue_server.watchers import StreamsClosed

log = logging.getLogger("kueue_server")

READ_CHUNK = 1024 * 1024
DEFAULT_TAIL = 4096


# An error message travels in a trailer, which gRPC caps at 8 KiB with the
# other headers: one that quotes a huge field would turn into "stream
# removed (metadata size exceeds soft limit)" instead.
MAX_ERROR_CHARS = 1000


def clipped(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


async def abort_on(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, SchedulerError):
        await context.abort(getattr(grpc.StatusCode, exc.code), clipped(str(exc)))
    if isinstance(exc, StoreError):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.out_of_space else grpc.StatusCode.INTERNAL
        await context.abort(code, clipped(str(exc)))
    raise exc


class JobService(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, app: App) -> None:
        self.app = app

    async def SubmitJobs(
        self, request: jpb.SubmitJobsRequest, context: grpc.aio.ServicerContext
    ) -> jpb.SubmitJobsResponse:
        try:
            envs = [rpc.str_map(i.env) for i in request.instances]
            limits.check_instance_envs(request.spec, envs)
            jobs, warnings = await self.app.submit(request.spec, envs or None)
        except (SchedulerError, StoreError) as exc:
            await abort_on(context, exc)
        return jpb.SubmitJobsResponse(job_ids=[job.id for job in jobs], warnings=warnings)

    async def Attach(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        try:
            first = await context.read()
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed AttachRequest")
        if first is grpc.aio.EOF or first.WhichOneof("msg") != "start":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first Attach message must be start")
        try:
            await AttachSession(self.app, context).run(first)
        except (SchedulerError, StoreError) as exc:
            await abort_on(context, exc)
        except StreamsClosed:
            await _stopping(context)

    async def ListJobs(
        self, request: jpb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> jpb.ListJobsResponse:
        sched = self.app.scheduler
        states = await _states(request.states, context)
        jobs = sched.recent(states, request.limit)
        jobs.reverse()
        return jpb.ListJobsResponse(
            jobs=[convert.job_message(j, include_env=request.include_env) for j in jobs],
            summary=summary_message(*sched.summary()),
            matching=sched.matching(states),
        )

    async def GetJob(
        self, request: jpb.GetJobRequest, context: grpc.aio.ServicerContext
    ) -> jpb.GetJobResponse:
        job = self.app.scheduler.jobs.get(request.id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.id}")
        tail = min(request.tail_bytes or DEFAULT_TAIL, READ_CHUNK)
        root = self.app.store.output_root
        out = err = b""
        if job.stdout_bytes:
            _, out = await asyncio.to_thread(
                output_files.read,
                root,
                job.id,
                job.attempt,
                1,
                job.stdout_bytes - tail,
                job.stdout_bytes,
                tail,
            )
        if job.stderr_bytes:
            _, err = await asyncio.to_thread(
                output_files.read,
                root,
                job.id,
                job.attempt,
                2,
                job.stderr_bytes - tail,
                job.stderr_bytes,
                tail,
            )
        return jpb.GetJobResponse(
            job=convert.job_message(job, include_env=True, include_attempts=True),
            stdout_tail=out,
            stderr_tail=err,
        )

    async def CancelJob(
        self, request: jpb.CancelJobRequest, context: grpc.aio.ServicerContext
    ) -> jpb.CancelJobResponse:
        app = self.app
        try:
            job = app.scheduler.cancel(request.id, request.kill, app.clock())
            await app.commit()
        except (SchedulerError, StoreError) as exc:
            await abort_on(context, exc)
        log.info("job %d cancel requested (kill=%s)", job.id, request.kill)
        return jpb.CancelJobResponse(job=convert.job_message(job))

    async def CleanJobs(
        self, request: jpb.CleanJobsRequest, context: grpc.aio.ServicerContext
    ) -> jpb.CleanJobsResponse:
        app = self.app
        try:
            removed = app.scheduler.clean(request.all)
            await app.commit()
        except StoreError as exc:
            await abort_on(context, exc)
        return jpb.CleanJobsResponse(removed=len(removed))

    async def WatchJobs(
        self, request: jpb.WatchJobsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jpb.WatchJobsResponse]:
        sched = self.app.scheduler
        ids = list(dict.fromkeys(request.ids)) if request.ids else None
        watch = self.app.watchers.add(ids)
        try:
            for job_id in ids or ():
                yield _watch_message(sched, job_id)
            while True:
                await watch.event.wait()
                if watch.closed:
                    await _stopping(context)
                for job_id in watch.take():
                    yield _watch_message(sched, job_id)
        finally:
            self.app.watchers.remove(watch)

    async def WatchList(
        self, request: jpb.WatchListRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jpb.WatchListResponse]:
        states = await _states(request.states, context)
        try:
            async for msg in list_watch.stream(self.app, list_watch.Params.of(request, states)):
                yield msg
        except StreamsClosed:
            await _stopping(context)

    async def ReadOutput(
        self, request: jpb.ReadOutputRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jpb.ReadOutputResponse]:
        app = self.app
        job = app.scheduler.jobs.get(request.id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.id}")
        streams = [s for s in request.streams if s in (1, 2)] or [1]
        watch = app.watchers.add([request.id]) if request.follow else None
        attempt = job.attempt
        positions = {s: _start(request.offset, _size(job, s)) for s in streams}
        try:
            while True:
                job = app.scheduler.jobs.get(request.id)
                if job is None:
                    return
                if job.attempt != attempt:
                    # A new attempt restarts the streams from their beginning.
                    attempt = job.attempt
                    positions = dict.fromkeys(streams, 0)
                done = job.state in FINAL
                progressed = False
                for stream in streams:
                    end = _size(job, stream)
                    while positions[stream] < end:
                        start, data = await asyncio.to_thread(
                            output_files.read,
                            app.store.output_root,
                            job.id,
                            attempt,
                            stream,
                            positions[stream],
                            end,
                            READ_CHUNK,
                        )
                        if not data:
                            break
                        positions[stream] = start + len(data)
                        progressed = True
                        yield jpb.ReadOutputResponse(stream=stream, offset=start, data=data)
                if watch is None or (done and not progressed):
                    if watch is not None:
                        yield jpb.ReadOutputResponse(finished_job=convert.job_message(job))
                    return
                if not done:
                    await watch.event.wait()
                    if watch.closed:
                        await _stopping(context)
                    watch.take()
        finally:
            if watch is not None:
                app.watchers.remove(watch)


async def _stopping(context: grpc.aio.ServicerContext) -> None:
    """End a watching stream: the server is stopping (the client may ask again later)."""
    await context.abort(grpc.StatusCode.UNAVAILABLE, status_details.CLIENT_STREAM_STOPPING)


async def _states(values: Iterable[int], context: grpc.aio.ServicerContext) -> frozenset[State] | None:
    """A state filter (None: all states); unknown values are refused."""
    unknown = sorted({s for s in values if s not in State._value2member_map_})
    if unknown:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown job state(s) {unknown}; valid: " + ", ".join(f"{s.value} ({s.name})" for s in State),
        )
    return frozenset(State(s) for s in values) or None


def _size(job: JobRecord, stream: int) -> int:
    return job.stdout_bytes if stream == 1 else job.stderr_bytes


def _start(offset: int, size: int) -> int:
    return max(0, size + offset) if offset < 0 else offset


def _watch_message(sched: Scheduler, job_id: int) -> jpb.WatchJobsResponse:
    job = sched.jobs.get(job_id)
    if job is None:
        return jpb.WatchJobsResponse(removed=True, removed_id=job_id)
    return jpb.WatchJobsResponse(job=convert.job_message(job))
