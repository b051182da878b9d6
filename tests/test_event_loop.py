"""The server and the worker run on the standard loop unless
KUEUE_EVENT_LOOP=uvloop asks for uvloop (when it is installed)."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from kueue import event_loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_standard_loop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENV, raising=False)
    assert event_loop.run(_loop_module()).startswith("asyncio")


def test_kueue_event_loop_uvloop_picks_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.setenv(event_loop.ENV, "uvloop")
    assert event_loop.run(_loop_module()).startswith("uvloop")


def test_uvloop_asked_for_but_missing_runs_the_standard_loop_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv(event_loop.ENV, "uvloop")
    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert event_loop.run(_loop_module()).startswith("asyncio")
    assert "uvloop is not installed" in caplog.text
