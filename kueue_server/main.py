"""The kueue_server program."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import grpc

import kueue
from kueue import allocator, event_loop, logs
from kueue import config as kconfig
from kueue.rpc import SERVER_OPTIONS, AuthInterceptor, add_servicer, server_credentials
from kueue.v1 import cluster_service_pb2_grpc, job_service_pb2_grpc, worker_service_pb2_grpc
from kueue_server import metrics_http
from kueue_server.app import App
from kueue_server.cluster_service import ClusterService
from kueue_server.grpc_log import quiet_call_end_races
from kueue_server.job_service import JobService
from kueue_server.standard_services import PUBLIC_SERVICES, add_standard_services
from kueue_server.store import StoreError
from kueue_server.worker_service import WorkerService

log = logging.getLogger("kueue_server")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kueue_server",
        description="The Kueue server: holds the job queue and its durable state, and schedules jobs on workers.",
        epilog="example: kueue_server --config ~/.config/kueue/config.toml",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=kueue.CONFIG_OPTION_HELP,
    )
    parser.add_argument(
        "--port-file",
        metavar="PATH",
        help="write the bound port to PATH once listening (useful with server_port = 0)",
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="text, or json: one JSON object per line (default: common_settings.log_format)",
    )
    parser.add_argument(
        "--ephemeral-store",
        action="store_true",
        help="keep the job database in memory: nothing survives a restart (for benchmarks only)",
    )
    parser.add_argument("--version", action="version", version=f"kueue_server {kueue.__version__}")
    return parser.parse_args(argv)


def _dual_stack() -> bool:
    """Whether a socket bound to [::] also accepts IPv4 (Linux's default)."""
    try:
        return Path("/proc/sys/net/ipv6/bindv6only").read_text().strip() == "0"
    except OSError:
        return False


def bind(
    server: grpc.aio.Server, addresses: str, port: int, credentials: grpc.ServerCredentials | None = None
) -> list[str]:
    """Bind every address; the server runs as long as one of them binds."""
    wanted = addresses.split()
    # "0.0.0.0 [::]" is the documented default: on a dual-stack host [::]
    # already takes IPv4, and binding 0.0.0.0 too would fail noisily.
    if "[::]" in wanted and "0.0.0.0" in wanted and _dual_stack():
        wanted = ["[::]"] + [a for a in wanted if a not in ("[::]", "0.0.0.0")]
    bound = []
    for address in wanted:
        target = f"{address}:{port}"
        try:
            if credentials is None:
                chosen = server.add_insecure_port(target)
            else:
                chosen = server.add_secure_port(target, credentials)
        except RuntimeError as exc:
            log.warning("cannot listen on %s: %s", target, exc)
            continue
        if chosen:
            port = port or chosen  # with port 0, bind the other addresses to the same port
            bound.append(f"{address}:{chosen}")
        else:
            log.warning("cannot listen on %s", target)
    return bound


async def serve(config: kconfig.Config, port_file: str | None, ephemeral_store: bool = False) -> int:
    app = App(config, ephemeral_store=ephemeral_store)
    if ephemeral_store:
        log.warning("--ephemeral-store: the job database is kept in memory and lost when the server stops")
    allocator.tune()  # worker output and attached stdin pass through here
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(config.common_settings.shared_secret, public_services=PUBLIC_SERVICES)],
        options=SERVER_OPTIONS,
    )
    # Attach and Connect send output and stdin encoded by kueue.wire.
    add_servicer(job_service_pb2_grpc.add_JobServiceServicer_to_server, JobService(app), server)
    cluster_service_pb2_grpc.add_ClusterServiceServicer_to_server(ClusterService(app), server)
    add_servicer(worker_service_pb2_grpc.add_WorkerServiceServicer_to_server, WorkerService(app), server)
    health = add_standard_services(server)
    try:
        credentials = server_credentials(config)
    except kconfig.ConfigError as exc:
        print(f"kueue_server: {exc}", file=sys.stderr)
        return 2
    bound = bind(
        server, config.server_settings.bind_addresses, config.common_settings.server_port, credentials
    )
    if not bound:
        print(
            f"kueue_server: could not listen on any of {config.server_settings.bind_addresses!r} "
            f"port {config.common_settings.server_port}; is another server running? "
            f"(server_settings.bind_addresses in {config.path})",
            file=sys.stderr,
        )
        return 1
    await app.start()
    # The store is open and the app runs: health says SERVING from the first call.
    await health.serving()
    app.on_store_health = health.follow_store
    await server.start()
    log.info(
        "kueue_server %s listening on %s%s (data in %s)",
        kueue.__version__,
        ", ".join(bound),
        " with TLS" if credentials else "",
        config.data_dir,
    )
    metrics = await metrics_http.start_if_configured(
        app.observer.exposition, config.server_settings.bind_addresses, config.server_settings.metrics_port
    )
    if port_file:
        Path(port_file).write_text(bound[0].rsplit(":", 1)[1] + "\n")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    # Health checkers (load balancers) see NOT_SERVING before calls are refused.
    await health.enter_graceful_shutdown()
    # First refuse new calls: grpc does that in the first step of stop(),
    # before it waits (up to the grace time) for the calls in flight.
    stopping = asyncio.create_task(server.stop(grace=2.0))
    await asyncio.sleep(0)
    # Then commit what the workers sent and tell them the server is going
    # (they keep their jobs and reconnect later): their streams end now, not
    # cut off when the grace time is up.
    await app.part_from_workers()
    # And the clients' watching streams (wait, log -f, ls --watch, run),
    # which would otherwise hold the stop for the whole grace time.
    app.watchers.close()
    await stopping
    if metrics is not None:
        await metrics.stop()
    await app.stop()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = logs.start_program("kueue_server", args.config, args.log_format)
    if config is None:
        return 2
    quiet_call_end_races()
    try:
        return event_loop.run(serve(config, args.port_file, args.ephemeral_store))
    except StoreError as exc:
        print(f"kueue_server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
