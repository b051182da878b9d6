"""A real local cluster for end-to-end tests: a kueue_server process and
kueue_worker processes on 127.0.0.1, each with its own config file and data
directory under a temporary directory, and the `kueue` CLI run as a process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from kueue import config as kconfig

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until predicate() is truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        # EFBIG instead of death by SIGXFSZ: the server sees a failing write.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("KUEUE_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_bench(script: str, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """bench/SCRIPT run with this checkout's Python and environment, its output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=timeout,
    )


class Cluster:
    def __init__(self, root: Path, *, secret: str = "s" * 64, **server_settings: Any) -> None:
        self.root = root
        self.secret = secret
        self.port = 0
        self.server_settings = {
            "bind_addresses": "127.0.0.1",
            "worker_timeout_seconds": 30,
            "job_offer_timeout_seconds": 30,
            "data_dir": str(root / "server-data"),
            **server_settings,
        }
        self.global_resources: dict[str, int] = {}
        # Extra [common_settings] keys for every config written (e.g. TLS).
        self.common_settings: dict[str, Any] = {}
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ config

    def write_config(
        self, path: Path, *, port: int, secret: str | None = None, **sections: dict[str, Any]
    ) -> Path:
        parts = {
            "common_settings": {
                "shared_secret": secret or self.secret,
                "server_name": "127.0.0.1",
                "server_port": port,
                "log_level": "info",
                **self.common_settings,
            },
            "server_settings": dict(self.server_settings),
            "worker_settings": {
                "system_update_interval_seconds": 1,
                "dynamic_check_free_resources": False,
                "worker_max_parallel_jobs": 4,
                "kill_grace_seconds": 5.0,
            },
            "client_settings": {"job_default_cpus": 1, "job_default_ram_mb": 10},
            "global_resources": dict(self.global_resources),
        }
        for section, values in sections.items():
            parts.setdefault(section, {}).update(values)
        lines = []
        for section, values in parts.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            lines.append("")
        path.write_text("\n".join(lines))
        return path

    @property
    def client_config(self) -> Path:
        return self.root / "client.toml"

    # ------------------------------------------------------------------ server

    def start_server(self, *args: str, file_size_limit: int | None = None) -> None:
        """Start the server with extra command-line `args`; file_size_limit
        (bytes) makes its writes fail like a full disk."""
        port_file = self.root / "server.port"
        port_file.unlink(missing_ok=True)
        config = self.write_config(self.root / "server.toml", port=self.port)
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the process owns it
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kueue_server",
                "--config",
                str(config),
                "--port-file",
                str(port_file),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
            preexec_fn=_limit_file_size(file_size_limit) if file_size_limit else None,
        )
        server = self.server
        wait_for(
            lambda: (port_file.exists() and port_file.read_text().strip()) or server.poll() is not None,
            what="the server to listen",
        )
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}:\n{self.server_log()}")
        self.port = int(port_file.read_text())
        self.write_config(self.client_config, port=self.port)

    def stop_server(self, sig: int = signal.SIGTERM) -> int:
        assert self.server is not None
        self.server.send_signal(sig)
        code = self.server.wait(timeout=30)
        self.server = None
        return code

    def server_log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ workers

    def start_worker(
        self,
        name: str,
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        **worker_settings: Any,
    ) -> subprocess.Popen[bytes]:
        """Start a worker with extra command-line `args`; `port` sends it
        through something else (a Relay) to the server; `env` adds to its environment."""
        config = self.write_config(
            self.root / f"worker-{name}.toml",
            port=port or self.port,
            worker_settings={
                "system_update_interval_seconds": 1,
                "dynamic_check_free_resources": False,
                "worker_max_parallel_jobs": 4,
                "kill_grace_seconds": 5.0,
                **worker_settings,
            },
            server_settings={"data_dir": str(self.root / f"worker-{name}-data")},
        )
        log = open(self.root / f"worker-{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "kueue_worker", "--config", str(config), "--name", name, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**_env(), **(env or {})},
            start_new_session=True,
        )
        self.workers[name] = proc
        return proc

    def run_worker_again(self, name: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a second kueue_worker with the config and name of `name`
        (started by start_worker) to its end: its status and output."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "kueue_worker",
                "--config",
                str(self.root / f"worker-{name}.toml"),
                "--name",
                name,
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=timeout,
        )

    def wait_workers(self, *names: str, timeout: float = 30.0) -> None:
        def connected() -> bool:
            out = self.kueue("workers", "--json", check=False)
            return out.returncode == 0 and all(f'"{n}"' in out.stdout for n in names)

        wait_for(connected, timeout, f"workers {names} to connect")

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.workers.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def worker_log(self, name: str) -> str:
        path = self.root / f"worker-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self, limit: int = 20000) -> str:
        parts = ["----- server log -----\n" + self.server_log()[-limit:]]
        for path in sorted(self.root.glob("worker-*.log")):
            parts.append(f"----- {path.stem} log -----\n" + path.read_text(errors="replace")[-limit:])
        return "\n".join(parts)

    def stack_dumps(self) -> str:
        """Python stacks of the workers (py-spy, where installed), for a test that
        finds one stuck."""
        import shutil

        if not shutil.which("py-spy"):
            return "(py-spy not installed: no stacks)"
        out = []
        for name, proc in self.workers.items():
            dump = subprocess.run(["py-spy", "dump", "--pid", str(proc.pid)], capture_output=True, text=True)
            out.append(f"--- worker {name} ---\n{dump.stdout}{dump.stderr}")
        return "\n".join(out)

    # ------------------------------------------------------------------ client

    def kueue(
        self,
        *args: str,
        cwd: Path | str | None = None,
        check: bool = True,
        input: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
        config: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = _env()
        full_env.update(env or {})
        result = subprocess.run(
            [sys.executable, "-m", "kueue_client", "--config", str(config or self.client_config), *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kueue {' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def kueue_argv(self, *args: str, config: Path | None = None) -> list[str]:
        """The `kueue` command line that `kueue()` runs, for running it elsewhere (a pty)."""
        return [sys.executable, "-m", "kueue_client", "--config", str(config or self.client_config), *args]

    @staticmethod
    def env() -> dict[str, str]:
        """The environment programs of this checkout run with."""
        return _env()

    def client(self) -> Any:
        from kueue_client.api import Client

        return Client(kconfig.load(self.client_config, create=False))

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        import psutil

        procs = list(self.workers.values()) + ([self.server] if self.server else [])
        # Jobs run in sessions of their own: find them before their worker dies.
        leftovers = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftovers += psutil.Process(proc.pid).children(recursive=True)
        for child in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.workers.clear()
        self.server = None


class Relay:
    """A TCP relay between a worker and the server that a test can cut (every
    connection dropped, new ones refused) and heal: a network partition. Or
    pause (nothing goes through, every connection stays open: a silent
    partition, where packets are lost and nobody is told) and resume, which
    delivers what was held, as TCP resends it once the network is back."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self._open = True
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        # Cleared while paused: the pumps hold what they read.
        self._flowing = threading.Event()
        self._flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                # Paused: this pump reads no more, so the sender's buffers fill.
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        import socket

        self._open = False
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def heal(self) -> None:
        self._open = True

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._flowing.set()  # the pumps find their sockets closed and end
        self._listener.close()


@contextlib.contextmanager
def worker_behind_relay(root: Path, name: str, **server_settings: Any) -> Iterator[tuple[Cluster, Relay]]:
    """A server, and worker `name` connected to it through a Relay the test
    can cut (a network partition); both gone at the end."""
    cluster = Cluster(root, **server_settings)
    relay = None
    try:
        cluster.start_server()
        relay = Relay(cluster.port)
        cluster.start_worker(name, port=relay.port)
        cluster.wait_workers(name)
        yield cluster, relay
    finally:
        if relay is not None:
            relay.close()
        cluster.close()
