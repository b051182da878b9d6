"""The metrics endpoint's HTTP handling, in-process on a real loopback port:
requests of every shape get an answer, and idle connections cannot lock a
scraper out. (What the metrics count is tested against a cluster in
test_observability.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kueue_server import metrics_http

DEADLINE = 20.0
BODY = "kueue_up 1\n"


def with_endpoint(scenario: Callable[[int], Awaitable[None]]) -> None:
    async def go() -> None:
        endpoint = metrics_http.MetricsEndpoint(lambda: BODY)
        (bound,) = await endpoint.start("127.0.0.1", 0)
        try:
            await asyncio.wait_for(scenario(int(bound.rsplit(":", 1)[1])), DEADLINE)
        finally:
            await endpoint.stop()

    asyncio.run(go())


async def exchange(port: int, data: bytes) -> bytes:
    """Send data, then read the answer to the end (the endpoint closes after one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


def status_of(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode()


def test_a_scrape_gets_through_however_many_connections_sit_idle() -> None:
    async def scenario(port: int) -> None:
        idle = [
            await asyncio.open_connection("127.0.0.1", port) for _ in range(metrics_http.MAX_CONNECTIONS + 6)
        ]
        try:
            answer = await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(answer) == "HTTP/1.1 200 OK"
            assert answer.endswith(BODY.encode())
            # The oldest idle ones were closed to make room.
            assert await idle[0][0].read() == b""
        finally:
            for _, writer in idle:
                writer.close()

    with_endpoint(scenario)


def test_request_lines_ending_in_a_bare_lf_are_answered() -> None:
    async def scenario(port: int) -> None:
        answer = await exchange(port, b"GET /metrics HTTP/1.1\nHost: x\n\n")
        assert status_of(answer) == "HTTP/1.1 200 OK"
        assert answer.endswith(BODY.encode())
        # An empty line before the request line is skipped, as RFC 9112 advises.
        answer = await exchange(port, b"\r\nGET /metrics HTTP/1.0\r\n\r\n")
        assert status_of(answer) == "HTTP/1.1 200 OK"

    with_endpoint(scenario)


def test_a_request_too_large_gets_431() -> None:
    async def scenario(port: int) -> None:
        padding = b"X-Pad: " + b"a" * 100 + b"\r\n"
        many = b"GET /metrics HTTP/1.1\r\n" + padding * 200 + b"\r\n"  # 21 KB of headers
        assert len(many) > metrics_http.MAX_REQUEST_BYTES
        answer = await exchange(port, many)
        assert status_of(answer) == "HTTP/1.1 431 Request Header Fields Too Large"
        one_long_line = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        answer = await exchange(port, one_long_line)
        assert status_of(answer) == "HTTP/1.1 431 Request Header Fields Too Large"

    with_endpoint(scenario)


def test_a_method_other_than_get_or_head_is_told_both() -> None:
    async def scenario(port: int) -> None:
        answer = await exchange(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert status_of(answer) == "HTTP/1.1 405 Method Not Allowed"
        assert b"\r\nAllow: GET, HEAD\r\n" in head + b"\r\n"
        assert body == b"only GET and HEAD\n"
        answer = await exchange(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status_of(answer) == "HTTP/1.1 200 OK"
        assert answer.endswith(b"\r\n\r\n")  # headers only
        assert f"Content-Length: {len(BODY)}".encode() in answer

    with_endpoint(scenario)


def test_a_peer_that_closes_mid_request_costs_nothing() -> None:
    async def scenario(port: int) -> None:
        for partial in (b"GET /metrics HTTP/1.1\r\nHost:", b"", b"GET"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(partial)
            await writer.drain()
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
        answer = await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert status_of(answer) == "HTTP/1.1 200 OK"

    with_endpoint(scenario)
