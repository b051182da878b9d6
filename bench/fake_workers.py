"""Many worker connections in one process, speaking the real WorkerService
protocol (see protos/kueue/v1/worker_service.proto), for the benchmarks of
queue scale and many workers.

Each FakeWorker opens its own Connect stream (over one shared channel, as
separate HTTP/2 streams), registers with its own id, sends a heartbeat every
`heartbeat_seconds`, accepts every assignment, and either finishes it at once
(exit code 0: measures the server alone) or really runs the job's command
(spawned without a shell, waited for on a pidfd) before reporting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import grpc

from kueue import rpc
from kueue.v1 import common_pb2, worker_service_pb2_grpc
from kueue.v1 import worker_service_pb2 as wpb

SYSTEM = common_pb2.SystemInfo(
    hostname="fake", kernel="bench", distribution="bench", cpu_cores=2, memory_total_mb=4096
)


async def _exit_status(proc: subprocess.Popen[bytes]) -> int:
    """The process's exit status, awaited on its pidfd (no thread per job)."""
    if (code := proc.poll()) is not None:
        return code
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3
        return await asyncio.to_thread(proc.wait)
    loop = asyncio.get_running_loop()
    try:
        while (code := proc.poll()) is None:
            exited = loop.create_future()
            loop.add_reader(pidfd, lambda f=exited: f.done() or f.set_result(None))
            try:
                await exited
            finally:
                loop.remove_reader(pidfd)
        return code
    finally:
        os.close(pidfd)


@dataclass
class Counters:
    assigned: int = 0
    finished: int = 0
    acked: int = 0
    first_assign: float | None = None
    # perf_counter() at each acknowledged finish, in order.
    ack_times: list[float] = field(default_factory=list)


class FakeWorker:
    def __init__(
        self,
        stub: rpc.AuthedStub,
        name: str,
        *,
        slots: int,
        run_jobs: bool,
        heartbeat_seconds: float = 1.0,
        counters: Counters | None = None,
    ) -> None:
        self.stub = stub
        self.name = name
        self.worker_id = uuid.uuid4().hex
        self.slots = slots
        self.run_jobs = run_jobs
        self.heartbeat_seconds = heartbeat_seconds
        self.counters = counters or Counters()
        self.registered = asyncio.Event()
        self.draining = False
        self._call: grpc.aio.StreamStreamCall | None = None
        self._outbox: asyncio.Queue[wpb.ConnectRequest | None] = asyncio.Queue()
        self._jobs: set[asyncio.Task[None]] = set()
        self._open = 0

    def send(self, **msg: object) -> None:
        self._outbox.put_nowait(wpb.ConnectRequest(**msg))

    async def run(self) -> None:
        call = self.stub.Connect()
        self._call = call
        self.send(
            register=wpb.Register(
                worker_id=self.worker_id,
                name=self.name,
                system=SYSTEM,
                capacity=common_pb2.Resources(slots=self.slots, cpus=2, ram_mb=4096),
                version="bench",
            )
        )
        tasks = [asyncio.create_task(self._write(call)), asyncio.create_task(self._read(call))]
        try:
            await asyncio.gather(*tasks)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            for task in [*tasks, *self._jobs]:
                task.cancel()
            call.cancel()

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        while (msg := await self._outbox.get()) is not None:
            await call.write(msg)
        await call.done_writing()

    async def _heartbeats(self) -> None:
        while True:
            self.send(heartbeat=wpb.Heartbeat(system=SYSTEM, draining=self.draining))
            await asyncio.sleep(self.heartbeat_seconds)

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        heartbeats: asyncio.Task[None] | None = None
        try:
            async for msg in call:
                kind = msg.WhichOneof("msg")
                if kind == "registered":
                    self.registered.set()
                    heartbeats = asyncio.create_task(self._heartbeats())
                elif kind == "assign":
                    self._assigned(msg.assign)
                elif kind == "finished_ack":
                    c = self.counters
                    c.acked += 1
                    c.ack_times.append(time.perf_counter())
        finally:
            if heartbeats is not None:
                heartbeats.cancel()

    def _assigned(self, a: wpb.Assign) -> None:
        c = self.counters
        c.assigned += 1
        if c.first_assign is None:
            c.first_assign = time.perf_counter()
        if self.draining or self._open >= self.slots:
            reason = "draining" if self.draining else "no free slot"
            self.send(
                assignment_reply=wpb.AssignmentReply(
                    job_id=a.job_id, attempt=a.attempt, accepted=False, reason=reason, transient=True
                )
            )
            return
        self._open += 1
        self.send(assignment_reply=wpb.AssignmentReply(job_id=a.job_id, attempt=a.attempt, accepted=True))
        if self.run_jobs:
            task = asyncio.create_task(self._run_job(a))
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
        else:
            self.send(started=wpb.Started(job_id=a.job_id, attempt=a.attempt, pid=1))
            self._finish(a, 0)

    async def _run_job(self, a: wpb.Assign) -> None:
        spec = a.spec
        argv = ["/bin/sh", "-c", spec.command[0]] if spec.shell else list(spec.command)
        proc = subprocess.Popen(
            argv,
            cwd=spec.cwd or None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.send(started=wpb.Started(job_id=a.job_id, attempt=a.attempt, pid=proc.pid))
        code = await _exit_status(proc)
        self._finish(a, code)

    def _finish(self, a: wpb.Assign, code: int) -> None:
        self._open -= 1
        self.counters.finished += 1
        self.send(finished=wpb.Finished(job_id=a.job_id, attempt=a.attempt, exit_code=code))

    def drain(self) -> None:
        """Take no new jobs (the server is told with the next heartbeat, sent now)."""
        self.draining = True
        self.send(heartbeat=wpb.Heartbeat(system=SYSTEM, draining=True))

    async def close(self) -> None:
        """Half-close after the running jobs have ended."""
        while self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)
        self._outbox.put_nowait(None)


class FakeFleet:
    """`count` fake workers on one channel to the server at `address`."""

    def __init__(
        self,
        address: str,
        secret: str,
        count: int,
        *,
        slots: int,
        run_jobs: bool,
        heartbeat_seconds: float = 1.0,
    ) -> None:
        self.channel = rpc.aio_channel(address, rpc.CHANNEL_OPTIONS, None)
        stub = rpc.AuthedStub(
            worker_service_pb2_grpc.WorkerServiceStub(self.channel), "kueue.v1.WorkerService", secret
        )
        self.counters = Counters()
        self.workers = [
            FakeWorker(
                stub,
                f"fake{i:03d}-{os.getpid()}",
                slots=slots,
                run_jobs=run_jobs,
                heartbeat_seconds=heartbeat_seconds,
                counters=self.counters,
            )
            for i in range(count)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 60.0) -> None:
        self._tasks = [asyncio.create_task(w.run()) for w in self.workers]
        await asyncio.wait_for(asyncio.gather(*(w.registered.wait() for w in self.workers)), timeout)

    def drain(self) -> None:
        for w in self.workers:
            w.drain()

    async def wait_acked(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.counters.acked < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.counters.acked} of {count} finishes acknowledged")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(w.close() for w in self.workers)), 30)
        await asyncio.sleep(0.2)  # let the last acknowledgements arrive
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.channel.close()
