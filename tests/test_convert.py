"""Records to messages: the encoded Assign equals the message built the usual way."""

from __future__ import annotations

from kueue.v1 import common_pb2
from kueue.v1 import worker_service_pb2 as wpb
from kueue_server import convert
from kueue_server.model import JobRecord, Shape


def usual_assign(job: JobRecord) -> wpb.ConnectResponse:
    return wpb.ConnectResponse(
        assign=wpb.Assign(job_id=job.id, attempt=job.attempt, spec=convert.full_spec(job))
    )


def test_encoded_assign_equals_the_message_with_the_full_spec() -> None:
    spec = common_pb2.JobSpec(
        command=["echo", "é"],
        cwd="/tmp",
        env={"A": "1", "KUEUE_ARRAY_INDEX": "from the submitter", "B": "x" * 300},
        resources=common_pb2.Resources(slots=1, cpus=2, global_resources={"gpu": 1}),
        stdin_pipe=True,
    )
    other = common_pb2.JobSpec(command=["true"], cwd="/")
    encoder = convert.AssignEncoder()
    jobs = [
        JobRecord(1, 7, spec, {"KUEUE_ARRAY_INDEX": "1", "C": ""}, Shape(), attempt=1),
        JobRecord(2, 7, spec, {"KUEUE_ARRAY_INDEX": "2"}, Shape(), attempt=3),
        JobRecord(3, 7, spec, None, Shape(), attempt=1),
        JobRecord(1 << 40, 8, other, None, Shape(), attempt=2),
        # The same spec id with another spec (never made by the server): not the cached one.
        JobRecord(5, 7, other, {"X": "y"}, Shape(), attempt=1),
    ]
    for job in jobs * 2:
        encoded = encoder.encode(job)
        assert wpb.ConnectResponse.FromString(encoded) == usual_assign(job), job.id
    # The extra env wins over the spec's own value, as with full_spec.
    first = wpb.ConnectResponse.FromString(encoder.encode(jobs[0]))
    assert first.assign.spec.env["KUEUE_ARRAY_INDEX"] == "1"
    assert first.assign.spec.env["A"] == "1"


def test_the_spec_cache_stays_bounded() -> None:
    encoder = convert.AssignEncoder()
    for i in range(3 * convert.MAX_ENCODED_SPECS):
        spec = common_pb2.JobSpec(command=["true", str(i)], cwd="/")
        job = JobRecord(i + 1, i, spec, None, Shape(), attempt=1)
        assert wpb.ConnectResponse.FromString(encoder.encode(job)) == usual_assign(job)
        assert len(encoder._specs) <= convert.MAX_ENCODED_SPECS


def test_a_worker_that_takes_environ_blocks_gets_the_environment_as_one() -> None:
    spec = common_pb2.JobSpec(
        command=["true"],
        cwd="/tmp",
        env={"A": "1", "PATH": "/bin", "U": "é", "B": "x" * 300},
        stdin_pipe=True,
    )
    encoder = convert.AssignEncoder()
    jobs = [
        JobRecord(1, 7, spec, {"KUEUE_ARRAY_ID": "1"}, Shape(), attempt=1),
        JobRecord(2, 7, spec, None, Shape(), attempt=2),
        # The job's own value replaces the spec's, once only.
        JobRecord(3, 7, spec, {"A": "mine", "KUEUE_ARRAY_ID": "3"}, Shape(), attempt=1),
    ]
    for job in jobs * 2:
        msg = wpb.ConnectResponse.FromString(encoder.encode(job, environ_block=True))
        usual = usual_assign(job).assign
        assert not msg.assign.spec.env
        assert msg.assign.spec == convert.full_spec(job, include_env=False)
        assert (msg.assign.job_id, msg.assign.attempt) == (usual.job_id, usual.attempt)
        entries = msg.assign.environ.split(b"\0")
        assert entries.pop() == b""
        pairs = [entry.decode().split("=", 1) for entry in entries]
        assert dict(pairs) == dict(usual.spec.env) and len(pairs) == len(usual.spec.env)
        # The same encoder still serves workers that do not take blocks.
        assert wpb.ConnectResponse.FromString(encoder.encode(job)) == usual_assign(job)


def test_an_environment_a_block_cannot_carry_goes_in_the_spec() -> None:
    # "=" in a name and a NUL: the worker refuses them at the spawn, as Popen does.
    for env, extra in (({"A=B": "1"}, None), ({"N": "a\0b"}, None), ({"A": "1"}, {"X=Y": "2"})):
        spec = common_pb2.JobSpec(command=["true"], cwd="/", env=env)
        job = JobRecord(1, 1, spec, extra, Shape(), attempt=1)
        assert wpb.ConnectResponse.FromString(
            convert.AssignEncoder().encode(job, environ_block=True)
        ) == usual_assign(job)
    # The worker's own environment is taken: no block.
    spec = common_pb2.JobSpec(command=["true"], cwd="/", env={"A": "1"}, use_worker_env=True)
    job = JobRecord(1, 1, spec, None, Shape(), attempt=1)
    assert wpb.ConnectResponse.FromString(
        convert.AssignEncoder().encode(job, environ_block=True)
    ) == usual_assign(job)
