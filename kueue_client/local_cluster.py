"""`kueue up` / `kueue down`: a server and a worker on this machine, in the
background, for trying Kueue out or using one machine's cores as a queue.

Both run detached (own session, output to log files under
<data_dir>/logs/); their pids, with start times to detect a reused pid, are
kept in <data_dir>/local-cluster.json for `kueue down`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from kueue import process_start
from kueue_client.api import Client
from kueue_client.context import Context
from kueue_client.errors import KueueError

STATE_FILE = "local-cluster.json"
START_TIMEOUT = 20.0
POLL_INTERVAL = 0.2
# Beyond the worker's kill grace time (jobs stopping), how long `down` waits.
STOP_MARGIN = 5.0
PROGRAMS = {"server": "kueue_server", "worker": "kueue_worker"}
# While polling a server that is starting, retry connecting at once instead of
# after grpc's growing back-off (which reaches seconds after a few failures).
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 200),
]


@dataclass
class Started:
    pid: int
    create_time: float
    log: str
    command: list[str]
    # The start in seconds since boot (Linux; -1 elsewhere, and in files
    # written before it was kept): unlike create_time, no clock step moves it.
    started_since_boot: float = -1.0


def _state_path(ctx: Context) -> Path:
    return ctx.config.data_dir / STATE_FILE


def _read_state(path: Path) -> dict[str, Started]:
    try:
        raw = json.loads(path.read_text())
        return {role: Started(**raw[role]) for role in PROGRAMS if role in raw}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError):
        return {}  # unreadable: treat as nothing recorded, `up` rewrites it


def _write_state(path: Path, state: dict[str, Started], config: Path | None) -> None:
    data: dict[str, object] = {role: asdict(started) for role, started in state.items()}
    data["config"] = str(config) if config else None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _process(started: Started, role: str) -> psutil.Process | None:
    """The recorded process if it still runs; None if gone or the pid was reused."""
    try:
        proc = psutil.Process(started.pid)
        if (
            not process_start.same_start(proc, started.create_time, started.started_since_boot)
            or proc.status() == psutil.STATUS_ZOMBIE
        ):
            return None
        if not any(PROGRAMS[role] in part for part in proc.cmdline()):
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _child_env() -> dict[str, str]:
    # The children must import the same kueue code as this client, installed
    # or not (a checkout run with `python -m kueue_client`).
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _start(role: str, config_path: Path, log_dir: Path) -> Started:
    command = [sys.executable, "-m", PROGRAMS[role], "--config", str(config_path)]
    if role == "worker":
        # A queue on one's own machine, like tsp: a busy desktop must not keep
        # the first job waiting for the load to drop.
        command.append("--ignore-load")
    log = log_dir / f"{role}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in this terminal must not reach it
            close_fds=True,
            env=_child_env(),
        )
    try:
        create_time, since_boot = process_start.start_times(psutil.Process(proc.pid))
    except psutil.NoSuchProcess:
        create_time, since_boot = time.time(), -1.0
    return Started(proc.pid, create_time, str(log), command, since_boot)


def _last_line(log: str) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""
    except OSError:
        return ""


def _how_our_child_ended(pid: int, wait: float) -> str | None:
    """How our child `pid` ended (" (exit status 1)"), waiting up to `wait`
    seconds, and reaped; "" if it still runs then; None if it is not our
    child (init reaps it)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == pid:
            if os.WIFSIGNALED(status):
                return f" (killed by signal {os.WTERMSIG(status)})"
            return f" (exit status {os.WEXITSTATUS(status)})"
        if time.monotonic() >= deadline:
            return ""
        time.sleep(0.01)


# A process on its way out has lost its command line before it is a zombie;
# its exit status follows within moments.
EXIT_SETTLE = 2.0


def _check_alive(role: str, started: Started) -> None:
    how = _how_our_child_ended(started.pid, 0.0)
    if _process(started, role) is not None:
        return
    if how == "":
        how = _how_our_child_ended(started.pid, EXIT_SETTLE)
        if how == "":
            return  # still ours and running: the next poll looks again
    if how is None:
        how = " (its pid now names another process)" if _running(started.pid) else ""
    last = _last_line(started.log)
    raise KueueError(
        f"{PROGRAMS[role]} exited during start-up{how}{': ' + last if last else ''} (log: {started.log})"
    )


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_for_server(client: Client, started: Started, deadline: float) -> None:
    while True:
        _check_alive("server", started)
        try:
            client.server_info(timeout=1.0)
            return
        except KueueError as exc:
            if exc.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise
        if time.monotonic() > deadline:
            raise KueueError(
                f"kueue_server did not answer at {client.address} within {START_TIMEOUT:.0f} s "
                f"(log: {started.log})"
            )
        time.sleep(POLL_INTERVAL)


def _wait_for_worker(client: Client, started: Started, deadline: float) -> str:
    host = socket.gethostname()
    while True:
        _check_alive("worker", started)
        for worker in client.list_workers():
            if worker.connected and worker.system.hostname in ("", host):
                return worker.name or worker.id
        if time.monotonic() > deadline:
            raise KueueError(
                f"kueue_worker did not connect to {client.address} within {START_TIMEOUT:.0f} s "
                f"(log: {started.log})"
            )
        time.sleep(POLL_INTERVAL)


def up(ctx: Context) -> int:
    with Client(ctx.config, channel_options=FAST_RECONNECT) as client:
        return _up(ctx, client)


def _up(ctx: Context, client: Client) -> int:
    config = ctx.config
    if config.path is None:
        raise KueueError("no config file to give the server and worker")
    config_path = Path(os.path.abspath(config.path))
    state_path = _state_path(ctx)
    log_dir = config.data_dir / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KueueError(f"cannot create {log_dir}: {exc.strerror}") from None
    state = {role: s for role, s in _read_state(state_path).items() if _process(s, role) is not None}
    if len(state) == len(PROGRAMS):
        print(
            f"the local cluster is already running: kueue_server pid {state['server'].pid}, "
            f"kueue_worker pid {state['worker'].pid} (stop it with: kueue down)"
        )
        return 0
    if "server" not in state:
        try:
            client.server_info(timeout=2.0)
        except KueueError as exc:
            if exc.code == "UNAUTHENTICATED":
                # On a shared machine, most likely another user's `kueue up`.
                raise KueueError(
                    f"another kueue server already answers at {client.address}, with a different "
                    "shared secret (another user's, or one started with another config); give "
                    f"yours a port of its own: common_settings.server_port in {config_path}"
                    f"{_free_port_hint(config.common_settings.server_port)}, then kueue up again"
                ) from None
            if exc.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                raise
        else:
            raise KueueError(
                f"a kueue server not started by `kueue up` already answers at {client.address}; "
                "use it directly or stop it first"
            )
    deadline = time.monotonic() + START_TIMEOUT
    new: list[str] = []
    try:
        for role in PROGRAMS:
            if role not in state:
                state[role] = _start(role, config_path, log_dir)
                new.append(role)
                _write_state(state_path, state, config_path)
            if role == "server":
                _wait_for_server(client, state[role], deadline)
        worker_name = _wait_for_worker(client, state["worker"], deadline)
    except BaseException as exc:
        # Leave nothing half-started behind (Ctrl-C included); what ran before stays.
        for role in reversed(new):
            _stop(role, state.pop(role), STOP_MARGIN)
        if state:
            _write_state(state_path, state, config_path)
        else:
            state_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise KueueError(f"cannot start the local cluster: {exc}") from None
        raise
    server, worker = state["server"], state["worker"]
    print(f"kueue_server  pid {server.pid:<7}  at {client.address}  log: {server.log}")
    print(f"kueue_worker  pid {worker.pid:<7}  as {worker_name}  log: {worker.log}")
    print("try: kueue run echo hello   (stop with: kueue down)")
    return 0


def _free_port_hint(taken: int) -> str:
    """Names the first port after `taken` that nothing here listens on now ('' if none)."""
    for port in range(taken + 1, min(taken + 100, 65536)):
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
        return f" (say {port}, free now)"
    return ""


WORKER_DRAIN_PATIENCE = 1.0


def _stop(role: str, started: Started, grace: float) -> str:
    """SIGTERM, then SIGKILL after `grace` seconds; returns what happened."""
    proc = _process(started, role)
    name = f"{PROGRAMS[role]} (pid {started.pid})"
    if proc is None:
        return f"{name} was not running"
    try:
        proc.send_signal(signal.SIGTERM)
        if role == "worker":
            # A worker with running jobs drains on the first SIGTERM; `down`
            # means now, so a second one stops the jobs and hands them back.
            _, alive = psutil.wait_procs([proc], timeout=WORKER_DRAIN_PATIENCE)
            if alive:
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs([proc], timeout=grace)
        if alive:
            proc.kill()
            psutil.wait_procs([proc], timeout=STOP_MARGIN)
            return f"killed {name}: it did not stop within {grace:.0f} s of SIGTERM"
    except psutil.NoSuchProcess:
        pass
    return f"stopped {name}"


def down(ctx: Context) -> int:
    state_path = _state_path(ctx)
    state = _read_state(state_path)
    if not state:
        print(f"no local cluster is running (nothing recorded in {state_path})")
        state_path.unlink(missing_ok=True)
        return 0
    # The worker first: it stops its jobs and tells the server it is leaving.
    grace = {
        "worker": ctx.config.worker_settings.kill_grace_seconds + STOP_MARGIN,
        "server": 2 * STOP_MARGIN,
    }
    for role in ("worker", "server"):
        if role in state:
            print(_stop(role, state[role], grace[role]))
    state_path.unlink(missing_ok=True)
    return 0
