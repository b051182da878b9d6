"""The errors the client reports: one clear line each, never a traceback.

grpc is not imported here: rpc errors are duck-typed so that modules which
only build specs or parse arguments stay cheap to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kueue import status_details

# Exit statuses of the CLI.
EXIT_FAILURE = 1
EXIT_USAGE = 2


class KueueError(Exception):
    """An expected failure; `str(err)` is one line fit to show a user.

    `exit_status` is what the CLI exits with (2 for bad input such as an
    unknown job id, 1 otherwise); `code` is the gRPC status code name when the
    error came from the server.
    """

    def __init__(self, message: str, *, exit_status: int = EXIT_FAILURE, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status
        self.code = code

    def __str__(self) -> str:
        return self.message


class UsageError(KueueError):
    """Bad command line or input (exit status 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_status=EXIT_USAGE)


def one_line(text: str) -> str:
    """Collapses a multi-line message: the CLI promises one line per error."""
    return " ".join(text.split())


def from_rpc_error(exc: Any, address: str, config_path: Path | str | None) -> KueueError:
    """Translates a grpc.RpcError into a KueueError with a helpful message."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    name = getattr(code, "name", "UNKNOWN")
    details = one_line(exc.details() or "") if callable(getattr(exc, "details", None)) else ""
    where = str(config_path) if config_path else "the config file"
    if name == "UNAVAILABLE" and "stream removed" in details.lower():
        # A call under way when the server went (a crash, a restart).
        return KueueError(
            f"lost the connection to the kueue server at {address} (did it stop? ask again once it is back)",
            code=name,
        )
    if name == "UNAVAILABLE" and "socket closed" in details.lower():
        # The port answers but drops us during set-up: in practice a TLS mismatch.
        return KueueError(
            f"the kueue server at {address} closed the connection during set-up: it may use TLS "
            f"(set common_settings.tls_ca) or require a client certificate (tls_client_cert, "
            f"tls_client_key) in {where}",
            code=name,
        )
    if name == "UNAVAILABLE" and details == status_details.CLIENT_STREAM_STOPPING:
        return KueueError(
            f"the kueue server at {address} is stopping; jobs keep running on their workers "
            "(ask again once it is back: kueue ls)",
            code=name,
        )
    if name == "UNAVAILABLE":
        return KueueError(
            f"cannot reach the kueue server at {address} (is kueue_server running? "
            f"server_name/server_port are set in {where})",
            code=name,
        )
    if name == "UNAUTHENTICATED":
        if "clock skew" in details:
            # The secret was right; repeating "secret does not match" would mislead.
            return KueueError(f"the server refused authentication: {details}", code=name)
        message = (
            f"the shared secret does not match the server's (check common_settings.shared_secret in {where})"
        )
        if details and "does not match" not in details:
            message += f": {details}"
        return KueueError(message, code=name)
    if name == "DEADLINE_EXCEEDED":
        return KueueError(f"the kueue server at {address} did not answer in time", code=name)
    if name == "UNIMPLEMENTED":
        return KueueError(
            f"the kueue server at {address} does not support this request (is it an older version?)",
            code=name,
        )
    if name == "CANCELLED":
        return KueueError("the request was canceled", code=name)
    if name in ("NOT_FOUND", "INVALID_ARGUMENT"):
        return KueueError(details or name.lower().replace("_", " "), exit_status=EXIT_USAGE, code=name)
    if name in ("FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "ALREADY_EXISTS", "PERMISSION_DENIED"):
        return KueueError(details or name.lower().replace("_", " "), code=name)
    text = f"the kueue server at {address} failed: {name.lower().replace('_', ' ')}"
    return KueueError(f"{text}: {details}" if details else text, code=name)
