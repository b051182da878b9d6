from kueue.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitJobsRequest(_message.Message):
    __slots__ = ("spec", "instances")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.JobSpec
    instances: _containers.RepeatedCompositeFieldContainer[JobInstance]
    def __init__(self, spec: _Optional[_Union[_common_pb2.JobSpec, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[JobInstance, _Mapping]]] = ...) -> None: ...

class JobInstance(_message.Message):
    __slots__ = ("env",)
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENV_FIELD_NUMBER: _ClassVar[int]
    env: _containers.ScalarMap[str, str]
    def __init__(self, env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SubmitJobsResponse(_message.Message):
    __slots__ = ("job_ids", "warnings")
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[int]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "limit", "include_env")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ENV_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    limit: int
    include_env: bool
    def __init__(self, states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ..., limit: _Optional[int] = ..., include_env: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "summary", "matching")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    MATCHING_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Job]
    summary: _common_pb2.JobSummary
    matching: int
    def __init__(self, jobs: _Optional[_Iterable[_Union[_common_pb2.Job, _Mapping]]] = ..., summary: _Optional[_Union[_common_pb2.JobSummary, _Mapping]] = ..., matching: _Optional[int] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id", "tail_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    tail_bytes: int
    def __init__(self, id: _Optional[int] = ..., tail_bytes: _Optional[int] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job", "stdout_tail", "stderr_tail")
    JOB_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TAIL_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    stdout_tail: bytes
    stderr_tail: bytes
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., stdout_tail: _Optional[bytes] = ..., stderr_tail: _Optional[bytes] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id", "kill")
    ID_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    id: int
    kill: bool
    def __init__(self, id: _Optional[int] = ..., kill: _Optional[bool] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class CleanJobsRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class CleanJobsResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class WatchJobsResponse(_message.Message):
    __slots__ = ("job", "removed", "removed_id")
    JOB_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ID_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    removed: bool
    removed_id: int
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., removed: _Optional[bool] = ..., removed_id: _Optional[int] = ...) -> None: ...

class WatchListRequest(_message.Message):
    __slots__ = ("states", "limit", "include_workers", "min_interval_ms")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    MIN_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.JobState]
    limit: int
    include_workers: bool
    min_interval_ms: int
    def __init__(self, states: _Optional[_Iterable[_Union[_common_pb2.JobState, str]]] = ..., limit: _Optional[int] = ..., include_workers: _Optional[bool] = ..., min_interval_ms: _Optional[int] = ...) -> None: ...

class WatchListResponse(_message.Message):
    __slots__ = ("jobs", "window_ids", "summary", "matching", "workers")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_IDS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    MATCHING_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Job]
    window_ids: _containers.RepeatedScalarFieldContainer[int]
    summary: _common_pb2.JobSummary
    matching: int
    workers: WorkerList
    def __init__(self, jobs: _Optional[_Iterable[_Union[_common_pb2.Job, _Mapping]]] = ..., window_ids: _Optional[_Iterable[int]] = ..., summary: _Optional[_Union[_common_pb2.JobSummary, _Mapping]] = ..., matching: _Optional[int] = ..., workers: _Optional[_Union[WorkerList, _Mapping]] = ...) -> None: ...

class WorkerList(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[_common_pb2.Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[_common_pb2.Worker, _Mapping]]] = ...) -> None: ...

class ReadOutputRequest(_message.Message):
    __slots__ = ("id", "streams", "offset", "follow")
    ID_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    id: int
    streams: _containers.RepeatedScalarFieldContainer[_common_pb2.OutputStream]
    offset: int
    follow: bool
    def __init__(self, id: _Optional[int] = ..., streams: _Optional[_Iterable[_Union[_common_pb2.OutputStream, str]]] = ..., offset: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class ReadOutputResponse(_message.Message):
    __slots__ = ("stream", "offset", "data", "finished_job")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FINISHED_JOB_FIELD_NUMBER: _ClassVar[int]
    stream: _common_pb2.OutputStream
    offset: int
    data: bytes
    finished_job: _common_pb2.Job
    def __init__(self, stream: _Optional[_Union[_common_pb2.OutputStream, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., finished_job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("start", "stdin", "signal", "kill", "output_ack", "stdout_closed")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ACK_FIELD_NUMBER: _ClassVar[int]
    STDOUT_CLOSED_FIELD_NUMBER: _ClassVar[int]
    start: AttachStart
    stdin: AttachStdin
    signal: int
    kill: bool
    output_ack: AttachOutputAck
    stdout_closed: bool
    def __init__(self, start: _Optional[_Union[AttachStart, _Mapping]] = ..., stdin: _Optional[_Union[AttachStdin, _Mapping]] = ..., signal: _Optional[int] = ..., kill: _Optional[bool] = ..., output_ack: _Optional[_Union[AttachOutputAck, _Mapping]] = ..., stdout_closed: _Optional[bool] = ...) -> None: ...

class AttachStart(_message.Message):
    __slots__ = ("spec", "kill_on_detach", "paced_output")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    KILL_ON_DETACH_FIELD_NUMBER: _ClassVar[int]
    PACED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.JobSpec
    kill_on_detach: bool
    paced_output: bool
    def __init__(self, spec: _Optional[_Union[_common_pb2.JobSpec, _Mapping]] = ..., kill_on_detach: _Optional[bool] = ..., paced_output: _Optional[bool] = ...) -> None: ...

class AttachOutputAck(_message.Message):
    __slots__ = ("attempt", "stdout_offset", "stderr_offset")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STDOUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDERR_OFFSET_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    stdout_offset: int
    stderr_offset: int
    def __init__(self, attempt: _Optional[int] = ..., stdout_offset: _Optional[int] = ..., stderr_offset: _Optional[int] = ...) -> None: ...

class AttachStdin(_message.Message):
    __slots__ = ("attempt", "offset", "data", "eof")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    offset: int
    data: bytes
    eof: bool
    def __init__(self, attempt: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ("accepted", "job", "output", "stdin_ack", "notice")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    STDIN_ACK_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    accepted: AttachAccepted
    job: _common_pb2.Job
    output: AttachOutput
    stdin_ack: AttachStdinAck
    notice: str
    def __init__(self, accepted: _Optional[_Union[AttachAccepted, _Mapping]] = ..., job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., output: _Optional[_Union[AttachOutput, _Mapping]] = ..., stdin_ack: _Optional[_Union[AttachStdinAck, _Mapping]] = ..., notice: _Optional[str] = ...) -> None: ...

class AttachAccepted(_message.Message):
    __slots__ = ("job_id", "warnings")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class AttachOutput(_message.Message):
    __slots__ = ("attempt", "stream", "offset", "data")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    stream: _common_pb2.OutputStream
    offset: int
    data: bytes
    def __init__(self, attempt: _Optional[int] = ..., stream: _Optional[_Union[_common_pb2.OutputStream, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class AttachStdinAck(_message.Message):
    __slots__ = ("attempt", "offset")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    offset: int
    def __init__(self, attempt: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...
