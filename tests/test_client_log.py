"""`kueue log` against a fake Client that serves ReadOutput like the server:
--tail in lines, --both to two descriptors, -f with the job's exit code, and
the notice when a followed job starts over on another worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kueue.config import template
from kueue.v1 import common_pb2, job_service_pb2
from kueue_client import api, output
from kueue_client.cli import main
from kueue_client.output import last_lines_start

State = common_pb2.JobState
NAMES = {"stdout": 1, "stderr": 2}


class FakeClient:
    streams: dict[int, bytes]
    # Chunks of a new attempt that a follow sees after the first ones.
    restart: dict[int, bytes] | None = None
    final = common_pb2.Job(id=5, state=State.JOB_STATE_FAILED, signal=9)
    reads: list[tuple[list[int], int, bool]]

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        pass

    def read_output(
        self, id: int, streams: Any = ("stdout",), offset: int = 0, follow: bool = False
    ) -> Iterator[job_service_pb2.ReadOutputResponse]:
        wanted = [NAMES[s] if isinstance(s, str) else s for s in streams]
        FakeClient.reads.append((wanted, offset, follow))
        for stream in wanted:
            data = self.streams.get(stream, b"")
            start = max(0, len(data) + offset) if offset < 0 else offset
            for pos in range(start, len(data), 7):
                yield job_service_pb2.ReadOutputResponse(stream=stream, offset=pos, data=data[pos : pos + 7])
        if follow:
            for stream, data in (self.restart or {}).items():
                if stream in wanted:
                    yield job_service_pb2.ReadOutputResponse(stream=stream, offset=0, data=data)
            yield job_service_pb2.ReadOutputResponse(finished_job=self.final)

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_client(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeClient.streams = {1: b"".join(b"out %d\n" % i for i in range(1, 1001)), 2: b"e1\ne2\ne3"}
    FakeClient.restart = None
    FakeClient.reads = []
    monkeypatch.setattr(api, "Client", FakeClient)
    # Small enough that a tail of 300 lines needs to read further back.
    monkeypatch.setattr(output, "FIRST_TAIL_BYTES", 100)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(template("t" * 64))
    return path


def run(capfd: pytest.CaptureFixture[bytes], config: Path, *argv: str) -> tuple[int, bytes, bytes]:
    code = main(["--config", str(config), *argv])
    out, err = capfd.readouterr()
    return code, out, err


def test_last_lines_start() -> None:
    assert last_lines_start(b"a\nb\nc\n", 2) == 2
    assert last_lines_start(b"a\nb\nc", 2) == 2  # the unfinished line counts
    assert last_lines_start(b"a\nb\nc\n", 3) is None  # cannot tell: there may be more before
    assert last_lines_start(b"a\nb\nc\n", 0) == 6
    assert last_lines_start(b"", 1) is None


def test_whole_stdout(capfdbinary: pytest.CaptureFixture[bytes], config: Path) -> None:
    code, out, err = run(capfdbinary, config, "log", "5")
    assert code == 0 and out == FakeClient.streams[1] and err == b""


def test_tail_counts_lines_not_bytes(capfdbinary: pytest.CaptureFixture[bytes], config: Path) -> None:
    code, out, _ = run(capfdbinary, config, "log", "--tail", "300", "5")
    assert code == 0
    assert out.splitlines() == [b"out %d" % i for i in range(701, 1001)]
    code, out, _ = run(capfdbinary, config, "output", "--stderr", "-n", "2", "5")
    assert out == b"e2\ne3"
    code, out, _ = run(capfdbinary, config, "log", "--stderr", "--tail", "10", "5")
    assert out == b"e1\ne2\ne3"  # fewer lines than asked: all of them
    code, out, _ = run(capfdbinary, config, "log", "--tail", "0", "5")
    assert out == b""


def test_both_goes_to_stdout_and_stderr(capfdbinary: pytest.CaptureFixture[bytes], config: Path) -> None:
    code, out, err = run(capfdbinary, config, "log", "--both", "5")
    assert code == 0 and out == FakeClient.streams[1] and err == FakeClient.streams[2]
    assert FakeClient.reads == [([1, 2], 0, False)]  # one read for both
    code, out, err = run(capfdbinary, config, "log", "--both", "--tail", "1", "-f", "5")
    assert out == b"out 1000\n" and err == b"e3"
    assert code == 137  # killed by SIGKILL: 128 + 9


def test_follow_exits_with_the_job_and_marks_a_restart(
    capfdbinary: pytest.CaptureFixture[bytes], config: Path
) -> None:
    FakeClient.streams = {1: b"first attempt\n"}
    FakeClient.restart = {1: b"second attempt\n"}
    FakeClient.final = common_pb2.Job(id=5, state=State.JOB_STATE_FAILED, exit_code=3)
    code, out, err = run(capfdbinary, config, "log", "-f", "5")
    assert code == 3
    assert out == b"first attempt\nsecond attempt\n"
    assert err == b"kueue: job 5 restarted (a new attempt); output above is from the lost attempt\n"


def test_stderr_and_both_exclude_each_other(capfdbinary: pytest.CaptureFixture[bytes], config: Path) -> None:
    code, _, err = run(capfdbinary, config, "log", "--stderr", "--both", "5")
    assert code == 2 and b"not allowed with" in err


def test_follow_of_a_job_that_never_ran_says_why(
    capfdbinary: pytest.CaptureFixture[bytes], config: Path
) -> None:
    FakeClient.streams = {1: b""}
    FakeClient.final = common_pb2.Job(id=5, state=State.JOB_STATE_CANCELED, comment="canceled by alice")
    code, out, err = run(capfdbinary, config, "log", "-f", "5")
    assert (code, out) == (1, b"")
    assert err == b"kueue: job 5 was canceled (canceled by alice)\n"
