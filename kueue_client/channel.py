"""The client's channel to the server, shared by the Python API (api.py) and
`kueue cmd`'s submission (submission.py), which imports no protobuf."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import kueue.config
import kueue.rpc
from kueue_client.errors import KueueError

if TYPE_CHECKING:
    import grpc

# Unary calls touch only the server's memory; 30 s means it is stuck or gone.
DEFAULT_TIMEOUT = 30.0


def open_channel(
    config: kueue.config.Config | None, address: str, options: Sequence[tuple[str, Any]] = ()
) -> tuple[grpc.Channel, grpc.ChannelCredentials | None]:
    """A channel to `address`, with TLS as the config sets it (none without
    a config); `options` after kueue.rpc.CHANNEL_OPTIONS, replacing any of
    the same name. The credentials come along for other channels to reuse."""
    try:
        credentials = kueue.rpc.channel_credentials(config) if config else None
    except kueue.config.ConfigError as exc:
        raise KueueError(str(exc)) from None
    merged = dict([*kueue.rpc.CHANNEL_OPTIONS, *options])
    return kueue.rpc.sync_channel(address, list(merged.items()), credentials), credentials


class ChannelOwner:
    """Closes its channel when done, or at the end of a with block."""

    _channel: grpc.Channel

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
