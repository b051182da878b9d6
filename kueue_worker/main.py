"""Entry point: `kueue_worker [--config PATH] [--name NAME]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

import grpc

import kueue
from kueue import config as kconfig
from kueue import event_loop, logs, rpc
from kueue.logs import event
from kueue_worker import identity, orphans, output_spool, shares, supervisor, sysinfo
from kueue_worker.connection import Connection
from kueue_worker.shares import WHOLE, Share
from kueue_worker.worker import Worker

log = logging.getLogger("kueue_worker")

# After Leaving, how long the connection may take to wind down before we cut it.
CLOSE_TIMEOUT = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kueue_worker", description="Run the jobs a Kueue server assigns, on this machine."
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=kueue.CONFIG_OPTION_HELP,
    )
    parser.add_argument("--name", help="worker name shown by the server (default: the host name)")
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="text, or json: one JSON object per line (default: common_settings.log_format)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="when draining on SIGTERM, stop the jobs still running after SECONDS and have them "
        "queued again (default 0: wait for them; the systemd unit sets it)",
    )
    parser.add_argument(
        "--ignore-load",
        action="store_true",
        help="offer every free slot whatever the machine's load, as if "
        "dynamic_check_free_resources were false (what `kueue up` starts)",
    )
    # Given by the supervisor of a worker run as several processes (supervisor.py).
    parser.add_argument("--process", type=_share, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor-fd", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _share(text: str) -> Share:
    try:
        return Share.parse(text)
    except shares.ShareError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0: {text!r}")
    return value


async def shutdown(
    worker: Worker, connection: Connection, connection_task: asyncio.Task[None], reason: str
) -> None:
    """Stop for good: say Leaving, kill every attempt, report the finishes, close.

    Leaving first lets the server queue the jobs again at once (instead of
    after worker_timeout_seconds) rather than record the kills as failures.
    """
    announced = connection.announce_leaving(reason)
    killed = await worker.stop_jobs()
    await connection.leave()
    if not announced and killed:
        log.warning(
            "not connected to the server: it will queue the %d killed job(s) again when this worker times out",
            killed,
        )
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(connection_task, CLOSE_TIMEOUT)


async def drain(worker: Worker, signals: asyncio.Queue[int], signame: str, timeout: float = 0.0) -> None:
    """Finish the running jobs and take no new ones, until they end, another
    signal comes, or `timeout` seconds (0: no limit) have passed."""
    event(
        log,
        "worker_draining",
        "%s received: draining: %d running job(s) finish, no new ones are taken "
        "(send it again to stop them and have them queued again)%s",
        signame,
        len(worker.processes),
        f"; at most {timeout:g} s" if timeout else "",
        worker=worker.name,
        running=len(worker.processes),
        drain_timeout=timeout or None,
    )
    worker.start_draining()
    idle = asyncio.create_task(worker.wait_idle())
    again = asyncio.create_task(signals.get())
    await asyncio.wait({idle, again}, timeout=timeout or None, return_when=asyncio.FIRST_COMPLETED)
    for task in (idle, again):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if worker.processes:
        why = (
            "signal received" if again.done() and not again.cancelled() else f"drain timeout ({timeout:g} s)"
        )
        log.info("%s while draining: stopping the remaining %d job(s)", why, len(worker.processes))


async def serve(
    cfg: kconfig.Config,
    name: str,
    worker_id: str,
    credentials: grpc.ChannelCredentials | None = None,
    drain_timeout: float = 0.0,
    reaped: list[orphans.Record] | None = None,
    share: Share = WHOLE,
    supervisor_fd: int | None = None,
    machine: str = "",
) -> int:
    """Run until SIGTERM/SIGINT, or until the pipe `supervisor_fd` closes
    (the supervisor of a worker of several processes is gone); the exit
    status. `machine`: the name a process of such a worker shares with its
    siblings."""
    worker = Worker(
        cfg.worker_settings,
        name,
        worker_id,
        orphans.Ledger(orphans.ledger_path(cfg.data_dir, name)),
        output_spool.SpoolDir(output_spool.spool_path(cfg.data_dir, name)),
        share,
        machine,
    )
    for rec in reaped or []:
        worker.report_killed_after_restart(rec.job_id, rec.attempt, rec.create_time)
    connection = Connection(
        worker,
        cfg.server_address,
        cfg.common_settings.shared_secret,
        cfg.path,
        float(cfg.worker_settings.system_update_interval_seconds),
        credentials=credentials,
    )
    loop = asyncio.get_running_loop()
    # Two lines a job, written together with what else the next 20 ms log.
    logs.hold_briefly(loop)
    signals: asyncio.Queue[int] = asyncio.Queue()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signals.put_nowait, signum)
    if supervisor_fd is not None:
        _watch_supervisor(loop, supervisor_fd, signals)
    connection_task = asyncio.create_task(connection.run(), name="connection")
    first_signal = asyncio.create_task(signals.get())
    await asyncio.wait({connection_task, first_signal}, return_when=asyncio.FIRST_COMPLETED)
    if connection_task.done():
        # Only a bug ends the connection loop on its own; the jobs must not outlive us unreported.
        first_signal.cancel()
        log.error(
            "the connection loop stopped unexpectedly; killing the jobs", exc_info=connection_task.exception()
        )
        await worker.stop_jobs()
        return 1
    signame = signal.Signals(first_signal.result()).name
    drained = cfg.worker_settings.on_sigterm == "drain" and bool(worker.processes)
    if drained:
        await drain(worker, signals, signame, drain_timeout)
    # After a drain its signal was logged already: this is the drain's end, not a second signal.
    why = "drain over" if drained else f"{signame} received"
    event(
        log,
        "worker_stopping",
        "%s: stopping the jobs still running (if any), then leaving (send the signal again to kill them at once)",
        why,
        worker=name,
        running=len(worker.processes),
    )

    async def kill_on_second_signal() -> None:
        await signals.get()
        log.warning("second signal: killing jobs with SIGKILL now")
        await worker.stop_jobs(signal.SIGKILL)

    impatient = asyncio.create_task(kill_on_second_signal())
    try:
        await shutdown(worker, connection, connection_task, f"worker {name} stopped by {signame}")
    finally:
        impatient.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await impatient
        if worker.ledger is not None:
            worker.ledger.close()  # with the entries it still holds
        logs.hold_briefly(None)
    return 0


def _watch_supervisor(loop: asyncio.AbstractEventLoop, fd: int, signals: asyncio.Queue[int]) -> None:
    """Stop as on SIGTERM once the supervisor's end of the pipe `fd` closes."""

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            log.warning("the supervisor of this worker's processes is gone: stopping as on SIGTERM")
            signals.put_nowait(signal.SIGTERM)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


def _process_count(asked: int) -> int:
    """How many worker processes to run of worker_processes: one per CPU at most."""
    cores = sysinfo.probe().cpu_cores
    count = shares.fitting(asked, cores)
    if count < asked:
        log.warning(
            "worker_settings.worker_processes is %d but this machine has %d CPU(s): "
            "running %d worker process(es), one per CPU",
            asked,
            cores,
            count,
        )
    return count


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    share: Share = args.process or WHOLE
    program = "kueue_worker" if share.count == 1 else f"kueue_worker[{share}]"
    cfg = logs.start_program(program, args.config, args.log_format)
    if cfg is None:
        return 2
    if args.ignore_load:
        cfg.worker_settings.dynamic_check_free_resources = False
    base_name = args.name or socket.gethostname()
    if args.process is None:
        asked = cfg.worker_settings.worker_processes
        count = _process_count(asked) if asked > 1 else 1
        orphans.reap_dropped_processes(cfg.data_dir, base_name, count, cfg.worker_settings.kill_grace_seconds)
        if count > 1:
            own_args = sys.argv[1:] if argv is None else list(argv)
            status = supervisor.Supervisor(own_args, str(cfg.path), count, base_name).run()
            event(log, "worker_stopped", "stopped", worker=base_name, exit_status=status)
            return status
    name = share.worker_name(base_name)
    try:
        identity.lock(cfg.data_dir, name)  # held until the process ends
    except identity.IdentityError as exc:
        log.error("%s", exc)
        return 1
    try:
        worker_id = identity.worker_id(cfg.data_dir, name)
    except identity.IdentityError as exc:
        print(f"kueue_worker: {exc}", file=sys.stderr)
        return 2
    # Before registering: the server queues these jobs again as soon as we
    # report no attempts, and they must not run here at the same time.
    ledger = orphans.ledger_path(cfg.data_dir, name)
    previous = {r.key: r for r in orphans.previous_attempts(ledger)}
    for rec in orphans.reap(ledger, cfg.worker_settings.kill_grace_seconds, worker_id):
        previous.setdefault(rec.key, rec)
    # Those are over now; the server learns that they ran (history) and ended without a result.
    reaped = list(previous.values())
    try:
        credentials = rpc.channel_credentials(cfg)
    except kconfig.ConfigError as exc:
        print(f"kueue_worker: {exc}", file=sys.stderr)
        return 2
    machine = base_name if share.count > 1 else ""
    status = event_loop.run(
        serve(
            cfg, name, worker_id, credentials, args.drain_timeout, reaped, share, args.supervisor_fd, machine
        )
    )
    event(log, "worker_stopped", "stopped", worker=name, exit_status=status)
    return status
