"""The process runner with real processes: exit, signals, output, env, cwd, kill, stdin."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from kueue.v1 import common_pb2
from kueue_server import convert
from kueue_worker import runner
from kueue_worker.runner import CHUNK_BYTES, JobProcess, Outcome

OUT = common_pb2.OUTPUT_STREAM_STDOUT
ERR = common_pb2.OUTPUT_STREAM_STDERR
PY = sys.executable
DEADLINE = 20.0
WORKER_ID = "0f" * 16


@dataclass
class Captured:
    chunks: dict[int, list[bytes]] = field(default_factory=lambda: {OUT: [], ERR: []})
    pids: list[int] = field(default_factory=list)

    def on_output(self, stream: int, data: bytes) -> None:
        self.chunks[stream].append(data)

    def data(self, stream: int) -> bytes:
        return b"".join(self.chunks[stream])


def spec(command: list[str], cwd: Path, **kw: object) -> common_pb2.JobSpec:
    kw.setdefault("env", {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    return common_pb2.JobSpec(command=command, cwd=str(cwd), **kw)


def python(code: str, cwd: Path, **kw: object) -> common_pb2.JobSpec:
    return spec([PY, "-c", textwrap.dedent(code)], cwd, **kw)


def job(s: common_pb2.JobSpec, cap: Captured, grace: float = 5.0) -> JobProcess:
    return JobProcess(
        s,
        job_id=42,
        attempt=3,
        worker_name="testworker",
        kill_grace_seconds=grace,
        worker_id=WORKER_ID,
        on_started=cap.pids.append,
        on_output=cap.on_output,
    )


def run(s: common_pb2.JobSpec) -> tuple[Outcome, Captured]:
    cap = Captured()

    async def go() -> Outcome:
        return await asyncio.wait_for(job(s, cap).run(), DEADLINE)

    return asyncio.run(go()), cap


async def until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("code", [0, 1, 255])
def test_exit_codes(tmp_path: Path, code: int) -> None:
    outcome, cap = run(python(f"import sys; sys.exit({code})", tmp_path))
    assert outcome.exit_code == code
    assert outcome.signal == 0 and outcome.error == ""
    assert outcome.run_time_seconds > 0
    assert len(cap.pids) == 1
    finished = outcome.as_finished()
    assert finished.HasField("exit_code") and finished.exit_code == code


def test_signal_death_has_signal_and_no_exit_code(tmp_path: Path) -> None:
    outcome, _ = run(python("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path))
    assert outcome.exit_code is None
    assert outcome.signal == signal.SIGKILL
    assert not outcome.as_finished().HasField("exit_code")


def test_output_intact_and_in_order_per_stream_binary_too(tmp_path: Path) -> None:
    code = """
        import os, random
        rng = random.Random(7)
        for i in range(200):
            os.write(1, rng.randbytes(rng.randrange(1, 20000)))
            os.write(2, b"line %d\\n" % i)
        os.write(1, bytes(range(256)) * 1000)
    """
    outcome, cap = run(python(code, tmp_path))
    assert outcome.exit_code == 0
    rng = random.Random(7)
    want_out = b""
    want_err = b""
    for i in range(200):
        want_out += rng.randbytes(rng.randrange(1, 20000))
        want_err += b"line %d\n" % i
    want_out += bytes(range(256)) * 1000
    assert cap.data(OUT) == want_out
    assert cap.data(ERR) == want_err
    assert all(0 < len(c) <= CHUNK_BYTES for c in cap.chunks[OUT] + cap.chunks[ERR])


def test_output_arrives_while_the_job_runs(tmp_path: Path) -> None:
    cap = Captured()
    p = job(python("import time; print('ready', flush=True); time.sleep(60)", tmp_path), cap, grace=1.0)

    async def go() -> Outcome:
        task = asyncio.create_task(p.run())
        await until(lambda: cap.data(OUT) == b"ready\n", "the first line")
        assert alive(cap.pids[0])
        p.kill()
        return await asyncio.wait_for(task, DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.signal == signal.SIGTERM


def test_environment_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUEUE_TEST_WORKER_VAR", "must not leak")
    code = "import json, os; print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))"
    outcome, cap = run(python(code, tmp_path, env={"FOO": "bar", "PATH": "/usr/bin:/bin"}))
    assert outcome.exit_code == 0
    seen = json.loads(cap.data(OUT))
    env = seen["env"]
    assert env["KUEUE_JOB_ID"] == "42"
    assert env["KUEUE_ATTEMPT"] == "3"
    assert env["KUEUE_WORKER"] == "testworker"
    assert env["KUEUE_WORKER_ID"] == WORKER_ID
    assert env["PWD"] == str(tmp_path)
    assert env["FOO"] == "bar"
    assert "KUEUE_TEST_WORKER_VAR" not in env
    assert os.path.samefile(seen["cwd"], tmp_path)


def test_an_environment_sent_as_a_block_is_the_one_sent_as_a_map(tmp_path: Path) -> None:
    """Assign.environ (what the server sends a worker that takes it) gives the
    job the environment spec.env gives: the worker's own variables replace
    the submitter's of the same names, and the command is found on its PATH."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "kueue-test-env").write_text(f"#!{PY}\nimport json, os\nprint(json.dumps(dict(os.environ)))\n")
    (tools / "kueue-test-env").chmod(0o755)
    env = {
        "PATH": f"{tools}:/usr/bin:/bin",
        "FOO": "bar",
        "EMPTY": "",
        "PWD": "/submitter",
        "KUEUE_JOB_ID": "1",
    }

    def seen(s: common_pb2.JobSpec, environ: bytes) -> dict[str, str]:
        cap = Captured()
        p = JobProcess(
            s,
            job_id=42,
            attempt=3,
            worker_name="w",
            kill_grace_seconds=1.0,
            environ=environ,
            on_output=cap.on_output,
        )
        outcome = asyncio.run(asyncio.wait_for(p.run(), DEADLINE))
        assert outcome.exit_code == 0, outcome
        return json.loads(cap.data(OUT))

    as_map = seen(spec(["kueue-test-env"], tmp_path, env=env), b"")
    block = convert.environ_block(env)
    assert block is not None
    as_block = seen(spec(["kueue-test-env"], tmp_path, env={}), block)
    assert as_block == as_map
    assert as_block["FOO"] == "bar" and as_block["KUEUE_JOB_ID"] == "42" and as_block["PWD"] == str(tmp_path)
    # A spec that has its env (from a server that does not send blocks) keeps it.
    assert seen(spec(["kueue-test-env"], tmp_path, env=env), b"NOT=used\0")["FOO"] == "bar"


def test_use_worker_env_takes_the_workers_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUEUE_TEST_WORKER_VAR", "from-worker")
    # A worker started from a job of another worker: its jobs are its own.
    monkeypatch.setenv("KUEUE_WORKER_ID", "outer")
    code = (
        "import os; e = os.environ; print(e.get('KUEUE_TEST_WORKER_VAR'), e.get('FOO'), e['KUEUE_WORKER_ID'])"
    )
    outcome, cap = run(python(code, tmp_path, env={"FOO": "bar"}, use_worker_env=True))
    assert outcome.exit_code == 0
    assert cap.data(OUT) == f"from-worker None {WORKER_ID}\n".encode()


def test_shell_command(tmp_path: Path) -> None:
    outcome, cap = run(spec(['echo "job $KUEUE_JOB_ID" | tr a-z A-Z; exit 4'], tmp_path, shell=True))
    assert outcome.exit_code == 4
    assert cap.data(OUT) == b"JOB 42\n"


def test_output_to_files_and_null(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "out.txt").write_text("old content that must go away\n")
    code = "import sys; print('to file'); print('to nowhere', file=sys.stderr)"
    outcome, cap = run(python(code, tmp_path, stdout_path="sub/out.txt", stderr_path="null"))
    assert outcome.exit_code == 0
    assert (tmp_path / "sub" / "out.txt").read_text() == "to file\n"
    assert cap.data(OUT) == b"" and cap.data(ERR) == b""


def test_both_streams_to_the_same_file_do_not_overwrite_each_other(tmp_path: Path) -> None:
    code = "import os; os.write(1, b'one\\n'); os.write(2, b'two\\n'); os.write(1, b'three\\n')"
    target = tmp_path / "both.log"
    outcome, _ = run(python(code, tmp_path, stdout_path=str(target), stderr_path="both.log"))
    assert outcome.exit_code == 0
    assert target.read_text() == "one\ntwo\nthree\n"


def test_spawn_failures_give_an_error(tmp_path: Path) -> None:
    outcome, cap = run(spec(["/no/such/program"], tmp_path))
    assert outcome.exit_code is None and outcome.signal == 0
    assert "/no/such/program" in outcome.error and "No such file" in outcome.error
    assert cap.pids == []

    script = tmp_path / "not_executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    outcome, _ = run(spec([str(script)], tmp_path))
    assert "Permission denied" in outcome.error

    outcome, _ = run(spec(["true"], tmp_path / "vanished"))
    assert outcome.error == f"working directory {tmp_path / 'vanished'} does not exist on testworker"

    outcome, _ = run(spec(["true"], tmp_path, stdout_path="no/such/dir/out.txt"))
    assert "cannot open the stdout file" in outcome.error

    outcome, _ = run(spec([], tmp_path))
    assert outcome.error == "empty command"


TREE = """
    import os, signal, subprocess, sys, time
    # A child that ignores SIGTERM (needs SIGKILL), one in its own session,
    # and a grandchild under the session leader.
    stubborn = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE)
    stubborn.stdout.readline()
    escaped = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
        " time.sleep(600)"], start_new_session=True)
    print(stubborn.pid, escaped.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's limits on exec's strings")
def test_an_argument_list_too_long_is_told_in_numbers(tmp_path: Path) -> None:
    one_string = 32 * os.sysconf("SC_PAGE_SIZE")
    outcome, cap = run(spec(["echo", "x" * one_string], tmp_path))
    assert cap.pids == []
    assert outcome.error == (
        f"cannot start echo on testworker: argument list too long: one argument or environment "
        f"variable takes {one_string + 1} bytes, over the {one_string} allowed for one here; "
        "pass it in a file instead"
    )
    assert outcome.as_finished().start_failure == common_pb2.START_FAILURE_NOT_EXECUTABLE
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BIG": "y" * one_string}
    outcome, _ = run(spec(["echo"], tmp_path, env=env))
    assert "one argument or environment variable takes" in outcome.error
    # Each string fits, all of them do not.
    many = ["z" * (one_string // 2)] * (2 * os.sysconf("SC_ARG_MAX") // one_string + 2)
    outcome, _ = run(spec(["echo", *many], tmp_path))
    assert outcome.error.startswith("cannot start echo on testworker: argument list too long: ")
    assert "the command line and environment take" in outcome.error
    assert f"over the {os.sysconf('SC_ARG_MAX')} allowed here" in outcome.error


def test_kill_removes_the_whole_tree_including_setsid_children(tmp_path: Path) -> None:
    cap = Captured()
    p = job(python(TREE, tmp_path), cap, grace=0.5)

    async def go() -> tuple[Outcome, list[int]]:
        task = asyncio.create_task(p.run())
        await until(lambda: cap.data(OUT).endswith(b"\n"), "the job to report its children")
        stubborn, escaped = (int(x) for x in cap.data(OUT).split())
        await until(lambda: len(psutil.Process(escaped).children()) == 1, "the grandchild")
        tree = [cap.pids[0], stubborn, escaped, psutil.Process(escaped).children()[0].pid]
        assert os.getsid(escaped) == escaped != cap.pids[0]
        # Let the memory sampler see the whole tree at least once.
        await until(lambda: p.rss_bytes > 0 and len(p.tree()) == 4, "a sample of the tree")
        p.kill()
        return await asyncio.wait_for(task, DEADLINE), tree

    outcome, tree = asyncio.run(go())
    assert outcome.signal == signal.SIGTERM
    survivors = [pid for pid in tree if alive(pid)]
    assert survivors == []


def test_kill_escalates_to_sigkill_after_grace(tmp_path: Path) -> None:
    cap = Captured()
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("armed", flush=True)
        time.sleep(600)
    """
    p = job(python(code, tmp_path), cap, grace=30.0)

    async def go() -> tuple[Outcome, float]:
        task = asyncio.create_task(p.run())
        await until(lambda: cap.data(OUT) == b"armed\n", "the job to ignore SIGTERM")
        began = time.monotonic()
        p.kill(signal.SIGTERM, grace_seconds=0.3)
        outcome = await asyncio.wait_for(task, DEADLINE)
        return outcome, time.monotonic() - began

    outcome, took = asyncio.run(go())
    assert outcome.signal == signal.SIGKILL
    assert took < 10  # the grace from the Kill message, not the 30 s default


def test_kill_with_a_chosen_signal(tmp_path: Path) -> None:
    cap = Captured()
    p = job(python("import time; print(flush=True); time.sleep(600)", tmp_path), cap)

    async def go() -> Outcome:
        task = asyncio.create_task(p.run())
        await until(lambda: cap.data(OUT) == b"\n", "the job to start")
        p.kill(signal.SIGINT, 5)
        return await asyncio.wait_for(task, DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.signal == signal.SIGINT


def test_kill_before_the_spawn_is_delivered_after_it(tmp_path: Path) -> None:
    cap = Captured()
    p = job(python("import time; time.sleep(600)", tmp_path), cap)

    async def go() -> Outcome:
        p.kill()
        return await asyncio.wait_for(p.run(), DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.signal == signal.SIGTERM
    assert not alive(cap.pids[0])


def test_background_process_holding_the_pipe_does_not_block_the_finish(tmp_path: Path) -> None:
    cap = Captured()
    s = spec(["echo started; sleep 600 & echo $! ; exit 0"], tmp_path, shell=True)
    p = job(s, cap)

    async def go() -> Outcome:
        return await asyncio.wait_for(p.run(), DEADLINE)

    outcome = asyncio.run(go())
    background = int(cap.data(OUT).split()[1])
    try:
        assert outcome.exit_code == 0
        assert cap.data(OUT).startswith(b"started\n")
    finally:
        os.kill(background, signal.SIGKILL)


def test_peak_memory_is_measured(tmp_path: Path) -> None:
    code = """
        import time
        block = b"x" * (64 * 1024 * 1024)
        time.sleep(0.6)
    """
    outcome, _ = run(python(code, tmp_path))
    assert outcome.exit_code == 0
    assert outcome.peak_memory_bytes >= 60 * 1024 * 1024


def test_peak_memory_of_a_job_too_short_to_sample_comes_from_its_reaping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resource

    monkeypatch.setattr(runner, "SAMPLE_DELAYS", (600.0,))  # no sample: only the reaping can tell
    # Above this process's own peak, which a job's figure includes after a vfork.
    size = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 + 64 * 1024 * 1024
    outcome, _ = run(python(f"block = b'x' * {size}", tmp_path))
    assert outcome.exit_code == 0
    assert size <= outcome.peak_memory_bytes < size + 64 * 1024 * 1024


def test_running_jobs_are_sampled_and_ended_ones_are_forgotten(tmp_path: Path) -> None:
    code = """
        import sys, time
        block = b"x" * (48 * 1024 * 1024)
        print("allocated", flush=True)
        time.sleep(60)
    """

    async def go() -> None:
        caps = [Captured() for _ in range(3)]
        procs = [job(python(code, tmp_path), cap) for cap in caps]
        tasks = [asyncio.create_task(p.run()) for p in procs]
        # Each of them, sampled by the one timer, shows its memory while it runs.
        await until(lambda: all(p.rss_bytes >= 40 * 1024 * 1024 for p in procs), "samples of every job")
        sampler = runner._Sampler.of(asyncio.get_running_loop())
        assert set(sampler._due) == set(procs)
        for p in procs:
            p.kill(signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE)
        # Nothing of them left to sample, and the timer stops with the last.
        assert sampler._due == {}
        await until(lambda: sampler._timer is None, "the sampling timer to stop")

    asyncio.run(go())


def test_a_finished_job_is_freed_without_waiting_for_the_cycle_collector(tmp_path: Path) -> None:
    import gc
    import weakref

    async def go() -> weakref.ref[JobProcess]:
        holder: list[JobProcess] = []

        def started(pid: int) -> None:
            # As the worker's callbacks do: they close over the process.
            assert holder[0].pid == pid

        proc = JobProcess(
            spec(["true"], tmp_path),
            job_id=1,
            attempt=1,
            worker_name="testworker",
            kill_grace_seconds=5.0,
            on_started=started,
            on_exit=lambda: None,
            on_output=lambda stream, data: None,
        )
        holder.append(proc)
        outcome = await asyncio.wait_for(proc.run(), DEADLINE)
        assert outcome.exit_code == 0
        return weakref.ref(proc)

    gc.disable()
    try:
        gone = asyncio.run(go())
        assert gone() is None
    finally:
        gc.enable()


class Gate:
    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.pauses = 0

    def paused(self) -> bool:
        if not self.open.is_set():
            self.pauses += 1
        return not self.open.is_set()

    async def resumed(self) -> None:
        await self.open.wait()


def test_backpressure_pauses_reading_while_the_job_runs(tmp_path: Path) -> None:
    cap = Captured()
    code = """
        import os
        for i in range(50):
            os.write(1, b"y" * 65536)
    """

    async def go() -> Outcome:
        gate = Gate()
        p = JobProcess(
            python(code, tmp_path),
            job_id=1,
            attempt=1,
            worker_name="w",
            kill_grace_seconds=5,
            on_output=cap.on_output,
            backpressure=gate,
        )
        task = asyncio.create_task(p.run())
        await until(lambda: gate.pauses >= 1, "the first pause")
        # Held back: the job blocks on a full pipe instead of us buffering it all.
        assert len(cap.data(OUT)) < 50 * 65536
        gate.open.set()
        return await asyncio.wait_for(task, DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.exit_code == 0
    assert cap.data(OUT) == b"y" * (50 * 65536)


# -- stdin and signals -----------------------------------------------------------------


class QueueStdin:
    """A StdinSource from a queue: b"" closes the pipe."""

    def __init__(self, *chunks: bytes) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        for chunk in chunks:
            self.queue.put_nowait(chunk)
        self.written_bytes = 0
        self.closed_count = 0

    async def take(self) -> bytes:
        return await self.queue.get()

    def written(self, count: int) -> None:
        self.written_bytes += count

    def closed(self) -> None:
        self.closed_count += 1


def piped_job(
    s: common_pb2.JobSpec, cap: Captured, source: QueueStdin | None, grace: float = 5.0
) -> JobProcess:
    s.stdin_pipe = True
    return JobProcess(
        s,
        job_id=42,
        attempt=3,
        worker_name="testworker",
        kill_grace_seconds=grace,
        on_started=cap.pids.append,
        on_output=cap.on_output,
        stdin=source,
    )


def test_stdin_round_trip_through_cat_queued_before_the_spawn(tmp_path: Path) -> None:
    data = random.Random(11).randbytes(5 * 1024 * 1024)
    source = QueueStdin(*(data[i : i + 100_000] for i in range(0, len(data), 100_000)), b"")
    cap = Captured()

    async def go() -> Outcome:
        return await asyncio.wait_for(piped_job(spec(["cat"], tmp_path), cap, source).run(), DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.exit_code == 0  # the end of file reached cat
    assert hashlib.sha256(cap.data(OUT)).digest() == hashlib.sha256(data).digest()
    assert source.written_bytes == len(data)
    assert source.closed_count == 1


def test_stdin_is_dev_null_without_a_pipe_and_eof_without_a_source(tmp_path: Path) -> None:
    outcome, cap = run(spec(["cat"], tmp_path))
    assert (outcome.exit_code, cap.data(OUT)) == (0, b"")
    cap = Captured()

    async def go() -> Outcome:
        return await asyncio.wait_for(piped_job(spec(["cat"], tmp_path), cap, None).run(), DEADLINE)

    outcome = asyncio.run(go())
    assert (outcome.exit_code, cap.data(OUT)) == (0, b"")


def test_stdin_written_as_it_arrives(tmp_path: Path) -> None:
    source = QueueStdin()
    cap = Captured()
    p = piped_job(spec(["cat"], tmp_path), cap, source)

    async def go() -> Outcome:
        task = asyncio.create_task(p.run())
        source.queue.put_nowait(b"one\n")
        await until(lambda: cap.data(OUT) == b"one\n", "the first line back")
        source.queue.put_nowait(b"two\n")
        await until(lambda: cap.data(OUT) == b"one\ntwo\n", "the second line back")
        assert source.closed_count == 0 and alive(cap.pids[0])
        source.queue.put_nowait(b"")
        return await asyncio.wait_for(task, DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.exit_code == 0 and source.written_bytes == 8


def test_a_job_closing_its_stdin_stops_the_feeder_not_the_job(tmp_path: Path) -> None:
    # More than the pipe holds (runner.PIPE_BYTES), so the feeder is still writing.
    size = 4 * 1024 * 1024
    source = QueueStdin(b"x" * size)
    cap = Captured()
    s = spec(["exec 0<&-; echo closed; while :; do sleep 0.1; done"], tmp_path, shell=True)
    p = piped_job(s, cap, source, grace=1.0)

    async def go() -> Outcome:
        task = asyncio.create_task(p.run())
        await until(lambda: source.closed_count == 1, "the feeder to see the closed pipe")
        assert alive(cap.pids[0])
        assert source.written_bytes < size
        p.kill()
        return await asyncio.wait_for(task, DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.signal == signal.SIGTERM
    assert source.closed_count == 1


def test_a_job_that_never_reads_ends_and_its_input_is_dropped(tmp_path: Path) -> None:
    # More than the pipe holds (runner.PIPE_BYTES, where the system allows it).
    size = 4 * 1024 * 1024
    source = QueueStdin(b"x" * size)
    cap = Captured()
    code = "import time; print('up', flush=True); time.sleep(600)"
    p = piped_job(python(code, tmp_path), cap, source, grace=1.0)

    async def go() -> Outcome:
        task = asyncio.create_task(p.run())
        await until(lambda: source.written_bytes > 0 and cap.data(OUT) == b"up\n", "the pipe to fill")
        p.kill()
        return await asyncio.wait_for(task, DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.signal == signal.SIGTERM
    assert 0 < source.written_bytes < size  # a pipe's worth, the rest was never taken
    assert source.closed_count == 1


TRAP = 'trap "echo got INT; exit 7" INT; echo ready; while :; do sleep 0.1; done'


def test_send_signal_reaches_the_process_group(tmp_path: Path) -> None:
    cap = Captured()
    p = job(spec([TRAP], tmp_path, shell=True), cap)

    async def go() -> Outcome:
        task = asyncio.create_task(p.run())
        await until(lambda: cap.data(OUT) == b"ready\n", "the trap to be set")
        p.send_signal(signal.SIGINT)
        return await asyncio.wait_for(task, DEADLINE)

    outcome = asyncio.run(go())
    assert (outcome.exit_code, cap.data(OUT)) == (7, b"ready\ngot INT\n")
    assert not p.kill_requested  # a signal, not a kill: nothing escalates


def test_send_signal_before_the_spawn_is_delivered_after_it(tmp_path: Path) -> None:
    cap = Captured()
    p = job(python("import time; time.sleep(600)", tmp_path), cap)

    async def go() -> Outcome:
        p.send_signal(signal.SIGUSR1)
        return await asyncio.wait_for(p.run(), DEADLINE)

    outcome = asyncio.run(go())
    assert outcome.signal == signal.SIGUSR1


def test_ended_jobs_leave_no_descriptor_open_or_watched(tmp_path: Path) -> None:
    from kueue_worker import fd_watch

    def fds() -> set[int]:
        return {int(fd) for fd in os.listdir("/proc/self/fd")}

    async def go() -> None:
        watch = fd_watch.of(asyncio.get_running_loop())
        assert isinstance(watch, fd_watch.FdWatch)
        runner.spawn.devnull()  # kept open for all jobs
        before = fds()
        for code in ("print('x' * 100000)", "import sys; sys.exit(3)", "pass"):
            await asyncio.wait_for(job(python(code, tmp_path), Captured()).run(), DEADLINE)
        assert fds() == before
        with open(f"/proc/self/fdinfo/{watch._epoll.fileno()}") as info:
            assert [line for line in info if line.startswith("tfd:")] == []

    asyncio.run(go())


def test_follow_tells_each_outcome_once_without_a_task_per_job(tmp_path: Path) -> None:
    async def go() -> None:
        tasks_before = len(asyncio.all_tasks())
        outcomes: dict[int, list[Outcome]] = {}
        all_done = asyncio.Event()
        codes = [0, 3, 7]
        for code in codes:
            p = JobProcess(
                spec(["sh", "-c", f"exit {code}"], tmp_path),
                job_id=code,
                attempt=1,
                worker_name="w",
                kill_grace_seconds=1.0,
            )

            def done(outcome: Outcome, code: int = code) -> None:
                outcomes.setdefault(code, []).append(outcome)
                if len(outcomes) == len(codes):
                    all_done.set()

            p.follow(done)
        # The processes are followed by callbacks of the loop, not by tasks.
        assert len(asyncio.all_tasks()) == tasks_before
        await asyncio.wait_for(all_done.wait(), DEADLINE)
        for _ in range(3):
            await asyncio.sleep(0)
        assert {code: [o.exit_code for o in seen] for code, seen in outcomes.items()} == {
            0: [0],
            3: [3],
            7: [7],
        }
        # A start that fails is told a turn later, not from inside follow().
        failed: list[Outcome] = []
        bad = JobProcess(
            spec(["/nonexistent/x"], tmp_path), job_id=9, attempt=1, worker_name="w", kill_grace_seconds=1.0
        )
        bad.follow(failed.append)
        assert failed == []
        await asyncio.sleep(0)
        assert len(failed) == 1 and "cannot start /nonexistent/x" in failed[0].error

    asyncio.run(go())


def test_a_cancelled_run_returns_once_its_stdin_feeder_is_gone(tmp_path: Path) -> None:
    # The feeder blocks writing more than the pipe holds into a job that reads
    # nothing; its pipe may only be closed once it is gone (its writer would
    # otherwise be removed from whatever reuses the descriptor's number).
    source = QueueStdin(b"x" * (4 * 1024 * 1024))
    cap = Captured()
    p = piped_job(spec(["sleep", "30"], tmp_path), cap, source, grace=1.0)

    async def go() -> None:
        others = asyncio.all_tasks()
        task = asyncio.create_task(p.run())
        await until(lambda: source.written_bytes > 0, "the feeder to fill the pipe")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert asyncio.all_tasks() - others == set()
        assert source.closed_count == 1
        os.kill(cap.pids[0], signal.SIGKILL)

    asyncio.run(go())
