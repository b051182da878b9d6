"""The server's commit loop, on a real App and SQLite store, with one failing commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kueue import config as kconfig
from kueue.v1 import common_pb2
from kueue_server.app import App
from kueue_server.store import StoreError


def make_app(tmp_path: Path) -> App:
    cfg = kconfig.parse(kconfig.template(), tmp_path / "config.toml")
    cfg.server_settings.data_dir = str(tmp_path / "data")
    return App(cfg)


def test_acks_wait_for_a_successful_commit_and_waiters_get_the_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(tmp_path)
        app.store.start(asyncio.get_running_loop())
        real_write = app.store.write
        failures = [StoreError("disk full (injected)", out_of_space=True)]

        async def write_failing_once(batch):  # type: ignore[no-untyped-def]
            if failures:
                raise failures.pop()
            return await real_write(batch)

        app.store.write = write_failing_once  # type: ignore[method-assign]
        sent: list[str] = []
        spec = common_pb2.JobSpec(
            command=["true"], cwd="/tmp", resources=common_pb2.Resources(slots=1, cpus=1)
        )
        submit = asyncio.create_task(app.submit(spec))
        await asyncio.sleep(0)  # let submit queue its change
        app.ack_after_commit(lambda: sent.append("ack"))
        assert await app.flush_now() is False
        with pytest.raises(StoreError):
            await submit  # the client is told at once...
        assert app.scheduler.jobs == {}  # ...and its job never appears
        assert sent == []  # the worker is not told before anything is stored
        assert await app.flush_now() is True
        assert sent == ["ack"]  # but is told once the retry succeeds
        app.store.close()

    asyncio.run(scenario())
