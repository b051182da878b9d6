"""The server's commit loop, on a real App and SQLite store, with one failing commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kueue import config as kconfig
from kueue.v1 import common_pb2
from kueue_server import output_files, worker_service
from kueue_server.app import OUTPUT_HELD_LIMIT, App, WorkerConn
from kueue_server.model import Amount
from kueue_server.store import OutputWrite, StoreError


def make_app(tmp_path: Path) -> App:
    cfg = kconfig.parse(kconfig.template(), tmp_path / "config.toml")
    cfg.server_settings.data_dir = str(tmp_path / "data")
    return App(cfg)


class FailingWrites:
    """Makes app.store.write fail as on a full disk: `times` times, or until stop() (-1)."""

    def __init__(self, app: App, times: int = -1) -> None:
        self.left = times
        real_write = app.store.write

        async def write(batch):  # type: ignore[no-untyped-def]
            if self.left:
                if self.left > 0:
                    self.left -= 1
                raise StoreError("disk full (injected)", out_of_space=True)
            return await real_write(batch)

        app.store.write = write  # type: ignore[method-assign]

    def stop(self) -> None:
        self.left = 0


def test_acks_wait_for_a_successful_commit_and_waiters_get_the_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = make_app(tmp_path)
        app.store.start(asyncio.get_running_loop())
        FailingWrites(app, times=1)
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


def test_output_past_the_limit_holds_readers_back_until_a_commit_frees_it(tmp_path: Path) -> None:
    """A job printing faster than the store commits must not fill the server's
    memory: past OUTPUT_HELD_LIMIT the worker streams wait (WorkerService),
    and a failed commit frees nothing."""

    async def scenario() -> None:
        app = make_app(tmp_path)
        app.store.start(asyncio.get_running_loop())
        FailingWrites(app, times=1)
        chunk = b"y" * (1024 * 1024)
        offset = 0
        while not app.output_backlogged():
            app.add_output(OutputWrite(1, 1, 1, offset, chunk))
            offset += len(chunk)
        assert offset > OUTPUT_HELD_LIMIT
        room = asyncio.create_task(app.output_room())
        assert await app.flush_now() is False
        await asyncio.sleep(0)
        assert not room.done() and app.output_backlogged()  # nothing durable: all still held
        assert await app.flush_now() is True
        await asyncio.wait_for(room, 10)
        assert not app.output_backlogged()
        # What was held reached the files (the cap keeps the tail of it).
        start, kept = output_files.read(app.store.output_root, 1, 1, 1, 0, offset, offset)
        assert kept and start + len(kept) == offset and kept == b"y" * len(kept)
        app.store.close()

    asyncio.run(scenario())


def test_a_worker_held_back_by_a_failing_store_is_not_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While its stream waits for room (the store failing), the server hears
    nothing from the worker, by its own choice: that is no silence of the worker."""
    monkeypatch.setattr(worker_service, "HELD_BACK_TOUCH_SECONDS", 0.01)
    now = [1000.0]

    async def scenario() -> None:
        cfg = kconfig.parse(kconfig.template(), tmp_path / "config.toml")
        cfg.server_settings.data_dir = str(tmp_path / "data")
        app = App(cfg, clock=lambda: now[0])
        app.store.start(asyncio.get_running_loop())
        failing = FailingWrites(app)
        sched = app.scheduler
        worker = sched.connect_worker(
            "w", "w1", Amount(1, 1, 100), common_pb2.SystemInfo(), "peer", [], now[0]
        )
        conn = WorkerConn("w", worker.session)
        offset = 0
        while not app.output_backlogged():
            app.add_output(OutputWrite(1, 1, 1, offset, b"z" * 65536))
            offset += 65536
        held = asyncio.create_task(worker_service.WorkerService(app)._hold_back(conn))
        for _ in range(4):
            now[0] += sched.limits.worker_timeout / 2
            assert await app.flush_now() is False
            for _ in range(1000):  # until the held stream has touched its worker
                if worker.last_seen == now[0]:
                    break
                await asyncio.sleep(0.01)
            sched.tick(now[0])
            assert worker.connected and not held.done()
        failing.stop()
        assert await app.flush_now() is True
        await asyncio.wait_for(held, 10)
        app.store.close()

    asyncio.run(scenario())


def test_the_store_health_follows_the_writes_not_the_empty_rounds(tmp_path: Path) -> None:
    """What the health service says (NOT_SERVING while the store fails) comes
    from commits that wrote something: a round with nothing to write proves nothing."""

    async def scenario() -> None:
        app = make_app(tmp_path)
        app.store.start(asyncio.get_running_loop())
        seen: list[bool] = []
        app.on_store_health = seen.append
        failing = FailingWrites(app)
        assert await app.flush_now() is True and seen == []  # nothing to write
        app.add_spec(common_pb2.JobSpec(command=["true"]))
        assert await app.flush_now() is False and seen == [False]
        assert await app.flush_now() is False and seen == [False]  # the kept batch fails again
        failing.stop()
        assert await app.flush_now() is True and seen == [False, True]
        assert await app.flush_now() is True and seen == [False, True]
        app.store.close()

    asyncio.run(scenario())
