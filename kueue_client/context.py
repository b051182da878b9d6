"""What a verb may need, created on first use: the config and the client."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import kueue.config
from kueue_client.errors import EXIT_USAGE, KueueError
from kueue_client.terminal import warn

if TYPE_CHECKING:
    from kueue_client.api import Client


class Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._client: Client | None = None

    @cached_property
    def config(self) -> kueue.config.Config:
        try:
            config = kueue.config.load(self.config_path)
        except kueue.config.ConfigError as exc:
            # Bad input, as kueue_server and kueue_worker say it too (exit 2).
            raise KueueError(str(exc), exit_status=EXIT_USAGE) from None
        for message in config.warnings:
            warn(message)
        return config

    @property
    def client(self) -> Client:
        if self._client is None:
            from kueue_client.api import Client

            self._client = Client(self.config)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
