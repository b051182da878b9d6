"""The worker's stream protocol against a scripted WorkerService on a real port.

The scripted server speaks the wire protocol over real gRPC (with the real
authentication interceptor); each test plays the server's side step by step.
The end-to-end tests against kueue_server live elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from kueue import rpc
from kueue.config import WorkerSettings
from kueue.v1 import common_pb2, worker_service_pb2_grpc
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker.connection import Connection
from kueue_worker.worker import Worker

OUT = common_pb2.OUTPUT_STREAM_STDOUT
SECRET = "s3cret-for-tests"
DEADLINE = 20.0


class ScriptedStream:
    """The server's end of one Connect stream."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context
        self.received: asyncio.Queue[wpb.ConnectRequest] = asyncio.Queue()
        self.log: list[wpb.ConnectRequest] = []
        self.ended = asyncio.Event()
        self.finish: asyncio.Future[grpc.StatusCode | None] = asyncio.get_running_loop().create_future()

    async def read_all(self) -> None:
        while (msg := await self.context.read()) is not grpc.aio.EOF:
            self.received.put_nowait(msg)
        self.ended.set()

    async def send(self, **kw: Any) -> None:
        await self.context.write(wpb.ConnectResponse(**kw))

    async def next(self, kind: str) -> Any:
        """The next message of this kind; others are kept in self.log."""
        end = time.monotonic() + DEADLINE
        while True:
            msg = await asyncio.wait_for(self.received.get(), max(0.01, end - time.monotonic()))
            self.log.append(msg)
            if msg.WhichOneof("msg") == kind:
                return getattr(msg, kind)

    def close(self, code: grpc.StatusCode | None = None) -> None:
        """End the stream from the server's side: OK, or an error status."""
        if not self.finish.done():
            self.finish.set_result(code)


class ScriptedServer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self) -> None:
        self.streams: asyncio.Queue[ScriptedStream] = asyncio.Queue()

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        stream = ScriptedStream(context)
        self.streams.put_nowait(stream)
        reader = asyncio.create_task(stream.read_all())
        ended = asyncio.create_task(stream.ended.wait())
        await asyncio.wait({ended, stream.finish}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if not stream.finish.done():
            await reader  # the worker half-closed: end with OK
            return
        reader.cancel()
        code = stream.finish.result()
        if code is not None:
            await context.abort(code, "scripted failure")

    async def next_stream(self) -> ScriptedStream:
        return await asyncio.wait_for(self.streams.get(), DEADLINE)


@contextlib.asynccontextmanager
async def scripted_server(port: int = 0, secret: str = SECRET) -> AsyncIterator[tuple[ScriptedServer, int]]:
    server = grpc.aio.server(interceptors=[rpc.AuthInterceptor(secret)], options=rpc.SERVER_OPTIONS)
    servicer = ScriptedServer()
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def job_spec(cwd: Path, code: str) -> common_pb2.JobSpec:
    return common_pb2.JobSpec(
        command=[sys.executable, "-c", textwrap.dedent(code)],
        cwd=str(cwd),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        resources=common_pb2.Resources(slots=1, cpus=1, ram_mb=10),
    )


def make_worker(**settings: Any) -> Worker:
    settings.setdefault("system_update_interval_seconds", 60)
    return Worker(WorkerSettings(**settings), "w1", "ab" * 16)


STEPPED_JOB = """
    import os, sys, time
    def wait_for(name):
        while not os.path.exists(name):
            time.sleep(0.01)
    print("first", flush=True)
    wait_for("go")
    print("second", flush=True)
    wait_for("go2")
    sys.exit(3)
"""


def test_register_run_reconnect_resend_and_leave(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker = make_worker()
            conn = Connection(worker, f"127.0.0.1:{port}", SECRET, tmp_path / "config.toml", 60.0)
            conn_task = asyncio.create_task(conn.run())

            s1 = await server.next_stream()
            reg = await s1.next("register")
            assert (reg.worker_id, reg.name, reg.version) == ("ab" * 16, "w1", "0.1.0")
            assert reg.capacity.slots == 10 and reg.capacity.cpus >= 1 and reg.capacity.ram_mb > 0
            assert reg.system.hostname == socket.gethostname()
            assert list(reg.attempts) == []
            await s1.send(registered=wpb.Registered(worker_id=reg.worker_id, heartbeat_interval_seconds=0.2))
            await s1.next("heartbeat")  # right after registering
            await s1.next("heartbeat")  # and again after the interval from Registered

            await s1.send(assign=wpb.Assign(job_id=1, attempt=1, spec=job_spec(tmp_path, STEPPED_JOB)))
            reply = await s1.next("assignment_reply")
            assert (reply.job_id, reply.attempt, reply.accepted) == (1, 1, True)
            started = await s1.next("started")
            assert started.pid > 0 and psutil.pid_exists(started.pid)
            out = await s1.next("output")
            assert (out.job_id, out.attempt, out.stream, out.offset, out.data) == (1, 1, OUT, 0, b"first\n")

            # The stream breaks before "first" was acknowledged; the job runs on.
            s1.close(grpc.StatusCode.UNAVAILABLE)
            s2 = await server.next_stream()
            reg2 = await s2.next("register")
            assert [
                (a.job_id, a.attempt, a.stdout_offset, a.HasField("finished")) for a in reg2.attempts
            ] == [(1, 1, 6, False)]
            again = await s2.next("output")
            assert (again.offset, again.data) == (0, b"first\n")
            await s2.send(registered=wpb.Registered(worker_id=reg.worker_id, heartbeat_interval_seconds=60))
            await s2.send(output_ack=wpb.OutputAck(job_id=1, attempt=1, stream=OUT, offset=6))
            (tmp_path / "go").touch()
            second = await s2.next("output")
            assert (second.offset, second.data) == (6, b"second\n")
            (tmp_path / "go2").touch()
            fin = await s2.next("finished")
            assert (fin.job_id, fin.attempt, fin.exit_code, fin.stdout_bytes, fin.stderr_bytes) == (
                1,
                1,
                3,
                13,
                0,
            )

            # Unacknowledged finishes survive a reconnect; acknowledged ones are forgotten.
            s2.close(grpc.StatusCode.INTERNAL)
            s3 = await server.next_stream()
            reg3 = await s3.next("register")
            assert [a.finished for a in reg3.attempts] == [fin]
            resent = [await s3.next("output"), await s3.next("finished")]
            assert (resent[0].offset, resent[0].data, resent[1]) == (6, b"second\n", fin)
            await s3.send(registered=wpb.Registered(worker_id=reg.worker_id))
            await s3.send(finished_ack=wpb.FinishedAck(job_id=1, attempt=1))
            await until(lambda: len(worker.attempts) == 0, "the attempt to be forgotten")

            s3.close()  # a clean end of stream by the server: reconnect too
            s4 = await server.next_stream()
            assert list((await s4.next("register")).attempts) == []
            await s4.send(registered=wpb.Registered(worker_id=reg.worker_id))
            await until(lambda: conn.registrations == 4, "the fourth registration")

            assert conn.announce_leaving("test over")
            await conn.leave()
            leaving = await s4.next("leaving")
            assert leaving.reason == "test over"
            await asyncio.wait_for(s4.ended.wait(), DEADLINE)
            await asyncio.wait_for(conn_task, DEADLINE)

    asyncio.run(scenario())


def test_assign_rejections_and_kill_over_the_stream(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker = make_worker(worker_max_parallel_jobs=1, kill_grace_seconds=5)
            conn = Connection(worker, f"127.0.0.1:{port}", SECRET, None, 60.0)
            conn_task = asyncio.create_task(conn.run())
            s = await server.next_stream()
            await s.next("register")
            await s.send(registered=wpb.Registered(heartbeat_interval_seconds=60))

            missing = job_spec(tmp_path / "nope", "pass")
            await s.send(assign=wpb.Assign(job_id=1, attempt=1, spec=missing))
            reply = await s.next("assignment_reply")
            assert (reply.accepted, reply.transient) == (False, False)
            assert reply.reason == f"working directory {tmp_path / 'nope'} does not exist on w1"

            sleeper = job_spec(tmp_path, "import time; print('up', flush=True); time.sleep(600)")
            await s.send(assign=wpb.Assign(job_id=2, attempt=1, spec=sleeper))
            assert (await s.next("assignment_reply")).accepted
            await s.next("output")
            await s.send(assign=wpb.Assign(job_id=3, attempt=1, spec=sleeper))
            busy = await s.next("assignment_reply")
            assert (busy.job_id, busy.accepted, busy.transient) == (3, False, True)

            await s.send(kill=wpb.Kill(job_id=99, attempt=1))  # unknown: ignored
            await s.send(kill=wpb.Kill(job_id=2, attempt=1, signal=signal.SIGINT, grace_seconds=1))
            fin = await s.next("finished")
            assert (fin.job_id, fin.HasField("exit_code"), fin.signal) == (2, False, signal.SIGINT)
            assert fin.stdout_bytes == 3
            await s.next("heartbeat")  # sent when a job ends

            assert conn.announce_leaving("done")
            await conn.leave()
            await asyncio.wait_for(conn_task, DEADLINE)

    asyncio.run(scenario())


def test_one_warning_per_outage_and_reconnect_when_the_server_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kueue_worker")
    port = free_port()

    async def scenario() -> None:
        worker = make_worker()
        conn = Connection(worker, f"127.0.0.1:{port}", SECRET, None, 60.0)
        conn_task = asyncio.create_task(conn.run())
        await until(lambda: conn.streams_opened >= 4, "several connection attempts")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "no connection to the server" in warnings[0].getMessage()
        async with scripted_server(port) as (server, _):
            s = await server.next_stream()
            await s.next("register")
            await s.send(registered=wpb.Registered())
            await until(lambda: conn.registrations == 1, "the registration")
            assert any("reconnected" in r.getMessage() for r in caplog.records)
            assert conn.announce_leaving("done")
            await conn.leave()
            await asyncio.wait_for(conn_task, DEADLINE)

    asyncio.run(scenario())


def test_wrong_secret_is_reported_once_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "config.toml"

    async def scenario() -> None:
        async with scripted_server() as (_, port):
            worker = make_worker()
            conn = Connection(worker, f"127.0.0.1:{port}", "not-the-secret", config, 60.0)
            conn_task = asyncio.create_task(conn.run())
            want = (
                "the shared secret does not match the server's "
                f"(check common_settings.shared_secret in {config})"
            )
            await until(lambda: any(r.getMessage() == want for r in caplog.records), "the error line")
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert [r.getMessage() for r in errors] == [want]
            assert conn.registrations == 0
            assert not conn.announce_leaving("done")
            await conn.leave()  # never registered: nobody to tell
            await asyncio.wait_for(conn_task, DEADLINE)

    asyncio.run(scenario())


def test_worker_process_sigterm_kills_jobs_reports_and_leaves(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def scenario() -> None:
        async with scripted_server() as (server, port):
            config = tmp_path / "config.toml"
            config.write_text(
                textwrap.dedent(f"""
                    [common_settings]
                    shared_secret = "{SECRET}"
                    server_name = "127.0.0.1"
                    server_port = {port}
                    log_level = "debug"
                    [server_settings]
                    data_dir = "{data}"
                    [worker_settings]
                    kill_grace_seconds = 5.0
                """)
            )
            log_file = (tmp_path / "worker.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "kueue_worker", "--config", str(config), "--name", "pw"],
                cwd=Path(__file__).parent.parent,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                s = await server.next_stream()
                reg = await s.next("register")
                id_file = data / "workers" / f"{socket.gethostname()}-pw.id"
                assert reg.worker_id == id_file.read_text().strip()
                assert reg.name == "pw"
                await s.send(registered=wpb.Registered(heartbeat_interval_seconds=60))
                code = "import time; print('up', flush=True); time.sleep(600)"
                await s.send(assign=wpb.Assign(job_id=5, attempt=2, spec=job_spec(tmp_path, code)))
                job_pid = (await s.next("started")).pid
                await s.next("output")

                proc.send_signal(signal.SIGTERM)
                # Leaving comes first, so the server requeues rather than records a failure.
                leaving = await s.next("leaving")
                assert "SIGTERM" in leaving.reason
                fin = await s.next("finished")
                assert (fin.job_id, fin.attempt, fin.signal) == (5, 2, signal.SIGTERM)
                await s.send(finished_ack=wpb.FinishedAck(job_id=5, attempt=2))
                await asyncio.wait_for(s.ended.wait(), DEADLINE)
                await until(lambda: proc.poll() is not None, "the worker to exit")
                assert proc.returncode == 0, (tmp_path / "worker.log").read_text()
                assert not psutil.pid_exists(job_pid) or psutil.Process(job_pid).status() == "zombie"
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                log_file.close()

    asyncio.run(scenario())


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[common_settings]\nserver_port = 'x'\n")
    result = subprocess.run(
        [sys.executable, "-m", "kueue_worker", "--config", str(config)],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("kueue_worker: ")
    assert result.stderr.count("\n") == 1
