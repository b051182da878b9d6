"""End to end: a real server, real workers, the real `kueue` CLI, on loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.cluster import Cluster, wait_for


def job_json(cluster: Cluster, job_id: int) -> dict:
    return json.loads(cluster.kueue("show", str(job_id), "--json").stdout)


def job_field(job: dict, key: str, default: object = None) -> object:
    return job.get("job", job).get(key, default)


def wait_state(cluster: Cluster, job_id: int, *states: str, timeout: float = 60.0) -> dict:
    def reached() -> dict | None:
        job = job_json(cluster, job_id)
        return job if job_field(job, "state") in states else None

    return wait_for(reached, timeout, f"job {job_id} to reach {states}")


def submit(cluster: Cluster, *args: str, cwd: Path | None = None) -> int:
    out = cluster.kueue("cmd", *args, cwd=cwd).stdout.split()
    assert len(out) == 1, out
    return int(out[0])


def test_exit_codes_output_and_working_directory(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    work = tmp_path / "my work dir"
    work.mkdir()
    script = work / "job.sh"
    script.write_text('#!/bin/sh\necho "out $1 in $(pwd) as $KUEUE_JOB_ID"\necho "err line" >&2\nexit "$2"\n')
    script.chmod(0o755)
    ok = submit(cluster, "./job.sh", "a", "0", cwd=work)
    bad = submit(cluster, "./job.sh", "b", "3", cwd=work)
    result = cluster.kueue("wait", str(ok), str(bad), check=False)
    assert result.returncode == 3
    job = job_json(cluster, ok)
    assert job_field(job, "state") == "JOB_STATE_SUCCEEDED"
    assert job_field(job, "exit_code", 0) == 0
    show = cluster.kueue("show", str(ok)).stdout
    assert f"out a in {work} as {ok}" in show
    assert "err line" in show
    assert job_field(job_json(cluster, bad), "exit_code") == 3
    # `cmd --wait` prints and returns the exit code.
    waited = cluster.kueue("cmd", "--wait", "sh", "-c", "exit 7", cwd=work, check=False)
    assert waited.returncode == 7
    assert waited.stdout.split()[-1] == "7"
    # A command that is not there: 127 as from a shell, and why, on stderr.
    missing = cluster.kueue("cmd", "--wait", "no-such-command-here", cwd=work, check=False)
    assert missing.returncode == 127 and missing.stdout.split()[-1] == "127"
    why = missing.stderr.strip().splitlines()[-1]
    assert why.startswith("kueue: job ") and "no-such-command-here" in why, missing.stderr
    # Shell syntax in one argument runs through /bin/sh.
    piped = submit(cluster, "echo one two | wc -w > count.txt", cwd=work)
    wait_state(cluster, piped, "JOB_STATE_SUCCEEDED")
    assert (work / "count.txt").read_text().strip() == "2"
    listing = cluster.kueue("ls").stdout
    assert str(ok) in listing and str(bad) in listing
    # The worker's address as people write it, not in gRPC's URI form.
    shown = cluster.kueue("show-worker", "w1").stdout.splitlines()
    address = [line for line in shown if line.startswith("address:")]
    assert len(address) == 1 and re.fullmatch(r"address:\s+(127\.0\.0\.1|\[::1\]):\d+", address[0]), shown


def test_licenses_and_cpus_never_overcommitted(cluster: Cluster, tmp_path: Path) -> None:
    cluster.global_resources = {"genus": 1}
    cluster.start_server()
    cluster.start_worker("w1", worker_max_parallel_jobs=3)
    cluster.start_worker("w2", worker_max_parallel_jobs=3)
    cluster.wait_workers("w1", "w2")
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    record = (
        "python3 -c \"import time,os; print('start', time.time(), os.environ['KUEUE_WORKER'])\" "
        '>> "$KUEUE_JOB_ID.log"; sleep 0.3; '
        "python3 -c \"import time,os; print('end', time.time(), os.environ['KUEUE_WORKER'])\" >> \"$KUEUE_JOB_ID.log\""
    )
    licensed = [submit(cluster, "--resource", "genus", record, cwd=stamps) for _ in range(4)]
    cpus = os.cpu_count() or 1
    wide = [submit(cluster, "-c", str(cpus), record, cwd=stamps) for _ in range(4)]
    cluster.kueue("wait", *map(str, licensed + wide), timeout=180)

    def intervals(ids: list[int]) -> list[tuple[float, float, str]]:
        out = []
        for job_id in ids:
            lines = [line.split() for line in (stamps / f"{job_id}.log").read_text().splitlines()]
            assert [line[0] for line in lines] == ["start", "end"]
            out.append((float(lines[0][1]), float(lines[1][1]), lines[0][2]))
        return out

    def max_overlap(spans: list[tuple[float, float, str]]) -> int:
        events = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
        level = peak = 0
        for _, delta in events:
            level += delta
            peak = max(peak, level)
        return peak

    # One genus license: licensed jobs never overlap, whatever the worker.
    assert max_overlap(intervals(licensed)) == 1
    # A job taking all cpus of a worker never shares it with another such job.
    spans = intervals(wide)
    for worker in ("w1", "w2"):
        assert max_overlap([s for s in spans if s[2] == worker]) <= 1


def _unshare_available() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _unshare_available(), reason="needs unshare -m (root) to hide a directory from one worker"
)
def test_missing_directory_on_one_worker_runs_on_the_other(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    shared = tmp_path / "shared"
    (shared / "project").mkdir(parents=True)
    # 'blind' sees an empty tmpfs over shared/: the project directory is missing there.
    config = cluster.write_config(
        cluster.root / "worker-blind.toml",
        port=cluster.port,
        server_settings={"data_dir": str(cluster.root / "worker-blind-data")},
    )
    log = open(cluster.root / "worker-blind.log", "ab")  # noqa: SIM115
    from tests.cluster import _env

    blind = subprocess.Popen(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount -t tmpfs none "{shared}" && exec "$0" -m kueue_worker --config "{config}" --name blind',
            sys.executable,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,
    )
    cluster.workers["blind"] = blind
    cluster.wait_workers("blind")
    job_id = submit(cluster, "sh", "-c", "echo ran on $KUEUE_WORKER", cwd=shared / "project")
    wait_for(
        lambda: "blind" in str(job_field(job_json(cluster, job_id), "comment", "")),
        30,
        "the blind worker to reject the job",
    )
    assert job_field(job_json(cluster, job_id), "state") == "JOB_STATE_PENDING"
    cluster.start_worker("sees")
    job = wait_state(cluster, job_id, "JOB_STATE_SUCCEEDED")
    assert job_field(job, "worker_name") == "sees"
    assert "ran on sees" in cluster.kueue("show", str(job_id)).stdout


def test_kill_removes_the_process_tree(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    pids = tmp_path / "pids"
    job_id = submit(
        cluster,
        "sh",
        "-c",
        f"sleep 1000 & echo $! >> {pids}; setsid sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; wait",
        cwd=tmp_path,
    )
    wait_for(
        lambda: pids.exists() and len(pids.read_text().split()) == 3, 30, "the job to start its children"
    )
    tree = [int(p) for p in pids.read_text().split()]
    assert all(psutil.pid_exists(p) for p in tree)
    refused = cluster.kueue("rm", str(job_id), check=False)
    assert refused.returncode != 0 and "--kill" in refused.stderr
    cluster.kueue("rm", "--kill", str(job_id))
    wait_state(cluster, job_id, "JOB_STATE_CANCELED")

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(p) for p in tree), 30, "every process of the job to be gone")


def test_wrong_secret_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    bad = cluster.write_config(tmp_path / "bad.toml", port=cluster.port, secret="x" * 64)
    result = cluster.kueue("ls", config=bad, check=False)
    assert result.returncode != 0
    assert "secret does not match" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    submitted = cluster.kueue("cmd", "true", config=bad, check=False)
    assert submitted.returncode != 0
    # `kueue cmd` submits by a path of its own (kueue_client/submission.py): the same one line.
    assert submitted.stderr.strip().splitlines() == result.stderr.strip().splitlines()
    assert json.loads(cluster.kueue("ls", "--json").stdout)["jobs"] == []


def test_server_restart_keeps_jobs_output_and_exit_codes(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    done = submit(cluster, "sh", "-c", "echo kept output; exit 4", cwd=tmp_path)
    cluster.kueue("wait", str(done), check=False)
    cluster.kill_worker("w1", signal.SIGTERM)
    pending = submit(cluster, "echo", "later", cwd=tmp_path)
    cluster.stop_server(signal.SIGKILL)
    cluster.start_server()
    job = job_json(cluster, done)
    assert job_field(job, "state") == "JOB_STATE_FAILED" and job_field(job, "exit_code") == 4
    assert "kept output" in cluster.kueue("show", str(done)).stdout
    assert job_field(job_json(cluster, pending), "state") == "JOB_STATE_PENDING"
    cluster.start_worker("w1")
    wait_state(cluster, pending, "JOB_STATE_SUCCEEDED")
    assert "later" in cluster.kueue("show", str(pending)).stdout


def test_worker_killed_job_runs_again_elsewhere(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "c", worker_timeout_seconds=3)
    try:
        cluster.start_server()
        cluster.start_worker("first")
        cluster.wait_workers("first")
        marks = tmp_path / "marks"
        job_id = submit(
            cluster,
            f'echo "$KUEUE_WORKER $KUEUE_ATTEMPT" >> {marks}; '
            f'if [ "$KUEUE_WORKER" = first ]; then sleep 1000; fi; echo finished',
            cwd=tmp_path,
        )
        wait_for(lambda: marks.exists() and "first" in marks.read_text(), 30, "the job to start on 'first'")
        # The machine dies: the worker and its job with it.
        worker = psutil.Process(cluster.workers["first"].pid)
        victims = [worker, *worker.children(recursive=True)]
        for proc in victims:
            proc.kill()
        cluster.workers.pop("first").wait(timeout=10)
        cluster.start_worker("second")
        job = wait_state(cluster, job_id, "JOB_STATE_SUCCEEDED", timeout=90)
        assert job_field(job, "worker_name") == "second"
        assert job_field(job, "attempt") == 2
        assert marks.read_text().split("\n")[:2] == ["first 1", "second 2"]
    finally:
        cluster.close()
