"""Request authentication with the shared secret, which never crosses the wire.

Every RPC carries metadata `x-kueue-auth: v1 <unix-seconds> <nonce> <mac>` where
mac = hex(HMAC-SHA256(secret, "<method>\\n<unix-seconds>\\n<nonce>")) and method is
the full gRPC method path (e.g. "/kueue.v1.JobService/SubmitJobs"). The server
accepts a timestamp within CLOCK_WINDOW seconds of its own clock and each nonce
only once within that window. See protos/README.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import deque
from dataclasses import dataclass

METADATA_KEY = "x-kueue-auth"
SCHEME = "v1"
CLOCK_WINDOW = 300.0
# Bound on remembered nonces (memory). Past it the oldest are forgotten before
# their window ends, so a replay of such a token would pass; at one million
# that takes over 3 000 authenticated calls a second, sustained.
MAX_NONCES = 1_000_000


def mac(secret: str, method: str, timestamp: str, nonce: str) -> str:
    message = f"{method}\n{timestamp}\n{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_token(secret: str, method: str, now: float | None = None) -> str:
    timestamp = str(int(time.time() if now is None else now))
    nonce = os.urandom(16).hex()  # what secrets.token_hex does, without importing secrets at start-up
    return f"{SCHEME} {timestamp} {nonce} {mac(secret, method, timestamp, nonce)}"


def metadata(secret: str, method: str) -> tuple[tuple[str, str]]:
    return ((METADATA_KEY, make_token(secret, method)),)


_HEX = frozenset("0123456789abcdef")
_NONCE_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.~+/=")


def _well_formed(timestamp: str, nonce: str, given: str) -> bool:
    """Decimal seconds (at most 12 digits), a nonce of 1..128 URL/base64-safe
    ASCII characters and 64 lowercase hex digits: anything else is refused
    before hashing, so no input can raise."""
    return (
        0 < len(timestamp) <= 12
        and timestamp.isascii()
        and timestamp.isdigit()
        and 0 < len(nonce) <= 128
        and set(nonce) <= _NONCE_CHARS
        and len(given) == 64
        and set(given) <= _HEX
    )


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


class Verifier:
    """Checks tokens; remembers nonces seen within the clock window."""

    def __init__(self, secret: str, window: float = CLOCK_WINDOW) -> None:
        self._secret = secret
        self._window = window
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()

    def check(self, method: str, token: str | None, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        if not token:
            return Verdict(False, "no authentication token; the client needs the cluster's shared secret")
        parts = token.split(" ")
        if len(parts) != 4 or parts[0] != SCHEME:
            return Verdict(False, "malformed authentication token")
        _, timestamp, nonce, given = parts
        if not _well_formed(timestamp, nonce, given):
            return Verdict(False, "malformed authentication token")
        stamp = int(timestamp)
        if not hmac.compare_digest(mac(self._secret, method, timestamp, nonce), given):
            return Verdict(False, "the shared secret does not match the server's")
        if abs(now - stamp) > self._window:
            return Verdict(
                False,
                f"clock skew of {now - stamp:+.0f} s between client and server exceeds "
                f"{self._window:.0f} s; synchronise the clocks (e.g. with NTP)",
            )
        self._forget(now)
        if nonce in self._seen:
            return Verdict(False, "replayed authentication token refused")
        self._seen.add(nonce)
        self._order.append((now, nonce))
        return Verdict(True)

    def _forget(self, now: float) -> None:
        horizon = now - 2 * self._window
        while self._order and (self._order[0][0] < horizon or len(self._order) > MAX_NONCES):
            self._seen.discard(self._order.popleft()[1])
