"""The worker's stream protocol against a scripted WorkerService on a real port.

The scripted server speaks the wire protocol over real gRPC (with the real
authentication interceptor); each test plays the server's side step by step.
The end-to-end tests against kueue_server live elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
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
from kueue_worker import connection
from kueue_worker.attempts import Phase
from kueue_worker.connection import STOPPING_REASON, Connection, _Session
from kueue_worker.shares import Share
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
        self.details = "scripted failure"

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

    def close(self, code: grpc.StatusCode | None = None, details: str = "scripted failure") -> None:
        """End the stream from the server's side: OK, or an error status."""
        self.details = details
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
            await context.abort(code, stream.details)

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
            # Started at once: Started is the acceptance.
            started = await s1.next("started")
            assert (started.job_id, started.attempt) == (1, 1)
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
            worker = make_worker(worker_max_parallel_jobs=1, kill_grace_seconds=5, prefetch_jobs=1)
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
            assert (await s.next("started")).job_id == 2
            await s.next("output")
            # The slot is taken: held for it (prefetch 1, and 1 more for the
            # slot a server may think free), then turned away.
            for job_id in (3, 4):
                await s.send(assign=wpb.Assign(job_id=job_id, attempt=1, spec=sleeper))
                held = await s.next("assignment_reply")
                assert (held.job_id, held.accepted, held.queued) == (job_id, True, True)
            await s.send(assign=wpb.Assign(job_id=5, attempt=1, spec=sleeper))
            busy = await s.next("assignment_reply")
            assert (busy.job_id, busy.accepted, busy.transient) == (5, False, True)
            # Taken back for an idle worker; a retract of a running job is ignored.
            await s.send(retract=wpb.Retract(job_id=2, attempt=1))
            await s.send(retract=wpb.Retract(job_id=3, attempt=1))
            back = await s.next("assignment_reply")
            assert (back.job_id, back.accepted, back.handed_back) == (3, False, True)
            # A held job killed (canceled) ends without ever starting.
            await s.send(kill=wpb.Kill(job_id=4, attempt=1))
            fin4 = await s.next("finished")
            assert (fin4.job_id, fin4.signal, fin4.HasField("exit_code")) == (4, signal.SIGKILL, False)

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


def test_a_stream_the_server_ends_mid_write_is_reported_with_the_server_s_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops while the worker writes a job's output as fast as it
    can. A write in flight as the stream ends fails ("RPC already finished")
    and makes grpcio report INTERNAL for the stream instead of the server's
    status (seen here about one time in three): the ServerStopping message
    the server sends first is what tells the reason."""
    caplog.set_level(logging.INFO, logger="kueue_worker")
    monkeypatch.setattr(connection, "BACKOFF_MAX", 0.05)  # many reconnects, quickly

    async def scenario() -> None:
        async with scripted_server() as (server, port):
            # Unacknowledged output (none is, here) stops the job at 16 MB; each
            # new stream resends it, so the writer is busy whenever the stream ends.
            worker = make_worker(output_memory_mb=16, output_spill_mb=0)
            conn, task, s = await connected(server, port, worker)
            spec = job_spec(tmp_path, "import sys\nwhile True: sys.stdout.write('y' * 65536)\n")
            await s.send(assign=wpb.Assign(job_id=1, attempt=1, spec=spec))
            for stop in range(1, 11):
                await s.next("output")  # the writer is busy
                # As kueue_server's App.part_from_workers says goodbye.
                await s.send(server_stopping=wpb.ServerStopping())
                s.close(grpc.StatusCode.UNAVAILABLE, rpc.SERVER_STOPPING)
                s = await server.next_stream()
                await s.next("register")
                outages = [
                    r.getMessage() for r in caplog.records if "no connection to the server" in r.getMessage()
                ]
                assert len(outages) == stop and all(f"({STOPPING_REASON})" in m for m in outages), outages
                await s.send(registered=wpb.Registered(heartbeat_interval_seconds=60))
                await until(lambda stop=stop: conn.registrations == stop + 1, "the registration")
            await worker.stop_jobs(signal.SIGKILL)
            await leave(conn, task)

    asyncio.run(scenario())


def test_the_heartbeat_task_ends_when_cancelled_as_a_heartbeat_falls_due() -> None:
    """The end of a session cancels its tasks and waits for them. A job that
    ends sets heartbeat_due, often just as its Finished meets a stream the
    dead server left behind, so the cancel can land at any step of the
    heartbeat task's wake-up. On Python 3.11 asyncio.wait_for() swallowed it
    at some of those steps: the task lived on, the session never ended and
    the worker never reconnected (tests/chaos/test_server_crash.py)."""

    async def scenario() -> None:
        async with scripted_server() as (_, port):
            worker = make_worker()
            conn = Connection(worker, f"127.0.0.1:{port}", SECRET, None, 60.0)
            async with rpc.aio_channel(f"127.0.0.1:{port}", rpc.CHANNEL_OPTIONS, None) as channel:
                stub = rpc.AuthedStub(
                    worker_service_pb2_grpc.WorkerServiceStub(channel), "kueue.v1.WorkerService", SECRET
                )
                # Steps of the event loop between heartbeat_due.set() and the cancel.
                for steps in range(6):
                    session = _Session(stub.Connect())
                    session.heartbeat_interval = 60.0
                    session.registered.set()
                    task = asyncio.create_task(conn._heartbeats(session))
                    await until(lambda session=session: len(session.control) == 1, "the first heartbeat")
                    for _ in range(3):
                        await asyncio.sleep(0)  # the task settles into its wait
                    worker.heartbeat_due.set()
                    for _ in range(steps):
                        await asyncio.sleep(0)
                    task.cancel()
                    await asyncio.wait({task}, timeout=DEADLINE)
                    session.call.cancel()
                    assert task.cancelled(), (
                        f"the heartbeat task outlived a cancel {steps} loop step(s) after heartbeat_due was set"
                    )

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
                    on_sigterm = "requeue"
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


# -- attached runs: stdin and signals ------------------------------------------------------

# What an attached client keeps unacknowledged in flight, like `kueue run`.
STDIN_WINDOW = 1024 * 1024
STDIN_CHUNK = 32 * 1024


def piped_spec(cwd: Path, command: list[str], shell: bool = False) -> common_pb2.JobSpec:
    return common_pb2.JobSpec(
        command=command,
        shell=shell,
        cwd=str(cwd),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        resources=common_pb2.Resources(slots=1),
        stdin_pipe=True,
    )


def stdin(job_id: int, offset: int, data: bytes = b"", eof: bool = False, attempt: int = 1) -> wpb.Stdin:
    return wpb.Stdin(job_id=job_id, attempt=attempt, offset=offset, data=data, eof=eof)


async def connected(
    server: ScriptedServer, port: int, worker: Worker
) -> tuple[Connection, Any, ScriptedStream]:
    conn = Connection(worker, f"127.0.0.1:{port}", SECRET, None, 60.0)
    task = asyncio.create_task(conn.run())
    s = await server.next_stream()
    await s.next("register")
    await s.send(registered=wpb.Registered(heartbeat_interval_seconds=60))
    return conn, task, s


async def leave(conn: Connection, task: Any) -> None:
    conn.announce_leaving("done")
    await conn.leave()
    await asyncio.wait_for(task, DEADLINE)


async def next_of_each(s: ScriptedStream, *kinds: str) -> dict[str, Any]:
    """The next message of each kind, in whatever order they come."""
    got: dict[str, Any] = {}
    end = time.monotonic() + DEADLINE
    while len(got) < len(kinds):
        msg = await asyncio.wait_for(s.received.get(), max(0.01, end - time.monotonic()))
        s.log.append(msg)
        kind = msg.WhichOneof("msg")
        if kind in kinds and kind not in got:
            got[kind] = getattr(msg, kind)
    return got


async def feed_until_finished(
    s: ScriptedStream, job_id: int, data: bytes
) -> tuple[wpb.Finished, bytes, list[int], int]:
    """Play an attached client: send data then eof with a bounded window, gather
    the output; the Finished, the output, the ack offsets, the Stdin messages sent."""
    sent = acked = messages = 0
    eof_sent = False
    out = bytearray()
    acks: list[int] = []
    end = time.monotonic() + DEADLINE
    while True:
        while not eof_sent and sent - acked < STDIN_WINDOW:
            if sent < len(data):
                chunk = data[sent : sent + STDIN_CHUNK]
                await s.send(stdin=stdin(job_id, sent, chunk))
                sent += len(chunk)
            else:
                await s.send(stdin=stdin(job_id, sent, eof=True))
                eof_sent = True
            messages += 1
        msg = await asyncio.wait_for(s.received.get(), max(0.01, end - time.monotonic()))
        s.log.append(msg)
        kind = msg.WhichOneof("msg")
        if kind == "stdin_ack" and msg.stdin_ack.job_id == job_id:
            assert msg.stdin_ack.offset >= acked
            acked = msg.stdin_ack.offset
            acks.append(acked)
        elif kind == "output" and msg.output.job_id == job_id:
            assert msg.output.offset == len(out)
            out += msg.output.data
        elif kind == "finished" and msg.finished.job_id == job_id:
            return msg.finished, bytes(out), acks, messages


def test_stdin_round_trip_through_cat(tmp_path: Path) -> None:
    data = random.Random(5).randbytes(5 * 1024 * 1024)

    async def scenario() -> None:
        async with scripted_server() as (server, port):
            conn, task, s = await connected(server, port, make_worker())
            await s.send(assign=wpb.Assign(job_id=1, attempt=1, spec=piped_spec(tmp_path, ["cat"])))
            fin, out, acks, _ = await feed_until_finished(s, 1, data)
            assert fin.exit_code == 0 and fin.HasField("exit_code")  # the eof reached cat
            assert fin.stdout_bytes == len(data)
            assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
            assert acks[-1] == len(data)  # every byte acknowledged before the Finished
            await leave(conn, task)

    asyncio.run(scenario())


def test_a_job_that_never_reads_stdin_does_not_block_the_worker(tmp_path: Path) -> None:
    # More than the pipe holds (runner.PIPE_BYTES), so some input is never written.
    total = 4 * STDIN_WINDOW

    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker = make_worker(kill_grace_seconds=5)
            conn = Connection(worker, f"127.0.0.1:{port}", SECRET, None, 60.0)
            task = asyncio.create_task(conn.run())
            s = await server.next_stream()
            await s.next("register")
            await s.send(registered=wpb.Registered(heartbeat_interval_seconds=0.2))
            code = "import time; print('up', flush=True); time.sleep(600)"
            await s.send(
                assign=wpb.Assign(
                    job_id=1, attempt=1, spec=piped_spec(tmp_path, [sys.executable, "-c", code])
                )
            )
            await s.next("output")
            for offset in range(0, total, STDIN_CHUNK):
                await s.send(stdin=stdin(1, offset, b"z" * STDIN_CHUNK))
            first = await s.next("stdin_ack")
            assert 0 < first.offset < total  # a pipe's worth

            # The worker goes on: heartbeats, and another job from start to end.
            await s.next("heartbeat")
            await s.send(assign=wpb.Assign(job_id=2, attempt=1, spec=job_spec(tmp_path, "print('hi')")))
            fin2 = await s.next("finished")
            assert (fin2.job_id, fin2.exit_code) == (2, 0)
            await s.next("heartbeat")
            stdin_state = worker.attempts.get((1, 1)).stdin
            assert stdin_state.received == total and stdin_state.written < total
            acks = [m.stdin_ack.offset for m in s.log if m.WhichOneof("msg") == "stdin_ack"]
            assert acks and max(acks) == stdin_state.written  # stopped advancing, nothing more pending

            # Once the job is gone, what it never read is acknowledged as dropped, before the Finished.
            await s.send(kill=wpb.Kill(job_id=1, attempt=1))
            last = await s.next("stdin_ack")
            assert last.offset == total
            fin1 = await s.next("finished")
            assert (fin1.job_id, fin1.signal) == (1, signal.SIGTERM)
            # Data after the process exited: acknowledged (offset + len) and ignored.
            await s.send(stdin=stdin(1, total, b"late"))
            assert (await s.next("stdin_ack")).offset == total + 4
            await s.send(stdin=stdin(1, total + 4, eof=True))
            assert (await s.next("stdin_ack")).offset == total + 4
            await leave(conn, task)

    asyncio.run(scenario())


def test_stdin_after_a_job_exited_by_itself_is_acknowledged_and_ignored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            conn, task, s = await connected(server, port, make_worker())
            await s.send(assign=wpb.Assign(job_id=3, attempt=1, spec=piped_spec(tmp_path, ["true"])))
            fin = await s.next("finished")
            assert fin.exit_code == 0
            await s.send(stdin=stdin(3, 0, b"abc"))
            assert (await s.next("stdin_ack")).offset == 3
            await s.send(stdin=stdin(3, 0, b"abc"))  # a repeat is acknowledged again
            assert (await s.next("stdin_ack")).offset == 3
            await s.send(stdin=stdin(9, 0, b"abc"))  # unknown attempt: ignored
            await s.send(finished_ack=wpb.FinishedAck(job_id=3, attempt=1))
            await until(lambda: len(conn.worker.attempts) == 0, "the attempt to be forgotten")
            await s.send(stdin=stdin(3, 3, b"def"))  # forgotten now: ignored
            # A barrier: the worker handles messages in order.
            await s.send(assign=wpb.Assign(job_id=4, attempt=1, spec=job_spec(tmp_path / "nope", "pass")))
            assert not (await s.next("assignment_reply")).accepted
            assert [m.stdin_ack.offset for m in s.log if m.WhichOneof("msg") == "stdin_ack"] == [3, 3]
            await leave(conn, task)

    asyncio.run(scenario())


TRAP = 'trap "echo got INT; exit 7" INT; echo ready; while :; do sleep 0.1; done'


def test_signal_job_delivers_the_signal_and_ignores_unknown_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            conn, task, s = await connected(server, port, make_worker(kill_grace_seconds=5))
            await s.send(
                assign=wpb.Assign(job_id=1, attempt=1, spec=piped_spec(tmp_path, [TRAP], shell=True))
            )
            pid = (await s.next("started")).pid
            ready = await s.next("output")
            assert ready.data == b"ready\n"  # the trap is set

            for job_id, attempt, signum in [
                (99, 1, signal.SIGINT),  # unknown job
                (1, 2, signal.SIGINT),  # not the attempt held
                (1, 1, 0),  # not valid signals: logged and ignored
                (1, 1, 999),
                (1, 1, -2),
            ]:
                await s.send(signal_job=wpb.SignalJob(job_id=job_id, attempt=attempt, signal=signum))
            # A barrier: the worker handles messages in order.
            await s.send(assign=wpb.Assign(job_id=2, attempt=1, spec=job_spec(tmp_path, "pass")))
            assert (await s.next("finished")).job_id == 2
            assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            assert not [m for m in s.log if m.WhichOneof("msg") == "finished" and m.finished.job_id == 1]

            await s.send(signal_job=wpb.SignalJob(job_id=1, attempt=1, signal=signal.SIGINT))
            got = await s.next("output")
            assert (got.job_id, got.data) == (1, b"got INT\n")
            fin = await s.next("finished")
            assert (fin.job_id, fin.exit_code, fin.signal) == (1, 7, 0)
            await leave(conn, task)

    asyncio.run(scenario())


def test_stdin_before_the_spawn_is_delivered_and_acknowledged_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        # One slot and one job held beyond it: the held job's input arrives
        # while it waits for the slot (an accepted job spawns at once).
        worker = make_worker(worker_max_parallel_jobs=1, prefetch_jobs=1)
        sent: list[wpb.ConnectRequest] = []

        def pull_all() -> None:
            # A writer that is never slowed down by its stream.
            while (msg := worker.next_request()) is not None:
                sent.append(msg)

        worker.attach(sent.append, pull_all)
        first, key = (1, 1), (2, 1)
        for job_id in (1, 2):
            spec = piped_spec(tmp_path, ["cat"])
            await worker.handle(wpb.ConnectResponse(assign=wpb.Assign(job_id=job_id, attempt=1, spec=spec)))
        assert worker.processes[first].pid is not None
        assert key not in worker.processes
        assert worker.attempts.get(key).phase is Phase.WAITING
        lines = [b"line %d\n" % i for i in range(100)]
        offset = 0
        for line in lines:
            await worker.handle(wpb.ConnectResponse(stdin=stdin(2, offset, line)))
            offset += len(line)
        await worker.handle(wpb.ConnectResponse(stdin=stdin(2, offset, eof=True)))
        assert key not in worker.processes
        # The first job ends; the held one takes its slot and its input.
        await worker.handle(wpb.ConnectResponse(stdin=stdin(1, 0, eof=True)))

        def finished(job_id: int) -> list[wpb.Finished]:
            return [
                m.finished for m in sent if m.WhichOneof("msg") == "finished" and m.finished.job_id == job_id
            ]

        await until(lambda: finished(2), "the held job to finish")
        assert finished(2)[0].exit_code == 0
        out = b"".join(
            m.output.data for m in sent if m.WhichOneof("msg") == "output" and m.output.job_id == 2
        )
        assert out == b"".join(lines)
        mine = [
            m
            for m in sent
            if m.WhichOneof("msg") in ("stdin_ack", "finished")
            and getattr(m, m.WhichOneof("msg")).job_id == 2
        ]
        # All queued before the start: one write, so one acknowledgement, before the Finished.
        assert [m.WhichOneof("msg") for m in mine] == ["stdin_ack", "finished"]
        assert mine[0].stdin_ack.offset == offset

    asyncio.run(scenario())


def test_stdin_across_a_reconnect(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker = make_worker()
            conn, task, s1 = await connected(server, port, worker)
            await s1.send(assign=wpb.Assign(job_id=1, attempt=1, spec=piped_spec(tmp_path, ["cat"])))
            await s1.send(stdin=stdin(1, 0, b"first\n"))
            # Either may come first: cat echoes within the ack's few milliseconds.
            got = await next_of_each(s1, "stdin_ack", "output")
            assert (got["stdin_ack"].offset, got["output"].data) == (6, b"first\n")

            # The stream breaks; the job and its stdin pipe stay.
            s1.close(grpc.StatusCode.UNAVAILABLE)
            s2 = await server.next_stream()
            await s2.next("register")
            # The position is reported again: the last ack may not have arrived.
            assert (await s2.next("stdin_ack")).offset == 6
            await s2.send(registered=wpb.Registered(heartbeat_interval_seconds=60))
            # A client unsure of what arrived resends from its last ack it saw; repeats are dropped.
            await s2.send(stdin=stdin(1, 0, b"first\nsecond\n", eof=True))
            fin = await s2.next("finished")
            assert fin.exit_code == 0 and fin.stdout_bytes == len(b"first\nsecond\n")
            acks = [m.stdin_ack.offset for m in s2.log if m.WhichOneof("msg") == "stdin_ack"]
            assert acks[-1] == 13
            await leave(conn, task)

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


class _RecordingCall:
    """The write side of a stream, recording what goes out in order."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.half_closed = False

    async def write(self, msg: wpb.ConnectRequest) -> None:
        self.written.append(msg.WhichOneof("msg"))
        await asyncio.sleep(0)

    async def done_writing(self) -> None:
        self.half_closed = True


def test_leaving_follows_the_finishes_and_the_stream_closes_after_all_output() -> None:
    """A drained worker says Leaving only after the Finished of every job it
    waited for; control messages (heartbeats) still go first."""
    from kueue_worker.attempts import Attempts, CwdCheck

    async def scenario() -> None:
        sm = Attempts("w", max_slots=2)
        for job in (1, 2):
            sm.assign(job, 1, common_pb2.Resources(slots=1), "/", CwdCheck.OK)
            sm.started(job, 1, 100 + job)
            sm.output(job, 1, 1, b"out %d\n" % job)
        sm.finish(1, 1, wpb.Finished(exit_code=0))
        call = _RecordingCall()
        session = _Session(call)  # type: ignore[arg-type]

        def pull() -> wpb.ConnectRequest | None:
            msg = sm.next_message()
            if msg is None:
                return None
            req = wpb.ConnectRequest()
            getattr(req, "output" if isinstance(msg, wpb.Output) else "finished").CopyFrom(msg)
            return req

        session.send_after_finishes(wpb.ConnectRequest(leaving=wpb.Leaving(reason="drained")))
        session.send(wpb.ConnectRequest(heartbeat=wpb.Heartbeat()))
        session.send_after_finishes(None)
        await asyncio.wait_for(session.write_all(pull, sm.finishes_unsent), 10)
        assert call.written[0] == "heartbeat"
        assert call.written.index("leaving") > call.written.index("finished")
        # Job 2 still runs: its output may follow Leaving, but not the close.
        assert sorted(call.written) == ["finished", "heartbeat", "leaving", "output", "output"]
        assert call.half_closed

    asyncio.run(scenario())


async def attempt_waiting_for_its_stale_one(
    server: ScriptedServer, port: int, tmp_path: Path, slots: int = 2
) -> tuple[Worker, Connection, Any, ScriptedStream]:
    """Back from a partition: attempt 2 of job 1 comes while attempt 1 (which
    ignores SIGTERM) still runs here, and waits for it to end."""
    worker = make_worker(worker_max_parallel_jobs=slots, kill_grace_seconds=30)
    conn, task, s = await connected(server, port, worker)
    stubborn = job_spec(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print('up', flush=True)
        time.sleep(600)
        """,
    )
    await s.send(assign=wpb.Assign(job_id=1, attempt=1, spec=stubborn))
    assert (await s.next("started")).attempt == 1
    await s.next("output")
    await s.send(assign=wpb.Assign(job_id=1, attempt=2, spec=job_spec(tmp_path, "print('two')")))
    await until(lambda: 1 in worker._after_stale, "attempt 2 to wait for attempt 1")
    return worker, conn, task, s


def test_an_attempt_waiting_for_its_stale_one_to_end_may_be_killed_unstarted(tmp_path: Path) -> None:
    # Killed while it waits, attempt 2 ends unstarted, and does not start
    # when attempt 1 ends.
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker, conn, task, s = await attempt_waiting_for_its_stale_one(server, port, tmp_path)
            assert (1, 2) not in worker.processes and (1, 1) in worker.processes
            await s.send(kill=wpb.Kill(job_id=1, attempt=2))
            fin2 = await s.next("finished")
            assert (fin2.job_id, fin2.attempt, fin2.signal) == (1, 2, signal.SIGKILL)
            await s.send(kill=wpb.Kill(job_id=1, attempt=1, signal=signal.SIGKILL))
            fin1 = await s.next("finished")
            assert (fin1.job_id, fin1.attempt, fin1.signal) == (1, 1, signal.SIGKILL)
            assert not worker.processes and not worker._after_stale
            started = [m.started for m in s.log if m.WhichOneof("msg") == "started"]
            assert [m.attempt for m in started] == [1]
            await leave(conn, task)

    asyncio.run(scenario())


def test_an_attempt_waiting_for_its_stale_one_ends_unstarted_when_a_newer_one_comes(tmp_path: Path) -> None:
    # The server moved the job on twice: attempt 3 comes while attempt 2
    # still waits for attempt 1. Attempt 2 ends unstarted (its slot is not
    # held for ever), attempt 3 waits instead and starts once attempt 1 has ended.
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker, conn, task, s = await attempt_waiting_for_its_stale_one(server, port, tmp_path, slots=3)
            third = job_spec(tmp_path, "print('three')")
            third.resources.cpus = 0  # attempts 1 and 2 may hold all of this machine's cpus
            await s.send(assign=wpb.Assign(job_id=1, attempt=3, spec=third))
            fin2 = await s.next("finished")
            assert (fin2.attempt, fin2.signal) == (2, signal.SIGKILL)
            assert worker._after_stale[1][0] == 3
            await s.send(kill=wpb.Kill(job_id=1, attempt=1, signal=signal.SIGKILL))
            finished = {}
            while len(finished) < 2:
                fin = await s.next("finished")
                finished[fin.attempt] = fin
            assert finished[1].signal == signal.SIGKILL and finished[3].exit_code == 0
            started = [m.started for m in s.log if m.WhichOneof("msg") == "started"]
            assert [m.attempt for m in started] in ([1, 3], [1])  # 3's start may ride in its Finished
            assert not worker.processes and not worker._after_stale
            await leave(conn, task)

    asyncio.run(scenario())


def test_an_attempt_waiting_for_its_stale_one_to_end_never_starts_if_the_worker_stops(tmp_path: Path) -> None:
    # The worker stops while attempt 2 waits: attempt 1 is killed, and
    # attempt 2 ends unstarted rather than starting as the worker goes.
    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker, conn, task, s = await attempt_waiting_for_its_stale_one(server, port, tmp_path)
            assert await asyncio.wait_for(worker.stop_jobs(signal.SIGKILL), DEADLINE) == 1
            finished = {}
            while len(finished) < 2:
                fin = await s.next("finished")
                finished[fin.attempt] = fin
            assert finished[1].signal == finished[2].signal == signal.SIGKILL
            assert not worker.processes and not worker._after_stale
            started = [m.started for m in s.log if m.WhichOneof("msg") == "started"]
            assert [m.attempt for m in started] == [1]
            await leave(conn, task)

    asyncio.run(scenario())


def test_a_job_that_ends_before_its_started_goes_out_is_logged_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One slot. Job 1 exits but leaves a process holding its output open, so
    # its Finished waits; job 2 starts in the freed slot and ends meanwhile.
    # Its Started may not overtake job 1's Finished, so the server learns of
    # both its start and end from its Finished: the worker's log says both
    # in one attempt_finished line too, as the server's does.
    monkeypatch.setattr("kueue_worker.runner.PIPE_LINGER_SECONDS", 600.0)
    caplog.set_level(logging.INFO, logger="kueue_worker")
    release = tmp_path / "release"
    holder = f"""
        import os, time
        end = time.monotonic() + {DEADLINE}
        while not os.path.exists({str(release)!r}) and time.monotonic() < end:
            time.sleep(0.01)
    """

    async def scenario() -> None:
        async with scripted_server() as (server, port):
            worker = make_worker(worker_max_parallel_jobs=1)
            conn, task, s = await connected(server, port, worker)
            leaves_holder = f"""
                import subprocess, sys
                subprocess.Popen([sys.executable, "-c", {textwrap.dedent(holder)!r}])
            """
            await s.send(assign=wpb.Assign(job_id=1, attempt=1, spec=job_spec(tmp_path, leaves_holder)))
            await s.next("started")
            await s.send(assign=wpb.Assign(job_id=2, attempt=1, spec=job_spec(tmp_path, "pass")))
            await until(lambda: (2, 1) in worker.processes, "job 2 to start in the slot job 1 freed")
            await until(lambda: (2, 1) not in worker.processes, "job 2 to end")
            assert (1, 1) in worker.processes  # its output is still open
            release.touch()
            finished = {}
            while len(finished) < 2:
                fin = await s.next("finished")
                finished[fin.job_id] = fin
            assert [m.started.job_id for m in s.log if m.WhichOneof("msg") == "started"] == [1]
            await leave(conn, task)

    asyncio.run(scenario())
    events = [
        (r.kueue_event, r.kueue_fields["job"], r.kueue_fields.get("pid"), r.getMessage())
        for r in caplog.records
        if getattr(r, "kueue_event", "").startswith("attempt_")
    ]
    assert [(name, job) for name, job, _, _ in events] == [
        ("attempt_started", 1),
        ("attempt_finished", 2),
        ("attempt_finished", 1),
    ]
    (_, _, pid, message) = events[1]
    assert isinstance(pid, int) and pid > 0
    assert message == f"job 2 attempt 1: pid {pid} exited with code 0 after " + message.rsplit("after ", 1)[1]
    assert events[2][2] is None  # job 1's start had its own line


def test_a_process_of_several_registers_its_machine_and_takes_its_share_of_output_memory() -> None:
    settings = WorkerSettings(worker_max_parallel_jobs=4, output_memory_mb=64, output_spill_mb=0)
    second = Worker(settings, "w1/2", "cd" * 16, share=Share(2, 2), machine="w1")
    reg = second.register_message()
    cores = reg.system.cpu_cores
    assert reg.machine == "w1" and reg.capacity.slots == 2
    assert reg.machine_capacity.cpus == cores and reg.capacity.cpus == Share(2, 2).part(cores)
    assert second.attempts.memory_limit == 32 * 1024 * 1024
    whole = make_worker(output_memory_mb=64).register_message()
    assert not whole.machine and not whole.HasField("machine_capacity")
