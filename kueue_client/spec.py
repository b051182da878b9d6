"""Building what a job submission carries: the JobSpec for the calling process
and the per-job instances of arrays (`--array`) and line lists (`--each-line`).

No protobuf is imported here until a JobSpec message is asked for: `kueue
cmd` encodes its submission from SpecFields directly (kueue_client/submission.py)."""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import kueue
from kueue_client.errors import KueueError, UsageError
from kueue_client.formatting import is_utf8

if TYPE_CHECKING:
    from kueue.v1 import common_pb2

# Variables that describe the submitting session or machine, not the job: on a
# worker they would point at a display, agent socket or terminal that is not there.
HOST_LOCAL_VARIABLES = frozenset(
    {
        "HOSTNAME",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "TERM_SESSION_ID",
        "WINDOWID",
        "XDG_RUNTIME_DIR",
        "XDG_SEAT",
        "XDG_VTNR",
        "DBUS_SESSION_BUS_ADDRESS",
        "SESSION_MANAGER",
        "SHLVL",
        "OLDPWD",
        "PWD",
        "_",
        "COLUMNS",
        "LINES",
        # Set by a worker for the job it runs; a job that submits jobs must not
        # pass its own identity on.
        "KUEUE_JOB_ID",
        "KUEUE_WORKER",
        "KUEUE_WORKER_ID",
        "KUEUE_ATTEMPT",
        "KUEUE_ARRAY_ID",
        "KUEUE_ENTRY",
    }
)
HOST_LOCAL_PREFIXES = ("SSH_", "TMUX", "XDG_SESSION_")

ARRAY_ID_VARIABLE = "KUEUE_ARRAY_ID"
ENTRY_VARIABLE = "KUEUE_ENTRY"

# Upper bound on jobs per submission; a typo such as 1-10000000 should fail
# here with a message, not exhaust memory or the server's message size limit.
MAX_INSTANCES = 1_000_000
# Bounds per SubmitJobs call, well inside the server's (kueue_server.limits):
# a larger array goes in several calls.
MAX_JOBS_PER_CALL = 10_000
MAX_INSTANCE_ENV_BYTES = 4 * 1024 * 1024
# A resource amount travels as a protobuf uint32.
MAX_RESOURCE_AMOUNT = kueue.UINT32_MAX

_SHELL_SYNTAX = re.compile(r"[\s|&;<>()$`\\\"'*?\[\]#~{}!]")


def job_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to send: `environ` (default os.environ) minus host-local variables."""
    source = os.environ if environ is None else environ
    return {
        key: value
        for key, value in source.items()
        if key not in HOST_LOCAL_VARIABLES
        and not key.startswith(HOST_LOCAL_PREFIXES)
        # Undecodable bytes arrive as surrogates, which protobuf strings
        # cannot carry: such a variable is left out rather than failing.
        and is_utf8(key)
        and is_utf8(value)
    }


def logical_cwd() -> str:
    """The working directory as the user's shell names it.

    $PWD keeps symlinked paths (e.g. /project -> /mnt/nfs7/project) that exist
    on every machine of a shared file system, while os.getcwd() resolves them
    to a physical path that may not. $PWD is only trusted when it still refers
    to the actual current directory.
    """
    try:
        physical = os.getcwd()
    except FileNotFoundError:
        raise KueueError("the current directory no longer exists; cd to an existing directory") from None
    pwd = os.environ.get("PWD")
    if pwd and os.path.isabs(pwd):
        try:
            if os.path.samefile(pwd, physical):
                return os.path.normpath(pwd)
        except OSError:
            pass
    return physical


def needs_shell(command: Sequence[str], cwd: str | None = None) -> bool:
    """True when `command` is one argument meant for /bin/sh.

    `kueue cmd "make && ./run > log"` needs a shell; `kueue cmd ./script.py a b`
    is executed directly. A single argument naming an existing file (a script
    whose path contains a space) is executed directly too.
    """
    if len(command) != 1 or not _SHELL_SYNTAX.search(command[0]):
        return False
    return not os.path.isfile(os.path.join(cwd or ".", command[0]))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@dataclass(frozen=True)
class SpecFields:
    """What a JobSpec says (kueue.v1.JobSpec, its fields by the same names,
    `resources` spread out), as plain values."""

    command: list[str]
    shell: bool
    cwd: str
    env: dict[str, str]
    slots: int
    cpus: int
    ram_mb: int
    global_resources: dict[str, int]
    stdout_path: str
    stderr_path: str
    user: str
    submit_host: str
    use_worker_env: bool

    def to_proto(self) -> common_pb2.JobSpec:
        from kueue.v1 import common_pb2

        return common_pb2.JobSpec(
            command=self.command,
            shell=self.shell,
            cwd=self.cwd,
            env=self.env,
            resources=common_pb2.Resources(
                slots=self.slots, cpus=self.cpus, ram_mb=self.ram_mb, global_resources=self.global_resources
            ),
            stdout_path=self.stdout_path,
            stderr_path=self.stderr_path,
            user=self.user,
            submit_host=self.submit_host,
            use_worker_env=self.use_worker_env,
        )


def job_spec(command: Sequence[str], **options: Any) -> common_pb2.JobSpec:
    """A JobSpec that runs `command` as if typed in this process's shell;
    the options (cpus=4, ...) and defaults are spec_fields'."""
    return spec_fields(command, **options).to_proto()


def spec_fields(
    command: Sequence[str],
    *,
    slots: int = 1,
    cpus: int = 1,
    ram_mb: int = 512,
    global_resources: Mapping[str, int] | None = None,
    stdout_path: str = "",
    stderr_path: str = "",
    use_worker_env: bool = False,
    shell: bool | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> SpecFields:
    """What job_spec() makes, as plain values: `command` as if typed in this
    process's shell.

    cwd defaults to the logical working directory, env to this process's
    environment without host-local variables; `use_worker_env` (kueue cmd
    --no-env) sends no environment so the worker's own is used. `shell=None`
    decides by `needs_shell`.
    """
    command = list(command)
    if not command or not command[0].strip():
        raise UsageError("no command given")
    if not all(is_utf8(arg) for arg in command):
        raise UsageError("the command contains bytes that are not UTF-8")
    cwd = cwd or logical_cwd()
    if not os.path.isabs(cwd):
        raise UsageError(f"the working directory must be absolute: {cwd}")
    for what, text in (
        ("the working directory's path", cwd),
        ("the stdout path", stdout_path),
        ("the stderr path", stderr_path),
    ):
        if not is_utf8(text):
            raise UsageError(
                f"{what} contains bytes that are not UTF-8 ({text!r}): rename it, or run elsewhere"
            )
    if shell is None:
        shell = needs_shell(command, cwd)
    if shell and len(command) != 1:
        # The proto runs command[0] with `sh -c`; join so nothing is lost.
        import shlex

        command = [shlex.join(command)]
    if use_worker_env:
        environment: dict[str, str] = {}
    else:
        environment = job_env(env)
        # The job's shell would set PWD after `cd cwd`; sending it keeps the
        # logical path for programs that read $PWD.
        environment["PWD"] = cwd
    for name, value in (("slots", slots), ("cpus", cpus), ("ram_mb", ram_mb)):
        if value < 0:
            raise UsageError(f"{name} must not be negative")
    user, host = submitter()
    return SpecFields(
        command=command,
        shell=shell,
        cwd=cwd,
        env=environment,
        slots=slots,
        cpus=cpus,
        ram_mb=ram_mb,
        global_resources=dict(global_resources or {}),
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        user=user,
        submit_host=host,
        use_worker_env=use_worker_env,
    )


def submitter() -> tuple[str, str]:
    """Who submits from here, as a JobSpec's user and submit_host say it."""
    return _user(), socket.gethostname()


def parse_resource(text: str) -> tuple[str, int]:
    """`NAME` or `NAME=N` from --resource into (name, amount)."""
    name, sep, amount = text.partition("=")
    name = name.strip()
    if not name:
        raise UsageError(f"bad --resource '{text}': expected NAME or NAME=N")
    if not is_utf8(name):
        raise UsageError(f"bad --resource {text!r}: the name contains bytes that are not UTF-8")
    if not sep:
        return name, 1
    amount = amount.strip()
    if not re.fullmatch(r"-?[0-9]+", amount):
        raise UsageError(f"bad --resource '{text}': N must be a whole number")
    value = int(amount)
    if value < 1:
        raise UsageError(f"bad --resource '{text}': N must be at least 1")
    if value > MAX_RESOURCE_AMOUNT:
        raise UsageError(f"bad --resource '{text}': N must be at most {MAX_RESOURCE_AMOUNT}")
    return name, value


def parse_resources(texts: Iterable[str]) -> dict[str, int]:
    result: dict[str, int] = {}
    for text in texts:
        name, amount = parse_resource(text)
        result[name] = result.get(name, 0) + amount
    return result


_ARRAY = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*(?::\s*(\d+)\s*)?$")


def parse_array(text: str) -> range:
    """`START-END[:STEP]` (END included) from --array into a range."""
    match = _ARRAY.match(text)
    if not match:
        raise UsageError(f"bad --array range '{text}': expected START-END[:STEP], e.g. 1-100 or 0-90:10")
    start, end = int(match[1]), int(match[2])
    step = int(match[3]) if match[3] is not None else 1
    if step < 1:
        raise UsageError(f"bad --array range '{text}': STEP must be at least 1")
    if start > end:
        raise UsageError(f"bad --array range '{text}': START must not be greater than END")
    # Counted before the range is made: len() of a range past 2**63 overflows.
    if (end - start) // step + 1 > MAX_INSTANCES:
        raise UsageError(f"bad --array range '{text}': more than {MAX_INSTANCES} jobs")
    return range(start, end + 1, step)


def instance_chunks(instances: Sequence[dict[str, str]]) -> list[Sequence[dict[str, str]]]:
    """Consecutive runs of `instances`, each within one call's bounds."""
    chunks: list[Sequence[dict[str, str]]] = []
    start = size = 0
    for i, env in enumerate(instances):
        env_size = sum(len(k) + len(v) for k, v in env.items())
        if i > start and (i - start >= MAX_JOBS_PER_CALL or size + env_size > MAX_INSTANCE_ENV_BYTES):
            chunks.append(instances[start:i])
            start, size = i, 0
        size += env_size
    if start < len(instances):
        chunks.append(instances[start:])
    return chunks


def array_instances(text: str) -> list[dict[str, str]]:
    return [{ARRAY_ID_VARIABLE: str(i)} for i in parse_array(text)]


def line_instances(lines: Iterable[str], source: str = "input") -> list[dict[str, str]]:
    """One instance per non-blank line, its text (without the newline) in KUEUE_ENTRY."""
    entries = [line.rstrip("\r\n") for line in lines]
    for number, entry in enumerate(entries, 1):
        if "\0" in entry:
            raise UsageError(
                f"--each-line: line {number} of {source} contains a NUL byte, which no command can take"
            )
        if not is_utf8(entry):  # standard input read with surrogateescape (a C locale)
            raise UsageError(f"--each-line: line {number} of {source} is not UTF-8 text")
    instances = [{ENTRY_VARIABLE: entry} for entry in entries if entry.strip()]
    if not instances:
        raise UsageError(f"--each-line: no non-empty lines in {source}")
    if len(instances) > MAX_INSTANCES:
        raise UsageError(f"--each-line: more than {MAX_INSTANCES} lines in {source}")
    return instances


def read_line_instances(path: str, stdin: TextIO | None = None) -> list[dict[str, str]]:
    """--each-line FILE (`-` reads standard input)."""
    if path == "-":
        import sys

        return line_instances(stdin or sys.stdin, "standard input")
    try:
        with open(path, encoding="utf-8") as f:
            return line_instances(f, path)
    except OSError as exc:
        raise UsageError(f"--each-line: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--each-line: {path} is not UTF-8 text") from None
