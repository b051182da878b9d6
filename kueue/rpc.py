"""gRPC plumbing shared by the programs: channels, authenticated stubs and
the server-side authentication interceptor. No protobuf is imported here:
`kueue cmd` never loads it (kueue_client/submission.py)."""

from __future__ import annotations

import inspect
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from kueue import allocator, auth
from kueue.config import Config, ConfigError

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.so_reuseport", 0),
]

# The status details a stopping server ends each worker's Connect stream with
# (code UNAVAILABLE): the worker keeps its jobs and reconnects with backoff.
SERVER_STOPPING = "the server is stopping; keep running jobs and reconnect when it is back"


def _read_pem(config: Config, key: str, value: str) -> bytes:
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{config.path}: {key} = {value!r}: cannot read it: {exc.strerror}") from exc


def channel_credentials(config: Config) -> grpc.ChannelCredentials | None:
    """TLS credentials for clients and workers, or None for plaintext."""
    c = config.common_settings
    if not c.tls_ca:
        return None
    cert = (
        _read_pem(config, "common_settings.tls_client_cert", c.tls_client_cert) if c.tls_client_cert else None
    )
    key = _read_pem(config, "common_settings.tls_client_key", c.tls_client_key) if c.tls_client_key else None
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(config, "common_settings.tls_ca", c.tls_ca),
        private_key=key,
        certificate_chain=cert,
    )


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
    """TLS credentials for the server, or None for plaintext."""
    s = config.server_settings
    if not s.tls_cert:
        return None
    pair = (
        _read_pem(config, "server_settings.tls_key", s.tls_key),
        _read_pem(config, "server_settings.tls_cert", s.tls_cert),
    )
    ca = config.common_settings.tls_ca
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=_read_pem(config, "common_settings.tls_ca", ca) if ca else None,
        require_client_auth=s.tls_require_client_cert,
    )


def sync_channel(
    address: str, options: list[tuple[str, Any]], credentials: grpc.ChannelCredentials | None
) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)


def aio_channel(
    address: str, options: list[tuple[str, Any]], credentials: grpc.ChannelCredentials | None
) -> grpc.aio.Channel:
    # The streaming programs (worker, `kueue run`) use this one: see allocator.py.
    allocator.tune()
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


class AuthedStub:
    """Wraps a generated stub (sync or aio) so each call carries a fresh token."""

    def __init__(self, stub: Any, service: str, secret: str) -> None:
        self._stub = stub
        self._service = service
        self._secret = secret

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        path = f"/{self._service}/{name}"
        secret = self._secret

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs["metadata"] = tuple(kwargs.get("metadata") or ()) + auth.metadata(secret, path)
            return method(*args, **kwargs)

        return call


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call whose token does not verify, before any handler runs,
    but calls to `public_services` (full names, e.g. "grpc.health.v1.Health"),
    which need no token."""

    def __init__(
        self, secret: str, window: float = auth.CLOCK_WINDOW, public_services: frozenset[str] = frozenset()
    ) -> None:
        self._verifier = auth.Verifier(secret, window)
        self._public = public_services
        self._last_warning = 0.0
        self._suppressed = 0

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if _service_of(details.method) in self._public:
            handler = await continuation(details)
            if handler is None:
                return None
            if handler.request_streaming:
                return _tolerant_iterating_handler(handler)
            return _tolerant_handler(handler)
        token = None
        for key, value in details.invocation_metadata or ():
            if key == auth.METADATA_KEY:
                token = value
                break
        verdict = self._verifier.check(details.method, token)
        handler = await continuation(details)
        if handler is None:
            return None
        if verdict.ok:
            return _tolerant_handler(handler)
        self._warn(details.method, verdict.reason)
        return _refusing_handler(handler, verdict.reason)

    def _warn(self, method: str, reason: str) -> None:
        # Rate-limited: a misconfigured or hostile peer must not flood the log.
        now = time.monotonic()
        if now - self._last_warning < 10.0:
            self._suppressed += 1
            return
        extra = f" ({self._suppressed} more refused since the last warning)" if self._suppressed else ""
        log.warning("refused %s: %s%s", method, reason, extra)
        self._last_warning, self._suppressed = now, 0


def _service_of(method: str) -> str:
    """ "pkg.Service" of "/pkg.Service/Method"; "" for anything else."""
    parts = method.split("/")
    return parts[1] if len(parts) == 3 and not parts[0] else ""


def _refusing_handler(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        yield  # pragma: no cover - makes this an async generator

    # The request is never decoded: bytes that do not parse are refused as
    # UNAUTHENTICATED too, without grpcio logging a traceback for each call.
    kwargs = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)


class Malformed:
    """Stands for a received message whose bytes do not parse (see tolerant)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """deserialize, returning a Malformed for bytes it cannot parse instead
    of raising: grpcio would log each such message with a traceback at error
    level and end the call as its own failure, where the receiver can say in
    one line that the peer sent garbage."""

    def safe_deserialize(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # any parse failure is the sender's
            return Malformed(exc)

    return safe_deserialize


def _tolerant_iterating_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """For a library servicer that takes a request iterator (reflection): a
    streamed message that does not parse ends the call with INVALID_ARGUMENT,
    instead of UNKNOWN and a traceback in the log. (Ours decode with
    context.read() and handle it themselves.)"""
    deserialize = handler.request_deserializer
    behavior = handler.stream_stream
    if deserialize is None or not inspect.isasyncgenfunction(behavior):
        return handler

    async def checked(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            if isinstance(request, Malformed):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.error}"[:500]
                )
            yield request

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        async for response in behavior(checked(requests, context), context):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        stream_stream,
        request_deserializer=tolerant(deserialize),
        response_serializer=handler.response_serializer,
    )


def _tolerant_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A unary request that does not parse gets INVALID_ARGUMENT, instead of
    grpcio's UNKNOWN and an error-level traceback in the log for every call.
    (Streamed requests are decoded by context.read(): the servicers handle it.)"""
    if handler.request_streaming or handler.request_deserializer is None:
        return handler

    async def refuse(request: Malformed, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.error}"[:500])

    kwargs = {
        "request_deserializer": tolerant(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.response_streaming:
        behavior = handler.unary_stream
        if not inspect.isasyncgenfunction(behavior):
            # A handler that sends with context.write() (grpcio's health Watch):
            # the wrapper must be a coroutine too, as grpcio does not mix the two.
            async def unary_stream_writer(request: Any, context: grpc.aio.ServicerContext) -> None:
                if isinstance(request, Malformed):
                    await refuse(request, context)
                    return
                await behavior(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream_writer, **kwargs)

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                await refuse(request, context)
                return
            async for response in behavior(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    behavior = handler.unary_unary

    async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await refuse(request, context)
        return await behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)


def str_map(m: Mapping[str, str]) -> dict[str, str]:
    """A protobuf map<string, string> as a dict: dict(m) goes through a
    Python KeysView, half again to twice as slow (an array's instance envs
    on the server, a job's env on the worker)."""
    return {key: m[key] for key in m}


def peer_address(peer: str) -> str:
    """A peer as people write it: gRPC's 'ipv4:10.0.0.7:5000' and
    'ipv6:%5B::1%5D:5000' (its URI form) become '10.0.0.7:5000' and
    '[::1]:5000'; other forms ('unix:...') stay as they are."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and rest:
        return urllib.parse.unquote(rest)
    return peer


# -- services that may write responses already encoded (kueue.wire) ----------------------


def add_servicer(add_to_server: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server) -> None:
    """Register a servicer through its generated add_*_to_server, with response
    serializers that also pass bytes already encoded (kueue.wire), so that a
    megabyte of output or stdin is sent without protobuf's copies of it."""
    add_to_server(servicer, _Registrar(server))


def _accepting_encoded(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    serialize = handler.response_serializer
    if serialize is None:
        return handler

    def serializer(msg: Any) -> bytes:
        return msg if isinstance(msg, bytes) else serialize(msg)

    return handler._replace(response_serializer=serializer)  # type: ignore[attr-defined]


class _EncodedResponses(grpc.ServiceRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner

    def service_name(self) -> str:
        return self._inner.service_name()  # type: ignore[attr-defined, no-any-return]

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        return None if handler is None else _accepting_encoded(handler)


class _Registrar:
    """Stands in for the server while a generated add_*_to_server registers."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(tuple(_EncodedResponses(h) for h in handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service, {name: _accepting_encoded(h) for name, h in handlers.items()}
        )
