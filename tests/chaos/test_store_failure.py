"""The store fails (a full disk): clear errors, reads go on, nothing acknowledged is lost."""

from __future__ import annotations

import itertools
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kueue import rpc
from kueue.v1 import common_pb2, job_service_pb2, job_service_pb2_grpc
from kueue_client import job_spec
from tests.cluster import Cluster, wait_for


def test_full_disk_fails_writes_clearly_and_loses_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c")
    work = tmp_path / "work"
    work.mkdir()
    channel = None
    try:
        # Every file the server writes stops growing at 1.5 MB: like a full disk.
        cluster.start_server(file_size_limit=1_500_000)
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        (small,) = cluster.kueue("cmd", "echo", "small", cwd=work).stdout.split()
        cluster.kueue("wait", small)
        # SubmitJobs straight over gRPC, to see the status code itself.
        channel = rpc.sync_channel(f"127.0.0.1:{cluster.port}", [], None)
        stub = rpc.AuthedStub(
            job_service_pb2_grpc.JobServiceStub(channel), "kueue.v1.JobService", cluster.secret
        )
        accepted: dict[str, int] = {}  # marker -> job id, for every submission the server took
        refusals: dict[str, grpc.RpcError] = {}  # marker -> the error, for every one it refused
        markers = (f"try-{n}" for n in itertools.count())

        def submit() -> grpc.RpcError | None:
            marker = next(markers)
            spec = job_spec(["echo", marker], ram_mb=10, cwd=str(work))
            try:
                reply = stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(spec=spec), timeout=30)
            except grpc.RpcError as exc:
                refusals[marker] = exc
                return exc
            (accepted[marker],) = reply.job_ids
            return None

        # Some accepted for sure, then the job that fills the disk, then more until refused.
        assert submit() is None and submit() is None
        big_script = "import sys\nfor i in range(30000): sys.stdout.write(f'{i:07d}' + 'y' * 92 + '\\n')\n"
        (big,) = cluster.kueue("cmd", sys.executable, "-c", big_script, cwd=work).stdout.split()

        wait_for(submit, 60, "a submission to fail on the full store")
        # Refused while the disk is full, every time, with the same clear error.
        for _ in range(3):
            assert submit() is not None
        for exc in refusals.values():
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (exc.code(), exc.details())
            assert "could not store" in exc.details() and "nothing was changed" in exc.details(), (
                exc.details()
            )
        # The CLI says so in one line.
        cli = cluster.kueue("cmd", "echo", "try-cli", cwd=work, check=False)
        assert cli.returncode != 0 and "could not store" in cli.stderr, cli
        assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
        # Reads still work and show what was stored before.
        client = cluster.client()
        got = client.get_job(int(small))
        assert got.job.state == common_pb2.JOB_STATE_SUCCEEDED and got.stdout_tail == b"small\n"
        assert cluster.kueue("log", small).stdout == "small\n"
        assert {int(small), int(big), *accepted.values()} <= {j.id for j in client.list_jobs().jobs}
        client.close()
        assert cluster.server is not None and cluster.server.poll() is None
        # Health checkers (no secret needed) learn that the server cannot store.
        health = health_pb2_grpc.HealthStub(channel)

        def health_is(status: int) -> bool:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            return reply.status == status

        wait_for(lambda: health_is(health_pb2.HealthCheckResponse.NOT_SERVING), 30, "NOT_SERVING")

        # Space again: restart without the limit. The worker resends what was
        # not acknowledged; the refused submissions never existed.
        cluster.stop_server(signal.SIGKILL)
        cluster.start_server()
        client = cluster.client()
        jobs = client.wait([int(small), int(big), *accepted.values()])
        assert all(j.state == common_pb2.JOB_STATE_SUCCEEDED for j in jobs), [(j.id, j.state) for j in jobs]
        log = cluster.kueue("log", big).stdout
        assert log.count("\n") == 30000 and log.endswith("0029999" + "y" * 92 + "\n")
        # Every accepted submission is there, as itself, with its output.
        for marker, job_id in accepted.items():
            got = client.get_job(job_id)
            assert (
                list(got.job.spec.command) == ["echo", marker] and got.stdout_tail == f"{marker}\n".encode()
            )
        # And nothing but them: no job of a refused submission appeared.
        echoes = {
            j.spec.command[1]: j.id
            for j in client.list_jobs().jobs
            if len(j.spec.command) == 2 and j.spec.command[0] == "echo"
        }
        assert echoes == {"small": int(small), **accepted}, (echoes, sorted(refusals))
        client.close()
    finally:
        if channel is not None:
            channel.close()
        cluster.close()
        print(cluster.logs())
