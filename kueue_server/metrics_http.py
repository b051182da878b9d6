"""The Prometheus endpoint: GET /metrics over plain HTTP on the server's loop.

Deliberately minimal: one request per connection, no keep-alive, no body,
small bounded requests, and a deadline for reading them, so a slow or
hostile peer costs a socket for a few seconds and nothing else. It serves
counts only (no job commands, names or output) and takes no input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kueue_server.metrics import CONTENT_TYPE

log = logging.getLogger("kueue_server")

MAX_REQUEST_BYTES = 16 * 1024
READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 64


class MetricsEndpoint:
    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render
        self.servers: list[asyncio.Server] = []
        self._open = 0

    async def start(self, addresses: str, port: int) -> list[str]:
        """Listen on each of the space-separated addresses that binds; what bound."""
        bound = []
        for address in addresses.split():
            host = address[1:-1] if address.startswith("[") and address.endswith("]") else address
            try:
                server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_BYTES)
            except OSError as exc:
                log.warning("metrics: cannot listen on %s port %d: %s", address, port, exc.strerror or exc)
                continue
            self.servers.append(server)
            for sock in server.sockets:
                name = sock.getsockname()
                shown = f"[{name[0]}]" if ":" in name[0] else name[0]
                bound.append(f"{shown}:{name[1]}")
        return bound

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await server.wait_closed()
        self.servers = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > MAX_CONNECTIONS:
                return
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, body, extra = self._respond(head)
            head_only = head.startswith(b"HEAD ")
            writer.write(_response(status, body, extra, head_only))
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(READ_TIMEOUT):
                    await writer.drain()
        except Exception:
            log.exception("metrics: serving a request failed")
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    def _respond(self, head: bytes) -> tuple[str, bytes, str]:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", b"bad request\n", ""
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"only GET\n", "Allow: GET, HEAD\r\n"
        path = target.split("?", 1)[0]
        if path != "/metrics":
            return "404 Not Found", b"not found; metrics are at /metrics\n", ""
        return "200 OK", self.render().encode(), ""


def _response(status: str, body: bytes, extra: str, head_only: bool) -> bytes:
    content_type = CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
    header = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return header.encode() + (b"" if head_only else body)


async def start_if_configured(render: Callable[[], str], addresses: str, port: int) -> MetricsEndpoint | None:
    """The endpoint on server_settings.metrics_port, or None when that is 0.
    Failing to bind is logged, not fatal: scheduling matters more than metrics."""
    if not port:
        return None
    endpoint = MetricsEndpoint(render)
    bound = await endpoint.start(addresses, port)
    if bound:
        log.info("metrics at %s", ", ".join(f"http://{b}/metrics" for b in bound))
    else:
        log.error(
            "metrics: could not listen on any of %r port %d (server_settings.metrics_port); "
            "serving without metrics",
            addresses,
            port,
        )
    return endpoint
