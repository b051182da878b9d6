"""kueue_restart_workers: keep a worker running on every host listed in the
config's [restart_workers] hostnames.

Each round asks the server which workers are connected, starts one over ssh
on every listed host that has none, then sleeps sleep_minutes_before_recheck
minutes. On the host, a systemd user unit kueue-worker.service is started if
there is one (`kueue install-units --worker`); otherwise worker_command runs
detached from the ssh session (setsid + nohup), its output appended to
~/.local/state/kueue/kueue_worker-<host>.log. No `screen` needed.

A worker that still runs there but lost its server is not doubled: the new
one finds the old one's lock and exits, and this says so.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import kueue
from kueue import config as kconfig
from kueue import logs
from kueue.v1 import common_pb2

log = logging.getLogger("kueue_restart_workers")

SSH_TIMEOUT = 90.0
MAX_PARALLEL_SSH = 16
# Seconds the host waits to see that a worker it started is still alive.
ALIVE_CHECK_SECONDS = 1

# Fed to `sh -s` on the host, so the login shell (bash, zsh, fish, tcsh...)
# never has to parse it; WORKER_COMMAND is filled in, shell-quoted.
REMOTE_SCRIPT = """\
unit=kueue-worker.service
if command -v systemctl >/dev/null 2>&1 && systemctl --user cat "$unit" >/dev/null 2>&1; then
    if systemctl --user start "$unit"; then
        echo "started $unit (systemd user unit)"
        exit 0
    fi
    echo "systemctl --user start $unit failed" >&2
    exit 1
fi
dir="${XDG_STATE_HOME:-$HOME/.local/state}/kueue"
mkdir -p "$dir" || exit 1
log="$dir/kueue_worker-$(uname -n).log"
detach=
if command -v setsid >/dev/null 2>&1; then detach=setsid; fi
$detach nohup sh -c WORKER_COMMAND </dev/null >>"$log" 2>&1 &
pid=$!
sleep ALIVE_CHECK
if kill -0 "$pid" 2>/dev/null; then
    echo "started kueue_worker (pid $pid, log $log)"
    exit 0
fi
echo "kueue_worker exited at once; the end of $log:" >&2
tail -n 5 "$log" >&2
exit 1
"""


class RestartError(Exception):
    """The tool cannot run with this config; the message says what to fix."""


def remote_script(worker_command: str) -> str:
    return REMOTE_SCRIPT.replace("WORKER_COMMAND", shlex.quote(f"exec {worker_command}")).replace(
        "ALIVE_CHECK", str(ALIVE_CHECK_SECONDS)
    )


def ssh_command(settings: kconfig.RestartWorkers, host: str) -> list[str]:
    # ssh takes the first value given for an option: the user's options come
    # first so they win over our defaults.
    command = ["ssh", *shlex.split(settings.ssh_options)]
    if settings.ssh_port:
        command += ["-p", str(settings.ssh_port)]
    command += ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    command += [f"{settings.ssh_user}@{host}" if settings.ssh_user else host, "sh -s"]
    return command


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _same_host(a: str, b: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if a == b:
        return True
    if _is_address(a) or _is_address(b):
        return False
    # "lab07" in the config and "lab07.example.org" as the host name (or back).
    return a.split(".", 1)[0] == b.split(".", 1)[0]


def missing_hosts(hosts: Iterable[str], workers: Iterable[common_pb2.Worker]) -> list[str]:
    """The hosts no connected worker runs on (by worker name or host name)."""
    names = set()
    for worker in workers:
        if worker.connected:
            names |= {n for n in (worker.name, worker.system.hostname) if n}
    return [host for host in hosts if not any(_same_host(host, name) for name in names)]


@dataclass
class Started:
    host: str
    ok: bool
    message: str


def start_worker(settings: kconfig.RestartWorkers, host: str) -> Started:
    command = ssh_command(settings, host)
    try:
        done = subprocess.run(
            command,
            input=remote_script(settings.worker_command),
            capture_output=True,
            text=True,
            timeout=SSH_TIMEOUT,
        )
    except FileNotFoundError:
        return Started(host, False, "ssh is not installed here")
    except subprocess.TimeoutExpired:
        return Started(host, False, f"ssh did not finish within {SSH_TIMEOUT:.0f} s")
    out = done.stdout.strip().splitlines()
    err = [line for line in done.stderr.strip().splitlines() if line.strip()]
    if done.returncode == 0:
        return Started(host, True, out[-1] if out else "started")
    if done.returncode == 255:
        # ssh's own failure: host unreachable, key refused, host key unknown.
        return Started(host, False, f"ssh failed: {err[-1] if err else 'exit status 255'}")
    return Started(host, False, " / ".join(err[-6:]) or f"exit status {done.returncode}")


class Restarter:
    def __init__(self, config: kconfig.Config) -> None:
        self.config = config
        self.settings = config.restart_workers
        self.hosts = self.settings.hostnames.split()
        # Hosts we started a worker on in the previous round.
        self._started: set[str] = set()

    def check(self) -> None:
        where = self.config.path or "the config file"
        if not self.hosts:
            raise RestartError(
                f"restart_workers.hostnames in {where} is empty; list the hosts that should run a worker"
            )
        if self.settings.sleep_minutes_before_recheck < 1:
            raise RestartError(f"restart_workers.sleep_minutes_before_recheck in {where} must be at least 1")

    def connected_workers(self) -> list[common_pb2.Worker]:
        from kueue_client.api import Client

        with Client(self.config) as client:
            return client.list_workers()

    def once(self) -> bool:
        """One round; False if the server could not be asked or a start failed."""
        from kueue_client.errors import KueueError

        try:
            workers = self.connected_workers()
        except KueueError as exc:
            log.error("cannot ask the server which workers are connected (%s); starting none", exc)
            return False
        missing = missing_hosts(self.hosts, workers)
        for host in set(self._started) - set(missing):
            self._started.discard(host)
        if not missing:
            log.info("every host runs a connected worker: %s", " ".join(self.hosts))
            return True
        for host in missing:
            if host in self._started:
                log.warning("%s: the worker started there last round has not connected; starting again", host)
        log.info("no connected worker on %s: starting one there", " ".join(missing))
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_SSH, len(missing))) as pool:
            results = list(pool.map(lambda host: start_worker(self.settings, host), missing))
        ok = True
        for result in results:
            if result.ok:
                self._started.add(result.host)
                logs.event(log, "worker_started", "%s: %s", result.host, result.message, host=result.host)
            else:
                ok = False
                logs.event(
                    log,
                    "worker_start_failed",
                    "%s: could not start a worker: %s",
                    result.host,
                    result.message,
                    level=logging.ERROR,
                    host=result.host,
                    reason=result.message,
                )
        return ok

    def loop(self, stop: threading.Event) -> None:
        interval = self.settings.sleep_minutes_before_recheck * 60.0
        while not stop.is_set():
            self.once()
            stop.wait(interval)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kueue_restart_workers",
        description="Start a kueue_worker over ssh on every host of [restart_workers] hostnames that has no "
        "connected worker; check again every sleep_minutes_before_recheck minutes.",
        epilog="example: kueue_restart_workers --once",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=kueue.CONFIG_OPTION_HELP,
    )
    parser.add_argument(
        "--once", action="store_true", help="one round, then exit (non-zero if a start failed)"
    )
    parser.add_argument("--log-format", choices=logs.FORMATS, help="text, or json: one JSON object per line")
    parser.add_argument("--version", action="version", version=f"kueue_restart_workers {kueue.__version__}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = logs.start_program("kueue_restart_workers", args.config, args.log_format)
    if config is None:
        return 2
    restarter = Restarter(config)
    try:
        restarter.check()
    except RestartError as exc:
        print(f"kueue_restart_workers: {exc}", file=sys.stderr)
        return 2
    if args.once:
        return 0 if restarter.once() else 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    restarter.loop(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
