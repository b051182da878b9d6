"""The Python API of Kueue; the `kueue` command is built on it.

    from kueue_client import Client, job_spec

    with Client() as client:
        ids = client.submit(job_spec(["python", "train.py"], cpus=4)).job_ids
        jobs = client.wait(ids)

Every method raises KueueError (one line, fit to show a user) instead of
grpc.RpcError.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

import kueue.config
import kueue.rpc
from kueue.v1 import (
    cluster_service_pb2,
    cluster_service_pb2_grpc,
    common_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
)
from kueue_client.channel import DEFAULT_TIMEOUT, ChannelOwner, open_channel
from kueue_client.errors import EXIT_USAGE, KueueError, from_rpc_error
from kueue_client.spec import job_spec
from kueue_client.status import FINAL_STATES, parse_states

if TYPE_CHECKING:
    from kueue_client.attach import AttachResult

__all__ = ["DEFAULT_TAIL_BYTES", "DEFAULT_TIMEOUT", "Client", "KueueError", "job_spec"]

DEFAULT_TAIL_BYTES = 16 * 1024
# How long `wait` keeps reconnecting after the server went away: a restart
# must not fail a long `kueue cmd --wait`, a server gone for good must.
WAIT_RECONNECT_SECONDS = 120.0
# grpc backs off up to 120 s between connection attempts; a waiting client
# should notice a restarted server within seconds.
RECONNECT_OPTIONS = [("grpc.max_reconnect_backoff_ms", 5000)]

_STREAMS = {
    "stdout": common_pb2.OutputStream.OUTPUT_STREAM_STDOUT,
    "stderr": common_pb2.OutputStream.OUTPUT_STREAM_STDERR,
}


class Client(ChannelOwner):
    """A connection to the kueue server named in the config file.

    `address` and `secret` override the config file's; with both given no
    config file is read at all.
    """

    def __init__(
        self,
        config: kueue.config.Config | None = None,
        *,
        config_path: str | Path | None = None,
        address: str | None = None,
        secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if config is None and (address is None or secret is None):
            try:
                config = kueue.config.load(config_path)
            except kueue.config.ConfigError as exc:
                raise KueueError(str(exc)) from None
        self.config = config
        self.address = address or (config.server_address if config else "")
        self.config_path = config.path.absolute() if config and config.path else None
        self.timeout = timeout
        if secret is None:
            assert config is not None
            secret = config.common_settings.shared_secret
        self._secret = secret
        self._channel_options = list(channel_options)
        self._channel, self._credentials = open_channel(
            config, self.address, [*RECONNECT_OPTIONS, *channel_options]
        )
        jobs = job_service_pb2_grpc.JobServiceStub(self._channel)
        cluster = cluster_service_pb2_grpc.ClusterServiceStub(self._channel)
        self._jobs = kueue.rpc.AuthedStub(jobs, "kueue.v1.JobService", secret)
        self._cluster = kueue.rpc.AuthedStub(cluster, "kueue.v1.ClusterService", secret)

    # ------------------------------------------------------------ plumbing

    def _error(self, exc: grpc.RpcError) -> KueueError:
        return from_rpc_error(exc, self.address, self.config_path)

    def _unary(self, stub: Any, method: str, request: Any) -> Any:
        try:
            return getattr(stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _stream(self, call: Any) -> Iterator[Any]:
        """Iterates a server stream, translating errors and canceling the call
        when the caller stops early (break, exception, Ctrl-C)."""
        try:
            yield from call
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        finally:
            call.cancel()

    # ------------------------------------------------------------ jobs

    def submit(
        self,
        spec: common_pb2.JobSpec,
        instances: Sequence[Mapping[str, str] | job_service_pb2.JobInstance] | None = None,
    ) -> job_service_pb2.SubmitJobsResponse:
        """Queues one job, or one per instance (each adding its env to spec's), in one call."""
        request = job_service_pb2.SubmitJobsRequest(spec=spec)
        add = request.instances.add
        for instance in instances or ():
            if isinstance(instance, job_service_pb2.JobInstance):
                request.instances.append(instance)
            else:
                # Filled in place: add(env=...) copies a dict made first, at
                # twice the cost (an array of 2 000: 6 against 3 ms).
                add().env.update(instance)
        return self._unary(self._jobs, "SubmitJobs", request)

    def list_jobs(
        self, states: Iterable[int | str] = (), limit: int = 0, include_env: bool = False
    ) -> job_service_pb2.ListJobsResponse:
        """The `limit` most recent jobs in `states` (names like "running" or
        JobState values; empty: all), oldest first, with the summary counters."""
        request = job_service_pb2.ListJobsRequest(
            states=parse_states(states), limit=limit, include_env=include_env
        )
        return self._unary(self._jobs, "ListJobs", request)

    def get_job(self, id: int, tail_bytes: int = DEFAULT_TAIL_BYTES) -> job_service_pb2.GetJobResponse:
        """One job with the last `tail_bytes` of its captured stdout and stderr."""
        return self._unary(self._jobs, "GetJob", job_service_pb2.GetJobRequest(id=id, tail_bytes=tail_bytes))

    def cancel(self, id: int, kill: bool = False) -> common_pb2.Job:
        """Cancels a pending or offered job; a running one only with `kill`."""
        resp = self._unary(self._jobs, "CancelJob", job_service_pb2.CancelJobRequest(id=id, kill=kill))
        return resp.job

    def clean(self, all: bool = False) -> int:
        """Forgets succeeded and canceled jobs (with `all` failed ones too); returns how many."""
        return self._unary(self._jobs, "CleanJobs", job_service_pb2.CleanJobsRequest(all=all)).removed

    def watch(self, ids: Iterable[int] = ()) -> Iterator[job_service_pb2.WatchJobsResponse]:
        """The current state of each job, then every change, until the caller stops."""
        call = self._jobs.WatchJobs(job_service_pb2.WatchJobsRequest(ids=list(ids)))
        return self._stream(call)

    def watch_list(
        self,
        states: Iterable[int | str] = (),
        limit: int = 50,
        include_workers: bool = False,
        min_interval: float = 0.0,
    ) -> ListWatch:
        """A live view of the `limit` most recent jobs in `states`: the whole
        window first, then only what changed, with the counters (and the
        workers), at most once per `min_interval` seconds (0: the server's
        default, 250 ms). Iterate it for WatchListResponse messages; cancel()
        ends it from any thread."""
        request = job_service_pb2.WatchListRequest(
            states=parse_states(states),
            limit=limit,
            include_workers=include_workers,
            min_interval_ms=round(min_interval * 1000),
        )
        return ListWatch(self._jobs.WatchList(request), self._error)

    def wait(
        self, ids: Iterable[int], on_change: Callable[[common_pb2.Job], None] | None = None
    ) -> list[common_pb2.Job]:
        """Blocks until every job has finished or was canceled; returns them in
        the order of `ids`. `on_change` sees every state reported meanwhile.

        A job that does not exist, or is removed while waited for, is an error.
        If the server goes away after the wait began, it is asked again for a
        while (WAIT_RECONNECT_SECONDS) since jobs keep running on their workers.
        """
        wanted = list(dict.fromkeys(int(i) for i in ids))
        latest: dict[int, common_pb2.Job] = {}
        if not wanted:
            return []
        lost_since: float | None = None
        delay = 0.5
        while True:
            pending = [i for i in wanted if i not in latest or latest[i].state not in FINAL_STATES]
            stream = self.watch(pending)
            try:
                for resp in stream:
                    lost_since, delay = None, 0.5
                    if resp.removed:
                        raise _removed_error(resp.removed_id, seen=resp.removed_id in latest)
                    job = resp.job
                    if job.id not in latest or latest[job.id] != job:
                        latest[job.id] = job
                        if on_change is not None:
                            on_change(job)
                    if all(i in latest and latest[i].state in FINAL_STATES for i in wanted):
                        return [latest[i] for i in wanted]
            except KueueError as exc:
                # Only a server that answered before is waited for; one never
                # reached is a configuration problem to report at once.
                if exc.code != "UNAVAILABLE" or not latest:
                    raise
            finally:
                stream.close()  # cancels the call at once, not when collected
            now = time.monotonic()
            lost_since = now if lost_since is None else lost_since
            if now - lost_since > WAIT_RECONNECT_SECONDS:
                raise KueueError(
                    f"lost the kueue server at {self.address} for {WAIT_RECONNECT_SECONDS:.0f} s "
                    "while waiting; the jobs may still run (see kueue ls)"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def read_output(
        self,
        id: int,
        streams: Iterable[int | str] = ("stdout",),
        offset: int = 0,
        follow: bool = False,
    ) -> Iterator[job_service_pb2.ReadOutputResponse]:
        """Captured output from byte `offset` (negative: from the end); with
        `follow`, keeps streaming until the job has ended."""
        wanted = [_STREAMS[s] if isinstance(s, str) else s for s in streams]
        request = job_service_pb2.ReadOutputRequest(id=id, streams=wanted, offset=offset, follow=follow)
        return self._stream(self._jobs.ReadOutput(request))

    def attach(
        self,
        spec: common_pb2.JobSpec,
        *,
        stdin: int | None = None,
        stdout: int = 1,
        stderr: int = 2,
        kill_on_detach: bool = False,
        status_line: bool = False,
        forward_signals: bool = False,
    ) -> AttachResult:
        """Runs `spec` on a worker as if it ran here (`kueue run`): blocks until it ends.

        The job's stdout and stderr are written to the file descriptors
        `stdout` and `stderr` as they are produced; `stdin` (a file descriptor,
        None: empty) is streamed to it. Returns the job's last state and the
        exit status a shell would give (128+N for signal N). `status_line`
        shows a waiting line on `stderr` (a terminal); `forward_signals`
        (main thread only) forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to the
        job, and a second SIGINT within 2 s kills it.

        Reading `stdin` is done by a thread that stays blocked in its read
        after the call returns if no data comes, so pass a descriptor that is
        not read by anything else afterwards. Not for use inside a running
        asyncio loop: await kueue_client.attach.attach() there.

        Attach runs on an event loop kept for the calling thread (see
        attach.run_sync), so one thread should not share it with asyncio.run
        calls of its own that use grpc.aio.
        """
        from kueue_client.attach import attach, run_sync

        return run_sync(
            attach(
                self.address,
                self._secret,
                spec,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                kill_on_detach=kill_on_detach,
                status_line=status_line,
                forward_signals=forward_signals,
                channel_options=self._channel_options,
                config_path=self.config_path,
                credentials=self._credentials,
            )
        )

    # ------------------------------------------------------------ cluster

    def list_workers(self, include_disconnected: bool = False) -> list[common_pb2.Worker]:
        request = cluster_service_pb2.ListWorkersRequest(include_disconnected=include_disconnected)
        return list(self._unary(self._cluster, "ListWorkers", request).workers)

    def get_worker(self, id: str) -> cluster_service_pb2.GetWorkerResponse:
        """A worker (by id or name) and the jobs offered to or running on it."""
        return self._unary(self._cluster, "GetWorker", cluster_service_pb2.GetWorkerRequest(id=id))

    def drain_worker(self, id: str, drain: bool = True) -> common_pb2.Worker:
        """Stop (or resume) offering new jobs to a worker (by id or name)."""
        request = cluster_service_pb2.DrainWorkerRequest(id=id, drain=drain)
        return self._unary(self._cluster, "DrainWorker", request).worker

    def list_resources(self) -> list[common_pb2.GlobalResource]:
        return list(
            self._unary(self._cluster, "ListResources", cluster_service_pb2.ListResourcesRequest()).resources
        )

    def server_info(self, timeout: float | None = None) -> cluster_service_pb2.GetServerInfoResponse:
        """Cheap call that proves the server is reachable and accepts our secret."""
        try:
            return self._cluster.GetServerInfo(
                cluster_service_pb2.GetServerInfoRequest(), timeout=timeout or self.timeout
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None


class ListWatch:
    """The stream of Client.watch_list."""

    def __init__(self, call: Any, error: Callable[[grpc.RpcError], KueueError]) -> None:
        self._call = call
        self._error = error

    def __iter__(self) -> Iterator[job_service_pb2.WatchListResponse]:
        try:
            yield from self._call
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def cancel(self) -> None:
        self._call.cancel()


def _removed_error(job_id: int, seen: bool) -> KueueError:
    if seen:
        return KueueError(f"job {job_id} was removed before it finished")
    return KueueError(f"no job {job_id}", exit_status=EXIT_USAGE, code="NOT_FOUND")
