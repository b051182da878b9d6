"""kueue.wire: hand-joined encodings parse as the messages they stand for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kueue import wire
from kueue.v1 import job_service_pb2 as jpb
from kueue.v1 import worker_service_pb2 as wpb

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**63 - 1)


@given(st.integers(1, 2**64 - 1))
def test_varint_matches_protobuf(value: int) -> None:
    encoded = wpb.OutputAck(offset=value).SerializeToString()
    assert encoded[1:] == wire.varint(value)
    assert wire.varint(0) == b"\x00"


@given(U64, U32, st.sampled_from([1, 2]), U64, st.binary(max_size=300))
def test_output_in_a_connect_request(
    job_id: int, attempt: int, stream: int, offset: int, data: bytes
) -> None:
    head = wpb.Output(job_id=job_id, attempt=attempt, stream=stream, offset=offset)
    encoded = wire.BytesEnvelope(wpb.ConnectRequest, "output").encode(head, data)
    expected = wpb.ConnectRequest(
        output=wpb.Output(job_id=job_id, attempt=attempt, stream=stream, offset=offset, data=data)
    )
    assert wpb.ConnectRequest.FromString(encoded) == expected


@given(U32, U64, st.booleans(), st.binary(max_size=300))
def test_stdin_in_an_attach_request(attempt: int, offset: int, eof: bool, data: bytes) -> None:
    head = jpb.AttachStdin(attempt=attempt, offset=offset, eof=eof)
    encoded = wire.BytesEnvelope(jpb.AttachRequest, "stdin").encode(head, memoryview(data))
    parsed = jpb.AttachRequest.FromString(encoded)
    assert parsed.WhichOneof("msg") == "stdin"
    assert parsed.stdin == jpb.AttachStdin(attempt=attempt, offset=offset, eof=eof, data=data)


def test_a_megabyte_and_the_serializer() -> None:
    data = bytes(range(256)) * 4096 + b"tail"
    encoded = wire.BytesEnvelope(wpb.ConnectResponse, "stdin").encode(wpb.Stdin(job_id=3, attempt=1), data)
    assert wire.serialize(encoded) is encoded
    msg = wpb.ConnectResponse.FromString(encoded)
    assert msg.stdin.data == data and msg.stdin.job_id == 3
    plain = wpb.ConnectResponse(output_ack=wpb.OutputAck(offset=5))
    assert wire.serialize(plain) == plain.SerializeToString()


def test_only_bytes_fields() -> None:
    with pytest.raises(TypeError):
        wire.BytesEnvelope(wpb.ConnectRequest, "output", "offset")


@given(st.lists(st.tuples(st.booleans(), U64, U32, st.binary(max_size=200)), max_size=20))
def test_a_batch_of_messages_and_encoded_bytes_is_the_batch_message(
    items: list[tuple[bool, int, int, bytes]],
) -> None:
    envelope = wire.BytesEnvelope(wpb.ConnectRequest, "output")
    parts: list[wpb.ConnectRequest | bytes] = []
    expected = wpb.ConnectRequestBatch()
    for encoded, job_id, attempt, data in items:
        msg = wpb.ConnectRequest(output=wpb.Output(job_id=job_id, attempt=attempt, stream=1, data=data))
        expected.messages.append(msg)
        head = wpb.Output(job_id=job_id, attempt=attempt, stream=1)
        parts.append(envelope.encode(head, data) if encoded else msg)
    got = wpb.ConnectRequest.FromString(wire.batch(9, parts))
    assert got == wpb.ConnectRequest(batch=expected)
    # The size counted against a batch's budget is what goes on the wire.
    assert [wire.size(p) for p in parts] == [
        len(p if isinstance(p, bytes) else p.SerializeToString()) for p in parts
    ]
