"""The Prometheus endpoint: GET /metrics over plain HTTP on the server's loop.

Deliberately minimal: one request per connection, no keep-alive, no body,
small bounded requests, and a deadline for reading them, so a slow or
hostile peer costs a socket for a few seconds and nothing else. Past
MAX_CONNECTIONS the connection that has waited longest for its request is
closed to make room, so idle connections cannot lock a scraper out. It
serves counts only (no job commands, names or output) and takes no input.
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
# How long the rest of a request too large is read and dropped after the answer.
LINGER_SECONDS = 1.0


class _HeadTooLarge(Exception):
    pass


class MetricsEndpoint:
    def __init__(self, render: Callable[[], str]) -> None:
        self.render = render
        self.servers: list[asyncio.Server] = []
        self._open = 0
        # The connections still reading their request, oldest first.
        self._reading: dict[asyncio.StreamWriter, None] = {}

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
                if not self._reading:
                    return  # all busy answering: those end within READ_TIMEOUT
                oldest = next(iter(self._reading))
                del self._reading[oldest]
                oldest.close()
            self._reading[writer] = None
            too_large = False
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    lines = await _read_head(reader)
            except _HeadTooLarge:
                too_large = True
            except (TimeoutError, ConnectionError):
                return
            finally:
                self._reading.pop(writer, None)
            if too_large:
                status, body, extra = "431 Request Header Fields Too Large", b"request too large\n", ""
                head_only = False
            elif lines is None:
                return  # closed (or made room for another) before the request was complete
            else:
                status, body, extra = self._respond(lines[0])
                head_only = lines[0].startswith(b"HEAD ")
            writer.write(_response(status, body, extra, head_only))
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(READ_TIMEOUT):
                    await writer.drain()
            if too_large:
                # The rest of the request: closed unread, it would reset the
                # connection, and with it the answer, on the way.
                with contextlib.suppress(ConnectionError, TimeoutError):
                    async with asyncio.timeout(LINGER_SECONDS):
                        while await reader.read(MAX_REQUEST_BYTES):
                            pass
        except Exception:
            log.exception("metrics: serving a request failed")
        finally:
            self._open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    def _respond(self, request_line: bytes) -> tuple[str, bytes, str]:
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", b"bad request\n", ""
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"only GET and HEAD\n", "Allow: GET, HEAD\r\n"
        path = target.split("?", 1)[0]
        if path != "/metrics":
            return "404 Not Found", b"not found; metrics are at /metrics\n", ""
        return "200 OK", self.render().encode(), ""


async def _read_head(reader: asyncio.StreamReader) -> list[bytes] | None:
    """The request line and header lines, without their line ends; None if
    the peer closed first. Lines may end in a bare LF, which RFC 9112 lets a
    server accept, and empty lines before the request line are skipped, as
    it advises. Raises _HeadTooLarge past MAX_REQUEST_BYTES."""
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # a line longer than the reader's limit
            raise _HeadTooLarge from None
        if not line.endswith(b"\n"):
            return None
        size += len(line)
        if size > MAX_REQUEST_BYTES:
            raise _HeadTooLarge
        line = line.removesuffix(b"\n").removesuffix(b"\r")
        if line:
            lines.append(line)
        elif lines:
            return lines


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
