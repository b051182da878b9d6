"""The server's commit loop, on a real App and SQLite store, with one failing commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kueue import config as kconfig
from kueue.v1 import common_pb2
from kueue_server.app import App, WorkerConn
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


def test_read_limits_for_attempts_a_worker_reports_that_this_server_never_knew(tmp_path: Path) -> None:
    """Register may report attempts (even job 0, attempt 0: the fuzz test found
    that one) that this server never paced: each gets limit 0, nothing breaks."""
    app = make_app(tmp_path)
    conn = WorkerConn("w", 1, batches=False, windows=True)
    app.resend_windows(conn, [(0, 0), (7, 1)])
    windows = []
    while not conn.outbox.empty():
        msg = conn.outbox.get_nowait()
        windows.append((msg.output_window.job_id, msg.output_window.attempt, msg.output_window.limit))
    assert windows == [(0, 0, 0), (7, 1, 0)]
