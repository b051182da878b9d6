"""`kueue cmd`'s submission, without protobuf.

Importing protobuf and the generated modules costs a fresh `kueue` process
about 25 ms, an eighth of a whole `kueue cmd true` (README, Performance).
A SubmitJobs call is simple enough to encode by hand in protobuf's wire
format: the request from JobFields and instance environments, the answer
(job ids and warnings) read back, over the same authenticated channel the
API uses. tests/test_client_submission.py checks the field numbers here
against the generated descriptors and the encoding against protobuf's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import kueue
from kueue_client.errors import KueueError, UsageError, from_rpc_error

if TYPE_CHECKING:
    import grpc

    import kueue.config
    from kueue_client.spec import JobFields

SUBMIT_JOBS = "/kueue.v1.JobService/SubmitJobs"
# As the API's unary calls (kueue_client.api.DEFAULT_TIMEOUT).
TIMEOUT = 30.0

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

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
UINT64_MAX = 2**64 - 1


@dataclass
class Submitted:
    """SubmitJobsResponse: the new jobs' ids, in the order of the instances, and warnings."""

    job_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# -------------------------------------------------------------- encoding


def _varint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _key(number: int, wire_type: int, out: bytearray) -> None:
    _varint(number << 3 | wire_type, out)


def _bytes(number: int, data: bytes, out: bytearray) -> None:
    _key(number, _LENGTH, out)
    _varint(len(data), out)
    out += data


def _string(number: int, text: str, out: bytearray) -> None:
    _bytes(number, text.encode(), out)


def _uint(number: int, value: int, limit: int, out: bytearray, name: str) -> None:
    if not 0 <= value <= limit:
        raise ValueError(f"{name} {value} is out of range (0 to {limit})")
    _key(number, _VARINT, out)
    _varint(value, out)


def _string_map(number: int, mapping: Mapping[str, str], out: bytearray) -> None:
    for key, value in mapping.items():
        entry = bytearray()
        _string(1, key, entry)
        _string(2, value, entry)
        _bytes(number, bytes(entry), out)


def _spec(fields: JobFields) -> bytes:
    """A JobSpec message; scalar fields at their default values are left out, as proto3 does."""
    f = JOB_SPEC
    out = bytearray()
    for arg in fields.command:
        _string(f["command"], arg, out)
    if fields.shell:
        _uint(f["shell"], 1, 1, out, "shell")
    if fields.cwd:
        _string(f["cwd"], fields.cwd, out)
    _string_map(f["env"], fields.env, out)
    resources = bytearray()
    r = RESOURCES
    for name, value, limit in (
        ("slots", fields.slots, kueue.UINT32_MAX),
        ("cpus", fields.cpus, kueue.UINT32_MAX),
        ("ram_mb", fields.ram_mb, UINT64_MAX),
    ):
        if value:
            _uint(r[name], value, limit, resources, name)
    for name, amount in fields.global_resources.items():
        # A map entry carries its key and value even at their defaults, as protobuf writes it.
        entry = bytearray()
        _string(1, name, entry)
        _uint(2, amount, kueue.UINT32_MAX, entry, f"resource {name}")
        _bytes(r["global_resources"], bytes(entry), resources)
    # Present even when empty, as in JobFields.to_proto().
    _bytes(f["resources"], bytes(resources), out)
    for name in ("stdout_path", "stderr_path", "user", "submit_host"):
        text = getattr(fields, name)
        if text:
            _string(f[name], text, out)
    if fields.use_worker_env:
        _uint(f["use_worker_env"], 1, 1, out, "use_worker_env")
    return bytes(out)


def encode_request(fields: JobFields, instances: Sequence[Mapping[str, str]] | None = None) -> bytes:
    """SubmitJobsRequest{spec, instances} in protobuf's wire format."""
    out = bytearray()
    _bytes(SUBMIT_JOBS_REQUEST["spec"], _spec(fields), out)
    for instance in instances or ():
        env = bytearray()
        _string_map(JOB_INSTANCE["env"], instance, env)
        _bytes(SUBMIT_JOBS_REQUEST["instances"], bytes(env), out)
    return bytes(out)


# -------------------------------------------------------------- decoding


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("a truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a message."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == _LENGTH:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("a truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            if pos + size > len(data):
                raise ValueError("a truncated field")
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise ValueError(f"wire type {wire_type} is not known")
        yield number, wire_type, value


def decode_response(data: bytes) -> Submitted:
    """SubmitJobsResponse from its wire format; fields this client does not know are skipped."""
    result = Submitted()
    ids, warnings = SUBMIT_JOBS_RESPONSE["job_ids"], SUBMIT_JOBS_RESPONSE["warnings"]
    for number, wire_type, value in _fields(data):
        if number == ids and wire_type == _VARINT:
            assert isinstance(value, int)
            result.job_ids.append(value)
        elif number == ids and wire_type == _LENGTH:  # packed, as proto3 sends them
            assert isinstance(value, bytes)
            pos = 0
            while pos < len(value):
                job_id, pos = _read_varint(value, pos)
                result.job_ids.append(job_id)
        elif number == warnings and wire_type == _LENGTH:
            assert isinstance(value, bytes)
            result.warnings.append(value.decode(errors="replace"))
    return result


# -------------------------------------------------------------- the call


class Submitter:
    """SubmitJobs calls to the server the config names, over one channel."""

    def __init__(self, config: kueue.config.Config) -> None:
        import kueue.config
        import kueue.rpc

        self.address = config.server_address
        self._config_path: Path | None = config.path.absolute() if config.path else None
        self._secret = config.common_settings.shared_secret
        try:
            credentials = kueue.rpc.channel_credentials(config)
        except kueue.config.ConfigError as exc:
            raise KueueError(str(exc)) from None
        self._channel: grpc.Channel = kueue.rpc.sync_channel(
            self.address, list(dict(kueue.rpc.CHANNEL_OPTIONS).items()), credentials
        )
        # Bytes in, bytes out: no serializers.
        self._call = self._channel.unary_unary(SUBMIT_JOBS)

    def submit(self, fields: JobFields, instances: Sequence[Mapping[str, str]] | None = None) -> Submitted:
        """Queues one job, or one per instance (each adding its env to the spec's), in one call."""
        import grpc

        from kueue import auth

        try:
            request = encode_request(fields, instances)
        except ValueError as exc:  # what job_fields and the parsers let through
            raise UsageError(f"cannot send the job: {exc}") from None
        try:
            answer = self._call(request, timeout=TIMEOUT, metadata=auth.metadata(self._secret, SUBMIT_JOBS))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.address, self._config_path) from None
        try:
            return decode_response(answer)
        except ValueError as exc:
            raise KueueError(
                f"the kueue server at {self.address} answered with a damaged message: {exc}"
            ) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Submitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
