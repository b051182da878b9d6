"""The worker's stream to the server: register, heartbeat, dispatch, reconnect.

One session per Connect stream. Everything written to a stream goes through
the session's queue and its single writer task, so messages never interleave.
When a stream breaks, jobs keep running and their output stays buffered in
the attempt state; the next session re-registers and resends it.

Timeouts here use asyncio.timeout(), never asyncio.wait_for(): the end of a
session cancels its tasks and waits for them, and on Python 3.11 wait_for()
swallows a cancel that arrives just as what it waits on completes (CPython
gh-86296, fixed in 3.12). A job ending sets heartbeat_due, often in the very
moment its Finished hits a dead stream: the heartbeat task then outlived its
cancel, the session never ended and the worker never reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import grpc

from kueue import rpc, wire, write_pace
from kueue.logs import event
from kueue.v1 import worker_service_pb2 as wpb
from kueue_worker.worker import Worker, request

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.2
BACKOFF_MAX = 10.0
# A wrong secret is fixed by a person, not by retrying quickly.
AUTH_RETRY_SECONDS = 30.0
# A server that accepts the stream but never answers Register is treated as down.
REGISTER_TIMEOUT = 60.0
# Logged when the server ends the stream because it is stopping.
STOPPING_REASON = "the server is stopping"
# After a write failed, how long the stream's status may take to arrive.
STATUS_AFTER_FAILED_WRITE = 5.0
# How long a leaving worker waits for the server to take its last messages.
LEAVE_TIMEOUT = 10.0
# Heartbeats asked for early (a job started or ended, draining began) come at
# most this often: at hundreds of short jobs a second, one per start and end
# would cost more than the jobs, and the server learns the same a moment later.
MIN_HEARTBEAT_GAP = 0.1
# At most this many messages, or about this many bytes, in one batch write.
BATCH_MESSAGES = 256
BATCH_BYTES = 1024 * 1024
BATCH_FIELD = wpb.ConnectRequest.DESCRIPTOR.fields_by_name["batch"].number
# After a quiet moment the writer waits this long before writing, so that
# messages a moment apart (a finish, the next start, a heartbeat) share one
# write; after a batch that did not fill up, as long as write_pace says.
COALESCE_SECONDS = write_pace.QUIET_SECONDS


class _Session:
    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self.call = call
        # Small messages, sent before any output.
        self.control: deque[wpb.ConnectRequest] = deque()
        # Sent once every Finished known to the worker has gone (Leaving must
        # not overtake the finishes of the jobs a drain waited for). None asks
        # the writer to half-close the stream once all output has gone.
        self.after_finishes: deque[wpb.ConnectRequest | None] = deque()
        self.wake = asyncio.Event()
        self.registered = asyncio.Event()
        self.heartbeat_interval = 0.0
        # The server reads batches (Registered.batches).
        self.batches = False

    def send(self, msg: wpb.ConnectRequest) -> None:
        self.control.append(msg)
        self.wake.set()

    def send_after_finishes(self, msg: wpb.ConnectRequest | None) -> None:
        self.after_finishes.append(msg)
        self.wake.set()

    async def write_all(
        self, pull: Callable[[], wpb.ConnectRequest | bytes | None], finishes_unsent: Callable[[], bool]
    ) -> None:
        """Write control messages first, then output pulled one message at a
        time: what the stream cannot take yet stays with the attempts (and
        their spool files), not in a queue here."""
        closing = False
        while True:
            if self.batches:
                pause = await self._write_batch(pull, finishes_unsent)
                if pause is not None:
                    if pause:
                        await asyncio.sleep(pause)
                    continue
            if self.control:
                await self.call.write(self.control.popleft())
                continue
            if self.after_finishes and not finishes_unsent():
                msg = self.after_finishes.popleft()
                if msg is None:
                    closing = True
                else:
                    await self.call.write(msg)
                continue
            out = pull()
            if out is not None:
                await self.call.write(out)
                continue
            if closing:
                await self.call.done_writing()
                return
            self.wake.clear()
            await self.wake.wait()
            if self.batches:
                # Let what else is about to be said join it in one write.
                await asyncio.sleep(COALESCE_SECONDS)

    async def _write_batch(
        self, pull: Callable[[], wpb.ConnectRequest | bytes | None], finishes_unsent: Callable[[], bool]
    ) -> float | None:
        """Control messages, then pulled ones, in one write, in the order the
        unbatched writer would send them; how long to wait before the next
        write (0 after a full batch), or None when there is nothing to send
        (the caller goes on one by one: Leaving, the half-close, waiting)."""
        if self.after_finishes and not finishes_unsent():
            return None
        messages: list[wpb.ConnectRequest | bytes] = []
        size = 0
        while self.control and len(messages) < BATCH_MESSAGES and size < BATCH_BYTES:
            msg = self.control.popleft()
            messages.append(msg)
            size += wire.size(msg)
        while len(messages) < BATCH_MESSAGES and size < BATCH_BYTES:
            if self.after_finishes and not finishes_unsent():
                break  # Leaving goes after these, on its own
            out = pull()
            if out is None:
                break
            messages.append(out)
            size += wire.size(out)
        if not messages:
            return None
        if len(messages) == 1:
            await self.call.write(messages[0])
        else:
            await self.call.write(wire.batch(BATCH_FIELD, messages))
        if len(messages) >= BATCH_MESSAGES or size >= BATCH_BYTES:
            return 0.0
        return write_pace.after_batch(len(messages))


class MalformedFromServer(Exception):
    """The server sent a message that does not parse: the stream ends (the
    jobs go on) and a new one is opened, as after any broken stream."""


class _WorkerServiceStub:
    """WorkerService whose Connect also takes requests already encoded by
    kueue.wire (output, sent without protobuf's copies of its data)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.Connect = channel.stream_stream(
            "/kueue.v1.WorkerService/Connect",
            request_serializer=wire.serialize,
            response_deserializer=rpc.tolerant(wpb.ConnectResponse.FromString),
        )


class Connection:
    def __init__(
        self,
        worker: Worker,
        server_address: str,
        shared_secret: str,
        config_path: Path | None,
        interval: float,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._credentials = credentials
        self.worker = worker
        self.server_address = server_address
        self._secret = shared_secret
        self._config_path = config_path
        self._default_interval = interval
        self._session: _Session | None = None
        self._session_ended = asyncio.Event()
        self._stopping = asyncio.Event()
        self._outage_since: float | None = None
        self._outage_reason = ""
        self._auth_failure = ""
        # The server said it is stopping (ServerStopping) on the current stream.
        self._told_stopping = False
        # Streams opened and registrations answered, for logs and tests.
        self.streams_opened = 0
        self.registrations = 0

    async def run(self) -> None:
        """Keep a session open until leave() is done; reconnect with backoff."""
        backoff = BACKOFF_INITIAL
        async with rpc.aio_channel(self.server_address, rpc.CHANNEL_OPTIONS, self._credentials) as channel:
            stub = rpc.AuthedStub(_WorkerServiceStub(channel), "kueue.v1.WorkerService", self._secret)
            while not self._stopping.is_set():
                registered_before = self.registrations
                began = time.monotonic()
                self._told_stopping = False
                try:
                    await self._session_once(stub)
                    reason = "the server closed the stream"
                except grpc.aio.AioRpcError as exc:
                    reason = self._failure(exc)
                except TimeoutError:
                    reason = f"no answer to Register within {REGISTER_TIMEOUT:.0f} s"
                except MalformedFromServer as exc:
                    reason = str(exc)
                except Exception as exc:
                    # Whatever broke this stream, jobs keep running and the next one may work.
                    log.debug("stream failed", exc_info=True)
                    reason = f"{type(exc).__name__}: {exc}"
                if self._told_stopping:
                    reason = STOPPING_REASON
                if self._stopping.is_set():
                    break
                # A stream that registered and lived a while was a success: retry
                # quickly. One closed right after registering must not make a busy loop.
                lived = time.monotonic() - began
                if self.registrations > registered_before and lived > BACKOFF_MAX:
                    backoff = BACKOFF_INITIAL
                delay = AUTH_RETRY_SECONDS if reason == self._auth_failure else backoff
                backoff = min(BACKOFF_MAX, backoff * 2)
                self._note_outage(reason)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay * random.uniform(0.5, 1.0)):
                        await self._stopping.wait()

    def _failure(self, exc: grpc.aio.AioRpcError) -> str:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            details = exc.details() or ""
            if not details or "shared secret" in details:
                where = self._config_path or "the config file"
                message = (
                    "the shared secret does not match the server's "
                    f"(check common_settings.shared_secret in {where})"
                )
            else:
                message = f"the server refused authentication: {details}"
            if self._outage_reason != message:
                log.error("%s", message)
            self._outage_reason = self._auth_failure = message
            return message
        if exc.code() == grpc.StatusCode.UNAVAILABLE and exc.details() == rpc.SERVER_STOPPING:
            # A planned stop: nothing to do but what any outage asks (keep the
            # jobs, reconnect with backoff), so only the words differ.
            return STOPPING_REASON
        return f"{exc.code().name}: {exc.details()}"

    def _note_outage(self, reason: str) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            if reason != self._outage_reason:
                running = len(self.worker.processes)
                event(
                    log,
                    "server_unreachable",
                    "no connection to the server at %s (%s); %d job(s) keep running, retrying",
                    self.server_address,
                    reason,
                    running,
                    level=logging.WARNING,
                    worker=self.worker.name,
                    server=self.server_address,
                    reason=reason,
                    running=running,
                )
            self._outage_reason = reason

    def _registered(self, session: _Session, msg: wpb.Registered) -> None:
        interval = msg.heartbeat_interval_seconds
        # The server may ask for more frequent heartbeats (short worker timeout), never fewer.
        session.heartbeat_interval = (
            min(interval, self._default_interval) if interval > 0 else self._default_interval
        )
        self.registrations += 1
        session.batches = msg.batches
        # The server has them now (it answers Registered after taking them).
        self.worker.killed_after_restart.clear()
        name, wid = self.worker.name, self.worker.worker_id
        if self._outage_since is not None:
            outage = time.monotonic() - self._outage_since
            event(
                log,
                "worker_reconnected",
                "reconnected to the server at %s after %.1f s",
                self.server_address,
                outage,
                worker=name,
                worker_id=wid,
                server=self.server_address,
                outage=round(outage, 3),
            )
        else:
            event(
                log,
                "worker_registered",
                "registered with the server at %s (server %s) as %s, id %s",
                self.server_address,
                msg.server_version or "?",
                name,
                wid,
                worker=name,
                worker_id=wid,
                server=self.server_address,
            )
        self._outage_since = None
        self._outage_reason = self._auth_failure = ""
        session.registered.set()

    async def _session_once(self, stub: rpc.AuthedStub) -> None:
        self.streams_opened += 1
        session = _Session(stub.Connect())
        self._session = session
        self._session_ended.clear()
        # attach() queues Register before any other message can.
        self.worker.attach(session.send, session.wake.set)
        tasks = [
            asyncio.create_task(self._read_all(session), name="read"),
            asyncio.create_task(
                session.write_all(self.worker.next_encoded, self.worker.finishes_unsent), name="write"
            ),
            asyncio.create_task(self._heartbeats(session), name="heartbeat"),
        ]
        reader = tasks[0]
        try:
            pending = set(tasks)
            while not reader.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not reader and not task.cancelled() and task.exception() is not None:
                        # A write fails when the stream ends under it ("RPC already
                        # finished", "Internal error from Core"); the status the
                        # server ended it with, which the reader gets, says why.
                        await asyncio.wait({reader}, timeout=STATUS_AFTER_FAILED_WRITE)
                        if reader.done():
                            reader.result()
                            return
                    # The writer or the heartbeat failing ends the stream too.
                    task.result()
        finally:
            self.worker.detach(session.send)
            self._session = None
            for task in tasks:
                task.cancel()
            session.call.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._session_ended.set()

    async def _read_all(self, session: _Session) -> None:
        async with asyncio.timeout(REGISTER_TIMEOUT):
            response = await session.call.read()
        while isinstance(response, wpb.ConnectResponse):
            kind = response.WhichOneof("msg")
            if kind == "registered" and not session.registered.is_set():
                self._registered(session, response.registered)
            elif kind == "server_stopping":
                self._told_stopping = True
                return  # ends the stream; the jobs keep running
            elif kind == "batch":
                for inner in response.batch.messages:
                    inner_kind = inner.WhichOneof("msg")
                    if inner_kind == "server_stopping":
                        self._told_stopping = True
                        return
                    if inner_kind == "registered" and not session.registered.is_set():
                        # Not allowed there; taken anyway rather than never registering.
                        self._registered(session, inner.registered)
                    elif inner_kind in ("batch", "registered"):
                        log.warning("ignoring a %s inside a batch from the server", inner_kind)
                    else:
                        await self.worker.handle(inner)
            else:
                await self.worker.handle(response)
            response = await session.call.read()
        if isinstance(response, rpc.Malformed):
            raise MalformedFromServer(f"the server sent a message that does not parse: {response.error}")

    async def _heartbeats(self, session: _Session) -> None:
        await session.registered.wait()
        loop = asyncio.get_running_loop()
        while True:
            self.worker.heartbeat_due.clear()
            session.send(request(self.worker.heartbeat_message()))
            sent = loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(session.heartbeat_interval):
                    await self.worker.heartbeat_due.wait()
            gap = MIN_HEARTBEAT_GAP - (loop.time() - sent)
            if gap > 0:
                await asyncio.sleep(gap)

    def announce_leaving(self, reason: str) -> bool:
        """Tell the server we are going, before the jobs are stopped, so it
        queues them again at once and takes their finishes as stale."""
        session = self._session
        if session is None or not session.registered.is_set():
            return False
        msg = request(wpb.Leaving(reason=reason))
        if self.worker.finishes_unsent():
            # It must not overtake the finishes of the jobs a drain waited for.
            session.send_after_finishes(msg)
        else:
            # Nor may the finishes of the jobs about to be stopped overtake it:
            # one can be ready before the writer's next turn.
            session.send(msg)
        return True

    async def leave(self) -> None:
        """Close the stream and stop reconnecting."""
        self._stopping.set()
        session = self._session
        if session is None or not session.registered.is_set():
            return
        session.send_after_finishes(None)
        # Reading on until the server ends the stream lets the last acks arrive.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self._session_ended.wait()
