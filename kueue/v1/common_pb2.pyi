import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_OFFERED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELED: _ClassVar[JobState]

class OutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STREAM_UNSPECIFIED: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDOUT: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDERR: _ClassVar[OutputStream]

class StartFailure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    START_FAILURE_UNSPECIFIED: _ClassVar[StartFailure]
    START_FAILURE_NOT_FOUND: _ClassVar[StartFailure]
    START_FAILURE_NOT_EXECUTABLE: _ClassVar[StartFailure]
    START_FAILURE_OTHER: _ClassVar[StartFailure]

class AttemptOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_OUTCOME_UNSPECIFIED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_ACTIVE: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_FINISHED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_REJECTED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_UNANSWERED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_WORKER_LOST: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_WORKER_STOPPED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_CANCELED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_HANDED_BACK: _ClassVar[AttemptOutcome]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_OFFERED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELED: JobState
OUTPUT_STREAM_UNSPECIFIED: OutputStream
OUTPUT_STREAM_STDOUT: OutputStream
OUTPUT_STREAM_STDERR: OutputStream
START_FAILURE_UNSPECIFIED: StartFailure
START_FAILURE_NOT_FOUND: StartFailure
START_FAILURE_NOT_EXECUTABLE: StartFailure
START_FAILURE_OTHER: StartFailure
ATTEMPT_OUTCOME_UNSPECIFIED: AttemptOutcome
ATTEMPT_OUTCOME_ACTIVE: AttemptOutcome
ATTEMPT_OUTCOME_FINISHED: AttemptOutcome
ATTEMPT_OUTCOME_REJECTED: AttemptOutcome
ATTEMPT_OUTCOME_UNANSWERED: AttemptOutcome
ATTEMPT_OUTCOME_WORKER_LOST: AttemptOutcome
ATTEMPT_OUTCOME_WORKER_STOPPED: AttemptOutcome
ATTEMPT_OUTCOME_CANCELED: AttemptOutcome
ATTEMPT_OUTCOME_HANDED_BACK: AttemptOutcome

class Resources(_message.Message):
    __slots__ = ("slots", "cpus", "ram_mb", "global_resources")
    class GlobalResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    RAM_MB_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    slots: int
    cpus: int
    ram_mb: int
    global_resources: _containers.ScalarMap[str, int]
    def __init__(self, slots: _Optional[int] = ..., cpus: _Optional[int] = ..., ram_mb: _Optional[int] = ..., global_resources: _Optional[_Mapping[str, int]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("command", "shell", "cwd", "env", "resources", "stdout_path", "stderr_path", "user", "submit_host", "use_worker_env", "stdin_pipe")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    STDOUT_PATH_FIELD_NUMBER: _ClassVar[int]
    STDERR_PATH_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_HOST_FIELD_NUMBER: _ClassVar[int]
    USE_WORKER_ENV_FIELD_NUMBER: _ClassVar[int]
    STDIN_PIPE_FIELD_NUMBER: _ClassVar[int]
    command: _containers.RepeatedScalarFieldContainer[str]
    shell: bool
    cwd: str
    env: _containers.ScalarMap[str, str]
    resources: Resources
    stdout_path: str
    stderr_path: str
    user: str
    submit_host: str
    use_worker_env: bool
    stdin_pipe: bool
    def __init__(self, command: _Optional[_Iterable[str]] = ..., shell: _Optional[bool] = ..., cwd: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., stdout_path: _Optional[str] = ..., stderr_path: _Optional[str] = ..., user: _Optional[str] = ..., submit_host: _Optional[str] = ..., use_worker_env: _Optional[bool] = ..., stdin_pipe: _Optional[bool] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "spec", "issued_at", "offered_at", "started_at", "finished_at", "attempt", "worker_id", "worker_name", "exit_code", "signal", "run_time_seconds", "peak_memory_bytes", "comment", "stdout_bytes", "stderr_bytes", "output_truncated", "kill_requested", "attempts", "held", "start_failure")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    OFFERED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    RUN_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    STDOUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDERR_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    KILL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    START_FAILURE_FIELD_NUMBER: _ClassVar[int]
    id: int
    state: JobState
    spec: JobSpec
    issued_at: _timestamp_pb2.Timestamp
    offered_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    attempt: int
    worker_id: str
    worker_name: str
    exit_code: int
    signal: int
    run_time_seconds: float
    peak_memory_bytes: int
    comment: str
    stdout_bytes: int
    stderr_bytes: int
    output_truncated: bool
    kill_requested: bool
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    held: bool
    start_failure: StartFailure
    def __init__(self, id: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., offered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., run_time_seconds: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., comment: _Optional[str] = ..., stdout_bytes: _Optional[int] = ..., stderr_bytes: _Optional[int] = ..., output_truncated: _Optional[bool] = ..., kill_requested: _Optional[bool] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., held: _Optional[bool] = ..., start_failure: _Optional[_Union[StartFailure, str]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("number", "worker_id", "worker_name", "offered_at", "started_at", "ended_at", "outcome", "reason")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFERED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    number: int
    worker_id: str
    worker_name: str
    offered_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    outcome: AttemptOutcome
    reason: str
    def __init__(self, number: _Optional[int] = ..., worker_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., offered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class JobSummary(_message.Message):
    __slots__ = ("pending", "offered", "running", "succeeded", "failed", "canceled", "average_run_time_seconds", "eta_seconds")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_RUN_TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    pending: int
    offered: int
    running: int
    succeeded: int
    failed: int
    canceled: int
    average_run_time_seconds: float
    eta_seconds: float
    def __init__(self, pending: _Optional[int] = ..., offered: _Optional[int] = ..., running: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., canceled: _Optional[int] = ..., average_run_time_seconds: _Optional[float] = ..., eta_seconds: _Optional[float] = ...) -> None: ...

class SystemInfo(_message.Message):
    __slots__ = ("hostname", "kernel", "distribution", "cpu_cores", "cpu_frequency_mhz", "memory_total_mb", "memory_available_mb", "load_1", "load_5", "load_15", "uptime_seconds")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    CPU_FREQUENCY_MHZ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_MB_FIELD_NUMBER: _ClassVar[int]
    LOAD_1_FIELD_NUMBER: _ClassVar[int]
    LOAD_5_FIELD_NUMBER: _ClassVar[int]
    LOAD_15_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    kernel: str
    distribution: str
    cpu_cores: int
    cpu_frequency_mhz: float
    memory_total_mb: int
    memory_available_mb: int
    load_1: float
    load_5: float
    load_15: float
    uptime_seconds: float
    def __init__(self, hostname: _Optional[str] = ..., kernel: _Optional[str] = ..., distribution: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., cpu_frequency_mhz: _Optional[float] = ..., memory_total_mb: _Optional[int] = ..., memory_available_mb: _Optional[int] = ..., load_1: _Optional[float] = ..., load_5: _Optional[float] = ..., load_15: _Optional[float] = ..., uptime_seconds: _Optional[float] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("id", "name", "system", "capacity", "free", "running_jobs", "connected", "connected_at", "last_seen_at", "address", "draining", "machine")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    system: SystemInfo
    capacity: Resources
    free: Resources
    running_jobs: int
    connected: bool
    connected_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    address: str
    draining: bool
    machine: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., system: _Optional[_Union[SystemInfo, _Mapping]] = ..., capacity: _Optional[_Union[Resources, _Mapping]] = ..., free: _Optional[_Union[Resources, _Mapping]] = ..., running_jobs: _Optional[int] = ..., connected: _Optional[bool] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., address: _Optional[str] = ..., draining: _Optional[bool] = ..., machine: _Optional[str] = ...) -> None: ...

class GlobalResource(_message.Message):
    __slots__ = ("name", "total", "used")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    name: str
    total: int
    used: int
    def __init__(self, name: _Optional[str] = ..., total: _Optional[int] = ..., used: _Optional[int] = ...) -> None: ...
