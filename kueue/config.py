"""The config file shared by every program: ~/.config/kueue/config.toml.

Same file, sections and keys as the Rust Kueue, plus a few of our own. Missing
keys take defaults; unknown keys are warned about by name; a value of the wrong
type is an error naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kueue


class ConfigError(Exception):
    """The config file cannot be used; the message says what and where."""


@dataclass
class CommonSettings:
    """[common_settings]: what server, workers and clients share."""

    shared_secret: str = ""
    server_name: str = "localhost"
    server_port: int = 11236
    log_level: str = "info"
    # Ours: "text" (one line per record) or "json" (one JSON object per line)
    # for kueue_server and kueue_worker; --log-format overrides it.
    log_format: str = "text"
    # Ours: TLS. With tls_ca set, clients and workers connect with TLS and
    # trust server certificates signed by this CA (PEM file).
    tls_ca: str = ""
    # Ours: a client certificate and key for servers that require them (mutual TLS).
    tls_client_cert: str = ""
    tls_client_key: str = ""


@dataclass
class ServerSettings:
    """[server_settings]: the server's own."""

    bind_addresses: str = "0.0.0.0 [::]"
    maintenance_interval_seconds: int = 60
    worker_timeout_seconds: int = 300
    job_offer_timeout_seconds: int = 60
    job_cleanup_after_minutes: int = 2880
    global_max_parallel_jobs: int = 100
    # Ours: where the job store and captured output live ("" = platform data dir).
    data_dir: str = ""
    # Ours: captured output kept per job and stream; beyond it only the tail is kept.
    job_output_cap_mb: int = 16
    # Ours: serve TLS with this certificate chain and key (PEM files).
    tls_cert: str = ""
    tls_key: str = ""
    # Ours: with TLS, refuse peers without a client certificate signed by tls_ca.
    tls_require_client_cert: bool = False
    # Ours: serve Prometheus metrics over HTTP on this port (0: off), on the
    # bind_addresses.
    metrics_port: int = 0


@dataclass
class WorkerSettings:
    """[worker_settings]: each worker's own."""

    system_update_interval_seconds: int = 60
    worker_max_parallel_jobs: int = 10
    dynamic_check_free_resources: bool = True
    dynamic_cpu_load_scale_factor: float = 1.0
    # Ours: time between SIGTERM and SIGKILL when a job is killed.
    kill_grace_seconds: float = 10.0
    # Ours: on SIGTERM, "drain" (finish running jobs, take no new ones) or
    # "requeue" (stop them now and hand them back to the queue).
    on_sigterm: str = "drain"
    # Ours: output the server has not acknowledged (it is away) is kept in
    # memory up to output_memory_mb, then in spool files up to output_spill_mb
    # (0: memory only); past that the jobs block on writing.
    output_memory_mb: int = 64
    output_spill_mb: int = 2048
    # Ours: jobs taken beyond the free slots, started the moment a slot
    # frees without a round trip to the server (taken back for an idle
    # worker); 0 turns it off.
    prefetch_jobs: int = 32
    # Ours: run the worker as this many processes, each a worker of its own
    # (NAME, NAME/2, ...) with an equal share of the slots, its jobs counted
    # against the whole machine's CPUs and RAM: one process starts at most
    # about a thousand short jobs a second.
    worker_processes: int = 1


@dataclass
class ClientSettings:
    """[client_settings]: defaults of the `kueue` client."""

    # Kueue defaults to 8 CPUs, which never fits a small machine; we ask for 1.
    job_default_cpus: int = 1
    job_default_ram_mb: int = 512


@dataclass
class RestartWorkers:
    """[restart_workers]: how kueue_restart_workers reaches the workers' hosts."""

    ssh_user: str = ""
    hostnames: str = ""
    sleep_minutes_before_recheck: int = 60
    # Ours: how kueue_restart_workers reaches the hosts: ssh's port (0: ssh's
    # default), extra ssh arguments (shell-quoted), and the command that runs a
    # worker there.
    ssh_port: int = 0
    ssh_options: str = ""
    worker_command: str = "kueue_worker"


@dataclass
class Config:
    """A whole config file, section by section."""

    common_settings: CommonSettings = field(default_factory=CommonSettings)
    server_settings: ServerSettings = field(default_factory=ServerSettings)
    worker_settings: WorkerSettings = field(default_factory=WorkerSettings)
    client_settings: ClientSettings = field(default_factory=ClientSettings)
    restart_workers: RestartWorkers = field(default_factory=RestartWorkers)
    global_resources: dict[str, int] = field(default_factory=dict)
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def server_address(self) -> str:
        host = self.common_settings.server_name
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.common_settings.server_port}"

    @property
    def data_dir(self) -> Path:
        if self.server_settings.data_dir:
            return Path(self.server_settings.data_dir).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "kueue"


_SECTIONS: dict[str, type] = {
    "common_settings": CommonSettings,
    "server_settings": ServerSettings,
    "worker_settings": WorkerSettings,
    "client_settings": ClientSettings,
    "restart_workers": RestartWorkers,
}


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kueue" / "config.toml"


def resolve_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config PATH, else $KUEUE_CONFIG, else the XDG default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("KUEUE_CONFIG")
    if env:
        return Path(env).expanduser()
    return default_config_path()


def random_secret(length: int = 64) -> str:
    # Imported here: only a first start writes a secret, and every `kueue` call imports this module.
    import secrets
    import string

    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def template(secret: str | None = None) -> str:
    """The commented config file written on first start."""
    return TEMPLATE.format(secret=secret or random_secret())


TEMPLATE = """\
# Kueue configuration, shared by kueue (client), kueue_server and kueue_worker.
# Use the same file (at least the same shared_secret) on every machine.
# Keys left out take the defaults shown here.

[common_settings]
# Proves to the server that a client or worker belongs to the cluster.
# It never crosses the network (see protos/README.md). Keep it private.
shared_secret = "{secret}"
# Host name or address clients and workers connect to.
server_name = "localhost"
server_port = 11236
# error, warn, info, debug or trace
log_level = "info"
# Log format of kueue_server and kueue_worker: "text", or "json" (one object per line).
log_format = "text"
# TLS (optional): the CA that signed the server's certificate (PEM). When set,
# clients and workers connect with TLS.
tls_ca = ""
# A client certificate and key, for a server that requires them (mutual TLS).
tls_client_cert = ""
tls_client_key = ""

[server_settings]
# Space separated; the server runs as long as one of them binds.
bind_addresses = "0.0.0.0 [::]"
maintenance_interval_seconds = 60
# A worker silent this long is dropped; its jobs are queued again.
worker_timeout_seconds = 300
# An offer not answered this long goes back to the queue.
job_offer_timeout_seconds = 60
# Finished and canceled jobs are forgotten after this long.
job_cleanup_after_minutes = 2880
global_max_parallel_jobs = 100
# Job store (SQLite) and captured output. Empty: $XDG_DATA_HOME/kueue
# (~/.local/share/kueue).
data_dir = ""
# Captured output kept per job and stream (MiB); beyond it only the tail is kept.
job_output_cap_mb = 16
# TLS (optional): serve with this certificate chain and key (PEM files).
tls_cert = ""
tls_key = ""
# With TLS, refuse clients and workers without a certificate signed by tls_ca.
tls_require_client_cert = false
# Serve Prometheus metrics at http://<bind address>:<port>/metrics (0: off).
metrics_port = 0

[worker_settings]
# Heartbeat with system information and free resources.
system_update_interval_seconds = 60
worker_max_parallel_jobs = 10
# Count load and memory used by others, so a busy workstation gets fewer jobs.
dynamic_check_free_resources = true
dynamic_cpu_load_scale_factor = 1.0
# Seconds between SIGTERM and SIGKILL when a job is killed.
kill_grace_seconds = 10.0
# On SIGTERM: "drain" finishes the running jobs and takes no new ones (a second
# SIGTERM stops them); "requeue" stops them at once and hands them back.
on_sigterm = "drain"
# While the server is away, job output waits on the worker: this many MB in
# memory, then up to output_spill_mb in spool files under the data directory
# (0: memory only); past that the jobs block on writing until it is back.
output_memory_mb = 64
output_spill_mb = 2048
# Jobs taken beyond the free slots, to start the moment a slot frees without
# waiting for the server (it takes them back for an idle worker); 0: none.
prefetch_jobs = 32
# Run as this many worker processes (NAME, NAME/2, ...), each with an equal
# share of the slots; the CPUs and RAM are counted for the whole machine, so
# a job may take all of them. One process starts about a thousand short jobs
# a second: more for many tiny jobs. A machine with fewer CPUs runs one per CPU.
worker_processes = 1

[client_settings]
# Resources a job asks for unless given on the command line.
job_default_cpus = 1
job_default_ram_mb = 512

[global_resources]
# Resources counted across all workers, e.g. licenses:
# genus = 3

[restart_workers]
# kueue_restart_workers starts a worker over ssh on each of these hosts that
# has none connected. Empty ssh_user: your own user name.
ssh_user = ""
# Whitespace separated host names that should always run a worker.
hostnames = ""
sleep_minutes_before_recheck = 60
# ssh port (0: ssh's default) and extra ssh arguments, e.g. "-i ~/.ssh/kueue".
ssh_port = 0
ssh_options = ""
# Run on the host (through its login shell) when it has no kueue-worker unit.
worker_command = "kueue_worker"
"""


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )


MAX_INT = kueue.UINT32_MAX


def _coerce(value: Any, typ: type, key: str, path: Path) -> Any:
    ok = (
        (typ is bool and isinstance(value, bool))
        or (typ is int and isinstance(value, int) and not isinstance(value, bool))
        or (typ is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (typ is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(
            f"{path}: {key} must be {_type_name(typ())}, not {_type_name(value)} ({value!r}); "
            "fix the value or delete the line to use the default"
        )
    if typ is int and value > MAX_INT:
        # Counts, sizes and seconds all travel in 32-bit fields somewhere.
        raise ConfigError(f"{path}: {key} = {value} is too large (at most {MAX_INT})")
    return float(value) if typ is float else value


def parse(text: str, path: Path) -> Config:
    """Build a Config from TOML text; raises ConfigError."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = Config(path=path)
    for section, values in raw.items():
        if section == "global_resources":
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: [global_resources] must be a table of name = amount")
            for name, amount in values.items():
                amount = _coerce(amount, int, f"global_resources.{name}", path)
                if amount < 0:
                    raise ConfigError(f"{path}: global_resources.{name} must not be negative")
                config.global_resources[name] = amount
            continue
        cls = _SECTIONS.get(section)
        if cls is None:
            config.warnings.append(f"{path}: unknown key or section '{section}' ignored")
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table (a section), not {_type_name(values)}")
        target = getattr(config, section)
        types = {f.name: type(f.default) for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in types:
                config.warnings.append(f"{path}: unknown key '{section}.{key}' ignored")
                continue
            setattr(target, key, _coerce(value, types[key], f"{section}.{key}", path))
    _validate(config, path)
    return config


# Accepted values of common_settings.log_level.
LOG_LEVELS = ("off", "error", "warn", "warning", "info", "debug", "trace")


def _validate(config: Config, path: Path) -> None:
    c = config.common_settings
    if c.log_level.strip().lower() not in LOG_LEVELS:
        # A warning, not an error: Kueue's own configs must keep working.
        config.warnings.append(
            f"{path}: common_settings.log_level {c.log_level!r} is not one of error, warn, info, debug, "
            "trace; using info"
        )
    if c.log_format not in ("text", "json"):
        raise ConfigError(
            f'{path}: common_settings.log_format must be "text" or "json", not {c.log_format!r}'
        )
    if not c.shared_secret:
        raise ConfigError(f"{path}: common_settings.shared_secret is empty; set the cluster's shared secret")
    if not 0 <= c.server_port < 65536:
        # 0 lets the server pick a free port (tests); clients need the real one.
        raise ConfigError(f"{path}: common_settings.server_port must be between 0 and 65535")
    if bool(c.tls_client_cert) != bool(c.tls_client_key):
        raise ConfigError(f"{path}: set both common_settings.tls_client_cert and tls_client_key, or neither")
    s = config.server_settings
    if bool(s.tls_cert) != bool(s.tls_key):
        raise ConfigError(f"{path}: set both server_settings.tls_cert and tls_key, or neither")
    if s.tls_require_client_cert and not (s.tls_cert and c.tls_ca):
        raise ConfigError(
            f"{path}: server_settings.tls_require_client_cert needs tls_cert, tls_key and common_settings.tls_ca"
        )
    for key in ("worker_timeout_seconds", "job_offer_timeout_seconds", "maintenance_interval_seconds"):
        if getattr(s, key) <= 0:
            raise ConfigError(f"{path}: server_settings.{key} must be positive")
    if not 0 <= s.metrics_port < 65536:
        raise ConfigError(f"{path}: server_settings.metrics_port must be between 0 (off) and 65535")
    if s.job_output_cap_mb <= 0:
        raise ConfigError(f"{path}: server_settings.job_output_cap_mb must be positive")
    w = config.worker_settings
    if w.system_update_interval_seconds <= 0:
        raise ConfigError(f"{path}: worker_settings.system_update_interval_seconds must be positive")
    if w.on_sigterm not in ("drain", "requeue"):
        raise ConfigError(
            f'{path}: worker_settings.on_sigterm must be "drain" or "requeue", not {w.on_sigterm!r}'
        )
    if w.output_memory_mb < 1:
        raise ConfigError(f"{path}: worker_settings.output_memory_mb must be at least 1")
    if w.prefetch_jobs < 0:
        raise ConfigError(
            f"{path}: worker_settings.prefetch_jobs must not be negative (0 turns prefetching off)"
        )
    if w.output_spill_mb < 0:
        raise ConfigError(
            f"{path}: worker_settings.output_spill_mb must not be negative (0 turns spilling off)"
        )
    if w.worker_max_parallel_jobs < 0:
        raise ConfigError(f"{path}: worker_settings.worker_max_parallel_jobs must not be negative")
    if w.worker_processes < 1:
        raise ConfigError(f"{path}: worker_settings.worker_processes must be at least 1")
    if w.worker_processes > max(1, w.worker_max_parallel_jobs):
        raise ConfigError(
            f"{path}: worker_settings.worker_processes ({w.worker_processes}) is more than "
            f"worker_max_parallel_jobs ({w.worker_max_parallel_jobs}): each process needs a slot; "
            "lower worker_processes or raise worker_max_parallel_jobs"
        )
    if not 0 <= config.restart_workers.ssh_port < 65536:
        raise ConfigError(f"{path}: restart_workers.ssh_port must be between 0 (ssh's default) and 65535")


def load(explicit: str | os.PathLike[str] | None = None, *, create: bool = True) -> Config:
    """Read the config file, writing the commented template first if there is
    none. Not for a file named by --config: a mistyped path would get a new
    secret, and the error that follows would point elsewhere. ($KUEUE_CONFIG,
    set once, may name a file yet to be written.)"""
    path = resolve_config_path(explicit)
    if not path.exists():
        if explicit:
            raise ConfigError(
                f"{path}: no such config file (named by --config); copy the cluster's config there, "
                "or leave --config out"
            )
        if not create:
            raise ConfigError(f"{path}: no such config file")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another program wrote it at the same moment: read theirs
        except OSError as exc:
            raise ConfigError(f"{path}: cannot create the config file: {exc.strerror}") from exc
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(template())
            print(f"kueue: wrote a new config file with a random shared secret: {path}", file=sys.stderr)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file in UTF-8 (byte {exc.start} cannot be decoded); is it the config file?"
        ) from exc
    return parse(text, path)
