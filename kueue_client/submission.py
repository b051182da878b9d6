"""`kueue cmd`'s submission, without protobuf.

Importing protobuf and the generated modules costs a fresh `kueue` process
about 25 ms, an eighth of a whole `kueue cmd true` (README, Performance).
A SubmitJobs call is simple enough to encode by hand in protobuf's wire
format (kueue.wire's primitives): the request from SpecFields and instance
environments, the answer (job ids and warnings) read back, over the same
authenticated channel the API uses (kueue_client/channel.py).
tests/test_client_submission.py checks the field numbers here against the
generated descriptors and the encoding against protobuf's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import kueue
from kueue.wire import LENGTH_DELIMITED, VARINT, fields, put_bytes, put_key, put_varint, read_varint
from kueue_client.channel import DEFAULT_TIMEOUT, ChannelOwner, open_channel
from kueue_client.errors import KueueError, UsageError, from_rpc_error

if TYPE_CHECKING:
    import kueue.config
    from kueue_client.spec import SpecFields

SUBMIT_JOBS = "/kueue.v1.JobService/SubmitJobs"

# Field numbers (kueue/v1/common.proto, job_service.proto).
JOB_SPEC = {
    "command": 1,
    "shell": 2,
    "cwd": 3,
    "env": 4,
    "resources": 5,
    "stdout_path": 6,
    "stderr_path": 7,
    "user": 8,
    "submit_host": 9,
    "use_worker_env": 10,
    "stdin_pipe": 11,
}
RESOURCES = {"slots": 1, "cpus": 2, "ram_mb": 3, "global_resources": 4}
SUBMIT_JOBS_REQUEST = {"spec": 1, "instances": 2}
JOB_INSTANCE = {"env": 1}
SUBMIT_JOBS_RESPONSE = {"job_ids": 1, "warnings": 2}

UINT64_MAX = 2**64 - 1


@dataclass
class Submitted:
    """SubmitJobsResponse: the new jobs' ids, in the order of the instances, and warnings."""

    job_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -------------------------------------------------------------- encoding


def _string(number: int, text: str, out: bytearray) -> None:
    put_bytes(number, text.encode(), out)


def _uint(number: int, value: int, limit: int, out: bytearray, name: str) -> None:
    if not 0 <= value <= limit:
        raise ValueError(f"{name} {value} is out of range (0 to {limit})")
    put_key(number, VARINT, out)
    put_varint(value, out)


def _true(number: int, out: bytearray) -> None:
    put_key(number, VARINT, out)
    put_varint(1, out)


def _string_map(number: int, mapping: Mapping[str, str], out: bytearray) -> None:
    for key, value in mapping.items():
        entry = bytearray()
        _string(1, key, entry)
        _string(2, value, entry)
        put_bytes(number, bytes(entry), out)


def _spec(spec: SpecFields) -> bytes:
    """A JobSpec message; scalar fields at their default values are left out, as proto3 does."""
    f = JOB_SPEC
    out = bytearray()
    for arg in spec.command:
        _string(f["command"], arg, out)
    if spec.shell:
        _true(f["shell"], out)
    if spec.cwd:
        _string(f["cwd"], spec.cwd, out)
    _string_map(f["env"], spec.env, out)
    resources = bytearray()
    r = RESOURCES
    for name, value, limit in (
        ("slots", spec.slots, kueue.UINT32_MAX),
        ("cpus", spec.cpus, kueue.UINT32_MAX),
        ("ram_mb", spec.ram_mb, UINT64_MAX),
    ):
        if value:
            _uint(r[name], value, limit, resources, name)
    for name, amount in spec.global_resources.items():
        # A map entry carries its key and value even at their defaults, as protobuf writes it.
        entry = bytearray()
        _string(1, name, entry)
        _uint(2, amount, kueue.UINT32_MAX, entry, f"resource {name}")
        put_bytes(r["global_resources"], bytes(entry), resources)
    # Present even when empty, as in SpecFields.to_proto().
    put_bytes(f["resources"], bytes(resources), out)
    for name in ("stdout_path", "stderr_path", "user", "submit_host"):
        text = getattr(spec, name)
        if text:
            _string(f[name], text, out)
    if spec.use_worker_env:
        _true(f["use_worker_env"], out)
    return bytes(out)


def encode_request(spec: SpecFields, instances: Sequence[Mapping[str, str]] | None = None) -> bytes:
    """SubmitJobsRequest{spec, instances} in protobuf's wire format."""
    out = bytearray()
    put_bytes(SUBMIT_JOBS_REQUEST["spec"], _spec(spec), out)
    for instance in instances or ():
        env = bytearray()
        _string_map(JOB_INSTANCE["env"], instance, env)
        put_bytes(SUBMIT_JOBS_REQUEST["instances"], bytes(env), out)
    return bytes(out)


# -------------------------------------------------------------- decoding


def decode_response(data: bytes) -> Submitted:
    """SubmitJobsResponse from its wire format; fields this client does not know are skipped."""
    result = Submitted()
    ids, warnings = SUBMIT_JOBS_RESPONSE["job_ids"], SUBMIT_JOBS_RESPONSE["warnings"]
    for number, wire_type, value in fields(data):
        if number == ids and wire_type == VARINT:
            assert isinstance(value, int)
            result.job_ids.append(value)
        elif number == ids and wire_type == LENGTH_DELIMITED:  # packed, as proto3 sends them
            assert isinstance(value, bytes)
            pos = 0
            while pos < len(value):
                job_id, pos = read_varint(value, pos)
                result.job_ids.append(job_id)
        elif number == warnings and wire_type == LENGTH_DELIMITED:
            assert isinstance(value, bytes)
            result.warnings.append(value.decode(errors="replace"))
    return result


# -------------------------------------------------------------- the call


class Submitter(ChannelOwner):
    """SubmitJobs calls to the server the config names, over one channel."""

    def __init__(self, config: kueue.config.Config) -> None:
        self.address = config.server_address
        self._config_path: Path | None = config.path.absolute() if config.path else None
        self._secret = config.common_settings.shared_secret
        self._channel, _ = open_channel(config, self.address)
        # Bytes in, bytes out: no serializers.
        self._call = self._channel.unary_unary(SUBMIT_JOBS)

    def submit(self, spec: SpecFields, instances: Sequence[Mapping[str, str]] | None = None) -> Submitted:
        """Queues one job, or one per instance (each adding its env to the spec's), in one call."""
        import grpc

        from kueue import auth

        try:
            request = encode_request(spec, instances)
        except ValueError as exc:  # what spec_fields and the parsers let through
            raise UsageError(f"cannot send the job: {exc}") from None
        try:
            answer = self._call(
                request, timeout=DEFAULT_TIMEOUT, metadata=auth.metadata(self._secret, SUBMIT_JOBS)
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.address, self._config_path) from None
        try:
            return decode_response(answer)
        except ValueError as exc:
            raise KueueError(
                f"the kueue server at {self.address} answered with a damaged message: {exc}"
            ) from None
