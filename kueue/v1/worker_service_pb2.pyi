from kueue.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("register", "heartbeat", "assignment_reply", "started", "output", "finished", "leaving", "stdin_ack", "batch")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_REPLY_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    STDIN_ACK_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    assignment_reply: AssignmentReply
    started: Started
    output: Output
    finished: Finished
    leaving: Leaving
    stdin_ack: StdinAck
    batch: ConnectRequestBatch
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., assignment_reply: _Optional[_Union[AssignmentReply, _Mapping]] = ..., started: _Optional[_Union[Started, _Mapping]] = ..., output: _Optional[_Union[Output, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ..., leaving: _Optional[_Union[Leaving, _Mapping]] = ..., stdin_ack: _Optional[_Union[StdinAck, _Mapping]] = ..., batch: _Optional[_Union[ConnectRequestBatch, _Mapping]] = ...) -> None: ...

class ConnectRequestBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ConnectRequest]
    def __init__(self, messages: _Optional[_Iterable[_Union[ConnectRequest, _Mapping]]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("registered", "assign", "kill", "output_ack", "finished_ack", "stdin", "signal_job", "retract", "batch", "output_window", "server_stopping", "close_output")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ACK_FIELD_NUMBER: _ClassVar[int]
    FINISHED_ACK_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_JOB_FIELD_NUMBER: _ClassVar[int]
    RETRACT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SERVER_STOPPING_FIELD_NUMBER: _ClassVar[int]
    CLOSE_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    assign: Assign
    kill: Kill
    output_ack: OutputAck
    finished_ack: FinishedAck
    stdin: Stdin
    signal_job: SignalJob
    retract: Retract
    batch: ConnectResponseBatch
    output_window: OutputWindow
    server_stopping: ServerStopping
    close_output: CloseOutput
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., assign: _Optional[_Union[Assign, _Mapping]] = ..., kill: _Optional[_Union[Kill, _Mapping]] = ..., output_ack: _Optional[_Union[OutputAck, _Mapping]] = ..., finished_ack: _Optional[_Union[FinishedAck, _Mapping]] = ..., stdin: _Optional[_Union[Stdin, _Mapping]] = ..., signal_job: _Optional[_Union[SignalJob, _Mapping]] = ..., retract: _Optional[_Union[Retract, _Mapping]] = ..., batch: _Optional[_Union[ConnectResponseBatch, _Mapping]] = ..., output_window: _Optional[_Union[OutputWindow, _Mapping]] = ..., server_stopping: _Optional[_Union[ServerStopping, _Mapping]] = ..., close_output: _Optional[_Union[CloseOutput, _Mapping]] = ...) -> None: ...

class ConnectResponseBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ConnectResponse]
    def __init__(self, messages: _Optional[_Iterable[_Union[ConnectResponse, _Mapping]]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("worker_id", "name", "system", "capacity", "attempts", "version", "draining", "prefetch", "batches", "output_windows", "environ_blocks", "close_output", "machine", "machine_capacity")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    ENVIRON_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    MACHINE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    name: str
    system: _common_pb2.SystemInfo
    capacity: _common_pb2.Resources
    attempts: _containers.RepeatedCompositeFieldContainer[AttemptReport]
    version: str
    draining: bool
    prefetch: int
    batches: bool
    output_windows: bool
    environ_blocks: bool
    close_output: bool
    machine: str
    machine_capacity: _common_pb2.Resources
    def __init__(self, worker_id: _Optional[str] = ..., name: _Optional[str] = ..., system: _Optional[_Union[_common_pb2.SystemInfo, _Mapping]] = ..., capacity: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[AttemptReport, _Mapping]]] = ..., version: _Optional[str] = ..., draining: _Optional[bool] = ..., prefetch: _Optional[int] = ..., batches: _Optional[bool] = ..., output_windows: _Optional[bool] = ..., environ_blocks: _Optional[bool] = ..., close_output: _Optional[bool] = ..., machine: _Optional[str] = ..., machine_capacity: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ...) -> None: ...

class AttemptReport(_message.Message):
    __slots__ = ("job_id", "attempt", "finished", "stdout_offset", "stderr_offset", "waiting", "killed_after_restart", "started_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDERR_OFFSET_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    KILLED_AFTER_RESTART_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    finished: Finished
    stdout_offset: int
    stderr_offset: int
    waiting: bool
    killed_after_restart: bool
    started_at: float
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ..., stdout_offset: _Optional[int] = ..., stderr_offset: _Optional[int] = ..., waiting: _Optional[bool] = ..., killed_after_restart: _Optional[bool] = ..., started_at: _Optional[float] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("system", "external_use", "draining")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_USE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    system: _common_pb2.SystemInfo
    external_use: _common_pb2.Resources
    draining: bool
    def __init__(self, system: _Optional[_Union[_common_pb2.SystemInfo, _Mapping]] = ..., external_use: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., draining: _Optional[bool] = ...) -> None: ...

class AssignmentReply(_message.Message):
    __slots__ = ("job_id", "attempt", "accepted", "reason", "transient", "queued", "handed_back")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRANSIENT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    HANDED_BACK_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    accepted: bool
    reason: str
    transient: bool
    queued: bool
    handed_back: bool
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., transient: _Optional[bool] = ..., queued: _Optional[bool] = ..., handed_back: _Optional[bool] = ...) -> None: ...

class Started(_message.Message):
    __slots__ = ("job_id", "attempt", "pid")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    pid: int
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("job_id", "attempt", "stream", "offset", "data")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    stream: _common_pb2.OutputStream
    offset: int
    data: bytes
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., stream: _Optional[_Union[_common_pb2.OutputStream, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("job_id", "attempt", "exit_code", "signal", "run_time_seconds", "peak_memory_bytes", "error", "stdout_bytes", "stderr_bytes", "start_failure")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    RUN_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDERR_BYTES_FIELD_NUMBER: _ClassVar[int]
    START_FAILURE_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    exit_code: int
    signal: int
    run_time_seconds: float
    peak_memory_bytes: int
    error: str
    stdout_bytes: int
    stderr_bytes: int
    start_failure: _common_pb2.StartFailure
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., run_time_seconds: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., error: _Optional[str] = ..., stdout_bytes: _Optional[int] = ..., stderr_bytes: _Optional[int] = ..., start_failure: _Optional[_Union[_common_pb2.StartFailure, str]] = ...) -> None: ...

class Leaving(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_seconds", "server_version", "batches")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_seconds: float
    server_version: str
    batches: bool
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_seconds: _Optional[float] = ..., server_version: _Optional[str] = ..., batches: _Optional[bool] = ...) -> None: ...

class Assign(_message.Message):
    __slots__ = ("job_id", "attempt", "spec", "environ")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ENVIRON_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    spec: _common_pb2.JobSpec
    environ: bytes
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[_common_pb2.JobSpec, _Mapping]] = ..., environ: _Optional[bytes] = ...) -> None: ...

class Kill(_message.Message):
    __slots__ = ("job_id", "attempt", "signal", "grace_seconds")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    signal: int
    grace_seconds: float
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., signal: _Optional[int] = ..., grace_seconds: _Optional[float] = ...) -> None: ...

class OutputAck(_message.Message):
    __slots__ = ("job_id", "attempt", "stream", "offset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    stream: _common_pb2.OutputStream
    offset: int
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., stream: _Optional[_Union[_common_pb2.OutputStream, str]] = ..., offset: _Optional[int] = ...) -> None: ...

class OutputWindow(_message.Message):
    __slots__ = ("job_id", "attempt", "limit")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    limit: int
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class CloseOutput(_message.Message):
    __slots__ = ("job_id", "attempt", "stream")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    stream: _common_pb2.OutputStream
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., stream: _Optional[_Union[_common_pb2.OutputStream, str]] = ...) -> None: ...

class ServerStopping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Retract(_message.Message):
    __slots__ = ("job_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class FinishedAck(_message.Message):
    __slots__ = ("job_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class Stdin(_message.Message):
    __slots__ = ("job_id", "attempt", "offset", "data", "eof")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    offset: int
    data: bytes
    eof: bool
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class StdinAck(_message.Message):
    __slots__ = ("job_id", "attempt", "offset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    offset: int
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class SignalJob(_message.Message):
    __slots__ = ("job_id", "attempt", "signal")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    attempt: int
    signal: int
    def __init__(self, job_id: _Optional[int] = ..., attempt: _Optional[int] = ..., signal: _Optional[int] = ...) -> None: ...
