"""The client side of `kueue run` against a scripted in-process Attach server:
output de-duplication and attempts, stdin flow control and replay, signals,
exit statuses, a lost connection. The real server is in test_e2e_run.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from kueue.v1 import common_pb2, job_service_pb2, job_service_pb2_grpc
from kueue_client import attach as attach_module
from kueue_client.attach import AttachResult, attach
from kueue_client.errors import KueueError
from kueue_client.status import start_failure_status

State = common_pb2.JobState
OUT, ERR = common_pb2.OUTPUT_STREAM_STDOUT, common_pb2.OUTPUT_STREAM_STDERR


def job(state: int, attempt: int = 1, worker: str = "w1", **fields: Any) -> job_service_pb2.AttachResponse:
    return job_service_pb2.AttachResponse(
        job=common_pb2.Job(id=42, state=state, attempt=attempt, worker_name=worker, **fields)
    )


def accepted(*warnings: str) -> job_service_pb2.AttachResponse:
    return job_service_pb2.AttachResponse(
        accepted=job_service_pb2.AttachAccepted(job_id=42, warnings=warnings)
    )


def output(attempt: int, stream: int, offset: int, data: bytes) -> job_service_pb2.AttachResponse:
    return job_service_pb2.AttachResponse(
        output=job_service_pb2.AttachOutput(attempt=attempt, stream=stream, offset=offset, data=data)
    )


def ack(attempt: int, offset: int) -> job_service_pb2.AttachResponse:
    return job_service_pb2.AttachResponse(
        stdin_ack=job_service_pb2.AttachStdinAck(attempt=attempt, offset=offset)
    )


class Peer:
    """The server's end of one Attach call, as a scenario sees it."""

    def __init__(self, requests: AsyncIterator[job_service_pb2.AttachRequest]) -> None:
        self.queue: asyncio.Queue[job_service_pb2.AttachRequest | None] = asyncio.Queue()
        self.received: list[job_service_pb2.AttachRequest] = []
        self._task = asyncio.create_task(self._pump(requests))

    async def _pump(self, requests: AsyncIterator[job_service_pb2.AttachRequest]) -> None:
        with contextlib.suppress(Exception):  # the RPC ended: no more requests
            async for request in requests:
                self.received.append(request)
                await self.queue.put(request)
        await self.queue.put(None)

    async def next(self, kind: str | None = None) -> job_service_pb2.AttachRequest:
        """The next request (of `kind`, skipping others)."""
        while True:
            request = await asyncio.wait_for(self.queue.get(), 10)
            assert request is not None, "the client closed its side"
            if kind is None or request.WhichOneof("msg") == kind:
                return request


Scenario = Callable[[Peer], AsyncIterator[job_service_pb2.AttachResponse]]


class FakeJobService(job_service_pb2_grpc.JobServiceServicer):
    """Attach plays the scenario; GetJob and ReadOutput answer from what the
    scenario sent or recorded, as the real server's captured state would."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.job: common_pb2.Job | None = None
        self.outputs: dict[tuple[int, int], bytearray] = {}

    def record(self, response: job_service_pb2.AttachResponse) -> None:
        kind = response.WhichOneof("msg")
        if kind == "job":
            self.job = response.job
        elif kind == "output":
            out = response.output
            data = self.outputs.setdefault((out.attempt, out.stream), bytearray())
            data[out.offset : out.offset + len(out.data)] = out.data

    async def Attach(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        peer = Peer(request_iterator)
        peer.record = self.record  # type: ignore[attr-defined]
        async for response in self.scenario(peer):
            self.record(response)
            yield response

    async def GetJob(self, request: Any, context: Any) -> job_service_pb2.GetJobResponse:
        assert self.job is not None
        job = common_pb2.Job()
        job.CopyFrom(self.job)
        job.stdout_bytes = len(self.outputs.get((job.attempt, OUT), b""))
        job.stderr_bytes = len(self.outputs.get((job.attempt, ERR), b""))
        return job_service_pb2.GetJobResponse(job=job)

    async def ReadOutput(self, request: Any, context: Any) -> AsyncIterator[Any]:
        assert self.job is not None and not request.follow
        for stream in request.streams:
            data = self.outputs.get((self.job.attempt, stream), b"")
            for start in range(request.offset, len(data), 5):
                yield job_service_pb2.ReadOutputResponse(
                    stream=stream, offset=start, data=bytes(data[start : start + 5])
                )


@dataclass
class Outcome:
    result: AttachResult | None
    error: KueueError | None
    stdout: bytes = b""
    stderr: bytes = b""
    notices: bytes = b""


def run_against(
    scenario: Scenario,
    *,
    stdin: bytes | None = None,
    forward_signals: bool = False,
    address: str | None = None,
) -> Outcome:
    """Runs attach() against `scenario`; the job's stdout, stderr and the
    client's notices go to files of their own."""
    names = ("stdin", "stdout", "stderr", "notices")
    with contextlib.ExitStack() as stack:
        files = {name: stack.enter_context(tempfile.TemporaryFile()) for name in names}
        if stdin is not None:
            files["stdin"].write(stdin)
            files["stdin"].seek(0)

        async def main() -> Outcome:
            server = grpc.aio.server()
            job_service_pb2_grpc.add_JobServiceServicer_to_server(FakeJobService(scenario), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            try:
                result = await attach(
                    address or f"127.0.0.1:{port}",
                    "s" * 64,
                    common_pb2.JobSpec(
                        command=["job"], cwd="/", resources=common_pb2.Resources(cpus=4, ram_mb=100)
                    ),
                    stdin=files["stdin"].fileno() if stdin is not None else None,
                    stdout=files["stdout"].fileno(),
                    stderr=files["stderr"].fileno(),
                    notices=files["notices"].fileno(),
                    forward_signals=forward_signals,
                )
                return Outcome(result, None)
            except KueueError as exc:
                return Outcome(None, exc)
            finally:
                await server.stop(None)

        outcome = asyncio.run(main())
        for name in names[1:]:
            files[name].seek(0)
            setattr(outcome, name, files[name].read())
        return outcome


def scenario_of(body: Callable[[Peer], Awaitable[list[Any]]]) -> Scenario:
    """A scenario from a coroutine that returns its responses after the start request."""

    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        for item in await body(peer):
            yield item

    return scenario


def test_output_is_written_once_in_order_and_exit_code_kept() -> None:
    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        start = await peer.next()
        assert start.start.spec.stdin_pipe and list(start.start.spec.command) == ["job"]
        yield accepted("no connected worker could ever fit 4 cpus")
        yield job(State.JOB_STATE_PENDING, attempt=0)
        yield job(State.JOB_STATE_RUNNING)
        yield output(1, OUT, 0, b"hel")
        yield output(1, OUT, 0, b"hello\n")  # repeats its first 3 bytes
        yield output(1, ERR, 0, b"\x00\xff binary\n")
        yield output(1, OUT, 6, b"world\n")
        yield job(State.JOB_STATE_FAILED, exit_code=3)

    outcome = run_against(scenario)
    assert outcome.result is not None and outcome.result.exit_status == 3
    assert outcome.stdout == b"hello\nworld\n"
    assert outcome.stderr == b"\x00\xff binary\n"
    assert outcome.notices == b"kueue: warning: no connected worker could ever fit 4 cpus\n"


@pytest.mark.parametrize(
    ("final", "status", "notice"),
    [
        (dict(state=State.JOB_STATE_SUCCEEDED, exit_code=0), 0, b""),
        (dict(state=State.JOB_STATE_FAILED, exit_code=255), 255, b""),
        (dict(state=State.JOB_STATE_FAILED, signal=9), 137, b""),
        (
            dict(
                state=State.JOB_STATE_FAILED,
                comment="failed to start: cannot start nope: No such file or directory",
            ),
            127,
            b"kueue: job 42 failed to start: cannot start nope: No such file or directory\n",
        ),
        (
            dict(
                state=State.JOB_STATE_FAILED, comment="failed to start: cannot start ./x: Permission denied"
            ),
            126,
            b"kueue: job 42 failed to start: cannot start ./x: Permission denied\n",
        ),
        # The kind the worker said outweighs the comment's words.
        (
            dict(
                state=State.JOB_STATE_FAILED,
                comment="failed to start: cannot open the stdout file /x/out: No such file or directory",
                start_failure=common_pb2.START_FAILURE_OTHER,
            ),
            1,
            b"kueue: job 42 failed to start: cannot open the stdout file /x/out: No such file or directory\n",
        ),
        (
            dict(
                state=State.JOB_STATE_FAILED,
                comment="failed to start: cannot start ./s: its interpreter /nope (#! line) was not found",
                start_failure=common_pb2.START_FAILURE_NOT_FOUND,
            ),
            127,
            b"kueue: job 42 failed to start: cannot start ./s: its interpreter /nope (#! line) was not found\n",
        ),
        (
            dict(
                state=State.JOB_STATE_FAILED,
                comment="failed to start: something new",
                start_failure=common_pb2.START_FAILURE_NOT_EXECUTABLE,
            ),
            126,
            b"kueue: job 42 failed to start: something new\n",
        ),
        (dict(state=State.JOB_STATE_CANCELED), 1, b"kueue: job 42 was canceled\n"),
        (
            dict(state=State.JOB_STATE_CANCELED, signal=15, comment="killed on request"),
            143,
            b"kueue: job 42 was canceled (killed on request)\n",
        ),
    ],
)
def test_exit_statuses(final: dict[str, Any], status: int, notice: bytes) -> None:
    async def body(peer: Peer) -> list[Any]:
        state = final.pop("state")
        return [accepted(), job(State.JOB_STATE_RUNNING), job(state, **final)]

    outcome = run_against(scenario_of(body))
    assert outcome.result is not None and outcome.result.exit_status == status
    assert outcome.notices == notice


def test_start_failure_statuses() -> None:
    assert start_failure_status("cannot start x: No such file or directory") == 127
    assert start_failure_status("working directory /x is not accessible on w1") == 126
    assert start_failure_status("cannot start x: Exec format error") == 126
    assert start_failure_status("cannot start x on w1: argument list too long: ...") == 126  # as bash
    assert start_failure_status("out of memory") == 1


def test_restart_drops_the_lost_attempts_late_output_and_says_so() -> None:
    async def body(peer: Peer) -> list[Any]:
        return [
            accepted(),
            job(State.JOB_STATE_RUNNING, attempt=1, worker="w1"),
            output(1, OUT, 0, b"first try\n"),
            job(State.JOB_STATE_PENDING, attempt=1, worker="w1", comment="worker w1 lost; queued again"),
            job(State.JOB_STATE_OFFERED, attempt=2, worker="w2"),
            job(State.JOB_STATE_RUNNING, attempt=3, worker="w3"),
            output(1, OUT, 10, b"late bytes of attempt 1\n"),
            output(3, OUT, 0, b"second try\n"),
            output(3, ERR, 0, b"err\n"),
            job(State.JOB_STATE_SUCCEEDED, attempt=3, worker="w3", exit_code=0),
        ]

    outcome = run_against(scenario_of(body))
    assert outcome.result is not None and outcome.result.exit_status == 0
    assert outcome.stdout == b"first try\nsecond try\n"
    assert outcome.stderr == b"err\n"
    assert outcome.notices == (
        b"kueue: worker w1 lost, job 42 restarted on w3 (attempt 3); output above is from the lost attempt\n"
    )


def test_stdin_is_flow_controlled_and_replayed_after_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    window = 256 * 1024
    monkeypatch.setattr(attach_module, "STDIN_WINDOW", window)
    data = os.urandom(3 * 1024 * 1024 + 17)
    got: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}

    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_RUNNING, attempt=1)
        # Attempt 1 takes 1 MiB, acknowledging only once the window is full:
        # the client must never have more than the window in flight.
        acked = 0
        while len(got[1]) < 1024 * 1024:
            request = await peer.next("stdin")
            assert request.stdin.attempt == 1 and request.stdin.offset == len(got[1])
            got[1] += request.stdin.data
            assert len(got[1]) - acked <= window
            if len(got[1]) - acked == window:
                acked = len(got[1])
                yield ack(1, acked)
        yield job(State.JOB_STATE_PENDING, attempt=1)
        yield job(State.JOB_STATE_RUNNING, attempt=2, worker="w2")
        while True:
            request = await peer.next("stdin")
            if request.stdin.attempt != 2:
                continue  # leftovers for the lost attempt
            assert request.stdin.offset == len(got[2])
            got[2] += request.stdin.data
            yield ack(2, len(got[2]))
            if request.stdin.eof:
                break
        yield job(State.JOB_STATE_SUCCEEDED, attempt=2, worker="w2", exit_code=0)

    outcome = run_against(scenario, stdin=data)
    assert outcome.result is not None and outcome.result.exit_status == 0, outcome.notices
    assert bytes(got[1]) == data[: len(got[1])]
    assert bytes(got[2]) == data
    assert b"restarted on w2 (attempt 2)" in outcome.notices


def test_window_holds_back_unacknowledged_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    window = 100 * 1024
    monkeypatch.setattr(attach_module, "STDIN_WINDOW", window)

    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_RUNNING)
        received = 0
        while received < window:
            received += len((await peer.next("stdin")).stdin.data)
        assert received == window
        # Nothing more may come until an acknowledgement.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(peer.next("stdin"), 0.5)
        yield ack(1, 10)
        request = await peer.next("stdin")
        assert request.stdin.offset == window and len(request.stdin.data) == 10
        yield job(State.JOB_STATE_SUCCEEDED, exit_code=0)

    outcome = run_against(scenario, stdin=b"x" * (2 * window))
    assert outcome.result is not None and outcome.result.exit_status == 0


def test_stdin_beyond_the_replay_cap_gets_eof_on_a_new_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attach_module, "STDIN_WINDOW", 64 * 1024)
    monkeypatch.setattr(attach_module, "STDIN_REPLAY_CAP", 128 * 1024)
    data = os.urandom(300 * 1024)

    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_RUNNING, attempt=1)
        taken = 0
        while True:
            request = await peer.next("stdin")
            taken += len(request.stdin.data)
            yield ack(1, taken)
            if request.stdin.eof:
                break
        yield job(State.JOB_STATE_RUNNING, attempt=2, worker="w2")
        while True:
            request = await peer.next("stdin")
            if request.stdin.attempt == 2:
                break
        assert request.stdin.eof and request.stdin.offset == 0 and not request.stdin.data
        yield job(State.JOB_STATE_SUCCEEDED, attempt=2, exit_code=0)

    outcome = run_against(scenario, stdin=data)
    assert outcome.result is not None and outcome.result.exit_status == 0
    assert b"standard input cannot be replayed" in outcome.notices


def test_no_stdin_is_an_immediate_eof() -> None:
    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_RUNNING)
        request = await peer.next("stdin")
        assert request.stdin.eof and not request.stdin.data
        yield job(State.JOB_STATE_SUCCEEDED, exit_code=0)

    assert run_against(scenario).result.exit_status == 0  # type: ignore[union-attr]


def test_signals_are_forwarded_and_a_second_interrupt_kills() -> None:
    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_RUNNING)
        os.kill(os.getpid(), signal.SIGTERM)
        assert (await peer.next("signal")).signal == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)
        assert (await peer.next("signal")).signal == signal.SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        assert (await peer.next("kill")).kill
        yield job(State.JOB_STATE_CANCELED, signal=15, kill_requested=True)

    outcome = run_against(scenario, forward_signals=True)
    assert outcome.result is not None and outcome.result.exit_status == 130
    assert outcome.notices == b"kueue: killing job 42\n"
    # The handlers are gone again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_interrupt_of_a_pending_job_exits_130() -> None:
    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_PENDING, attempt=0)
        os.kill(os.getpid(), signal.SIGINT)
        assert (await peer.next("signal")).signal == signal.SIGINT
        yield job(State.JOB_STATE_CANCELED, attempt=0)

    outcome = run_against(scenario, forward_signals=True)
    assert outcome.result is not None and outcome.result.exit_status == 130
    assert outcome.notices == b""


def test_lost_connection_after_acceptance_detaches_with_255() -> None:
    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_RUNNING)
        yield output(1, OUT, 0, b"partial\n")
        raise RuntimeError("the server fell over")

    outcome = run_against(scenario)
    assert outcome.result is not None
    assert outcome.result.exit_status == 255 and outcome.result.detached
    assert outcome.stdout == b"partial\n"
    assert outcome.notices == (
        b"kueue: lost the connection to the server; job 42 goes on detached (kueue log -f 42)\n"
    )


def test_a_broken_stream_after_the_job_ended_finishes_from_the_captured_state() -> None:
    # What grpc.aio does when a stdin write races the server's close: the call
    # fails, unread responses with it. The client asks how the job ended.
    async def scenario(peer: Any) -> AsyncIterator[Any]:
        await peer.next("start")
        yield accepted()
        yield job(State.JOB_STATE_RUNNING)
        yield output(1, OUT, 0, b"seen\n")
        peer.record(output(1, OUT, 5, b"never sent on the stream\n"))
        peer.record(output(1, ERR, 0, b"nor this\n"))
        peer.record(job(State.JOB_STATE_FAILED, exit_code=7))
        raise RuntimeError("the stream breaks")

    outcome = run_against(scenario)
    assert outcome.result is not None and outcome.result.exit_status == 7
    assert not outcome.result.detached
    assert outcome.stdout == b"seen\nnever sent on the stream\n"
    assert outcome.stderr == b"nor this\n"
    assert outcome.notices == b""


def test_unreachable_server_is_an_error_with_255() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def never(peer: Peer) -> AsyncIterator[Any]:
        yield accepted()

    outcome = run_against(never, address=f"127.0.0.1:{port}")
    assert outcome.error is not None and outcome.error.exit_status == 255
    assert "cannot reach the kueue server" in str(outcome.error)


def test_server_without_attach_is_a_clear_error() -> None:
    async def main() -> KueueError:
        server = grpc.aio.server()  # serves nothing: every method is unimplemented
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            with pytest.raises(KueueError) as info:
                await attach(f"127.0.0.1:{port}", "s" * 64, common_pb2.JobSpec(command=["x"], cwd="/"))
            return info.value
        finally:
            await server.stop(None)

    assert "does not support" in str(asyncio.run(main()))


def test_stdin_lost_in_a_worker_reconnect_is_sent_again() -> None:
    feed = attach_module.StdinFeed(None, lambda: None, lambda text: None, window=1000, chunk=100)
    feed.eof = False
    feed._received(b"a" * 250)
    feed._received(b"")
    feed.new_attempt(1)
    feed.start(1)
    sent = [feed.next_message() for _ in range(3)]
    assert [(m.offset, len(m.data), m.eof) for m in sent] == [
        (0, 100, False),
        (100, 100, False),
        (200, 50, True),
    ]
    feed.ack(1, 100)
    assert feed.next_message() is None
    # The worker reconnected and says again it holds 100 bytes: the rest was lost.
    feed.ack(1, 100)
    again = [feed.next_message() for _ in range(2)]
    assert [(m.offset, len(m.data), m.eof) for m in again] == [(100, 100, False), (200, 50, True)]
    feed.ack(1, 250)
    assert feed.next_message() is None


def test_stdin_is_sent_as_read_small_reads_merged_large_ones_split() -> None:
    feed = attach_module.StdinFeed(None, lambda: None, lambda text: None, window=1000, chunk=100)
    feed.eof = False
    big = b"b" * 100
    for data in (b"x" * 30, b"y" * 30, b"z" * 60, big, b"c" * 150):
        feed._received(data)
    feed._received(b"")
    feed.new_attempt(1)
    feed.start(1)
    sent = []
    while (m := feed.next_message()) is not None:
        sent.append(m)
    assert [(m.offset, len(m.data), m.eof) for m in sent] == [
        (0, 100, False),  # three small reads merged, the third cut at the chunk size
        (100, 100, False),
        (200, 100, False),
        (300, 70, True),
    ]
    assert b"".join(m.data for m in sent) == b"x" * 30 + b"y" * 30 + b"z" * 60 + big + b"c" * 150


def test_a_whole_read_goes_out_without_a_copy() -> None:
    feed = attach_module.StdinFeed(None, lambda: None, lambda text: None, window=1000, chunk=100)
    feed.eof = False
    data = bytes(range(100))
    feed._received(data)
    feed.new_attempt(1)
    feed.start(1)
    assert feed._take(100) is data


def test_stdin_past_the_replay_cap_forgets_what_was_acknowledged() -> None:
    feed = attach_module.StdinFeed(
        None, lambda: None, lambda text: None, window=1000, chunk=100, replay_cap=250
    )
    feed.eof = False
    feed.new_attempt(1)
    feed.start(1)
    truth = b""
    offsets = []
    for i in range(8):
        data = bytes([65 + i]) * 60
        truth += data
        feed._received(data)
        while (m := feed.next_message()) is not None:
            assert truth[m.offset : m.offset + len(m.data)] == m.data
            offsets.append(m.offset + len(m.data))
            feed.ack(1, m.offset + len(m.data) - 10)  # a little behind, as a real worker may be
    assert offsets[-1] == len(truth)
    # Only chunks not wholly acknowledged are kept once replay is off.
    assert not feed.keep_all and feed.base <= feed.acked < feed.base + 60
    assert sum(len(c) for c in feed.chunks) == feed.total - feed.base
    # A lost message after a reconnect is still sent again from the kept chunks.
    feed.ack(1, feed.acked)
    m = feed.next_message()
    assert m is not None and truth[m.offset : m.offset + len(m.data)] == m.data


def test_asks_for_paced_output_and_acknowledges_what_it_has_written_out() -> None:
    from kueue_client.attach import OUTPUT_ACK_STEP

    half = b"o" * (OUTPUT_ACK_STEP // 2)

    async def scenario(peer: Peer) -> AsyncIterator[Any]:
        start = await peer.next("start")
        assert start.start.paced_output
        yield accepted()
        yield job(State.JOB_STATE_RUNNING)
        yield output(1, OUT, 0, half)
        yield output(1, ERR, 0, half)  # together a step's worth: acknowledged
        got = (await peer.next("output_ack")).output_ack
        assert (got.attempt, got.stdout_offset, got.stderr_offset) == (1, len(half), len(half))
        # A new attempt counts from its start again.
        yield job(State.JOB_STATE_RUNNING, attempt=2)
        yield output(2, OUT, 0, half + half)
        got = (await peer.next("output_ack")).output_ack
        assert (got.attempt, got.stdout_offset, got.stderr_offset) == (2, 2 * len(half), 0)
        yield job(State.JOB_STATE_SUCCEEDED, attempt=2, exit_code=0)

    outcome = run_against(scenario)
    assert outcome.result is not None and outcome.result.exit_status == 0, outcome.notices
    assert outcome.stdout == half + half + half
