"""kueue_client/submission.py: the SubmitJobs request `kueue cmd` encodes by
hand, and the answer it reads back, against protobuf's own encoding and the
generated descriptors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kueue
from kueue.v1 import common_pb2, job_service_pb2
from kueue_client import submission
from kueue_client.spec import SpecFields, spec_fields


def numbers(descriptor: object) -> dict[str, int]:
    return {f.name: f.number for f in descriptor.fields}  # type: ignore[attr-defined]


def test_the_field_numbers_are_the_protos() -> None:
    assert numbers(common_pb2.JobSpec.DESCRIPTOR) == submission.JOB_SPEC
    assert numbers(common_pb2.Resources.DESCRIPTOR) == submission.RESOURCES
    assert numbers(job_service_pb2.SubmitJobsRequest.DESCRIPTOR) == submission.SUBMIT_JOBS_REQUEST
    assert numbers(job_service_pb2.JobInstance.DESCRIPTOR) == submission.JOB_INSTANCE
    assert numbers(job_service_pb2.SubmitJobsResponse.DESCRIPTOR) == submission.SUBMIT_JOBS_RESPONSE
    method = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].methods_by_name["SubmitJobs"]
    assert f"/{method.containing_service.full_name}/{method.name}" == submission.SUBMIT_JOBS


def test_spec_fields_say_all_a_submission_spec_says() -> None:
    # Every JobSpec field but stdin_pipe (attached runs only), resources spread out:
    # a field added to the proto must be added here and to the encoder.
    spec = set(numbers(common_pb2.JobSpec.DESCRIPTOR)) - {"resources", "stdin_pipe"}
    assert {f.name for f in dataclasses.fields(SpecFields)} == spec | set(
        numbers(common_pb2.Resources.DESCRIPTOR)
    )


text = st.text(max_size=20)
uint32 = st.integers(0, kueue.UINT32_MAX)
fields_strategy = st.builds(
    SpecFields,
    command=st.lists(text, min_size=1, max_size=4),
    shell=st.booleans(),
    cwd=text,
    env=st.dictionaries(text, text, max_size=4),
    slots=uint32,
    cpus=uint32,
    ram_mb=st.integers(0, submission.UINT64_MAX),
    global_resources=st.dictionaries(text, uint32, max_size=3),
    stdout_path=text,
    stderr_path=text,
    user=text,
    submit_host=text,
    use_worker_env=st.booleans(),
)
instances_strategy = st.none() | st.lists(st.dictionaries(text, text, max_size=3), max_size=4)


@given(fields_strategy, instances_strategy)
def test_a_request_reads_back_as_protobuf_builds_it(
    fields: SpecFields, instances: list[dict[str, str]] | None
) -> None:
    expected = job_service_pb2.SubmitJobsRequest(
        spec=fields.to_proto(), instances=[job_service_pb2.JobInstance(env=env) for env in instances or ()]
    )
    encoded = submission.encode_request(fields, instances)
    assert job_service_pb2.SubmitJobsRequest.FromString(encoded) == expected
    if (
        len(fields.env) <= 1
        and len(fields.global_resources) <= 1
        and not any(len(e) > 1 for e in instances or ())
    ):
        # Maps aside (their order is the encoder's), the bytes are protobuf's own.
        assert encoded == expected.SerializeToString(deterministic=True)


def test_a_request_from_spec_fields_in_this_directory(tmp_path: object) -> None:
    fields = spec_fields(
        ["python", "train.py", "--lr", "0.1"], cpus=4, ram_mb=2048, global_resources={"genus": 1}
    )
    decoded = job_service_pb2.SubmitJobsRequest.FromString(
        submission.encode_request(fields, [{"A": "1"}, {}])
    )
    assert decoded.spec == fields.to_proto()
    assert [dict(i.env) for i in decoded.instances] == [{"A": "1"}, {}]


@pytest.mark.parametrize(
    "change",
    [
        {"slots": kueue.UINT32_MAX + 1},
        {"cpus": -1},
        {"ram_mb": submission.UINT64_MAX + 1},
        {"global_resources": {"g": 2**32}},
    ],
)
def test_a_value_out_of_its_fields_range_is_refused_as_protobuf_refuses_it(change: dict[str, object]) -> None:
    fields = dataclasses.replace(spec_fields(["true"], cwd="/", env={}), **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fields.to_proto()
    with pytest.raises(ValueError):
        submission.encode_request(fields)


@given(st.lists(st.integers(0, submission.UINT64_MAX), max_size=50), st.lists(text, max_size=3))
def test_an_answer_reads_as_protobuf_wrote_it(job_ids: list[int], warnings: list[str]) -> None:
    answer = job_service_pb2.SubmitJobsResponse(job_ids=job_ids, warnings=warnings).SerializeToString()
    assert submission.decode_response(answer) == submission.Submitted(job_ids, warnings)


def test_an_answer_with_ids_unpacked_or_fields_unknown_here_still_reads() -> None:
    unpacked = bytes([0x08, 0x07, 0x08, 0x96, 0x01])  # job_ids 7 and 150, one varint each
    unknown = (
        bytes([0x78, 0x05])  # field 15, varint
        + bytes([0x79])
        + bytes(8)  # field 15, fixed64
        + bytes([0x7A, 0x02])
        + b"hi"  # field 15, length-delimited
        + bytes([0x7D])
        + bytes(4)  # field 15, fixed32
    )
    warning = bytes([0x12, 0x02]) + b"ok"
    assert submission.decode_response(unpacked + unknown + warning) == submission.Submitted([7, 150], ["ok"])


@pytest.mark.parametrize(
    "damaged",
    [
        bytes([0x08]),
        bytes([0x0A, 0x05, 0x01]),
        bytes([0x12, 0x09]) + b"short",
        bytes([0x0B]),
        bytes([0xFF] * 11),
    ],
)
def test_a_damaged_answer_is_a_value_error(damaged: bytes) -> None:
    with pytest.raises(ValueError):
        submission.decode_response(damaged)
