"""Operating the server: JSON logs with one event per state change, and the
Prometheus endpoint, against a real server and real workers."""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster, wait_for

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_exposition(text: str) -> Samples:
    """Samples of Prometheus' text format; fails on anything malformed."""
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: Samples = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            types[name] = kind
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types and family in helps, f"{name} has no TYPE/HELP"
        pairs = tuple(LABEL.findall(labels or ""))
        key = (name, pairs)
        assert key not in samples, f"duplicate sample {key}"
        samples[key] = float(value)
    for name, kind in types.items():
        if kind == "histogram":
            buckets = sorted(
                ((float("inf") if dict(k[1])["le"] == "+Inf" else float(dict(k[1])["le"])), v)
                for k, v in samples.items()
                if k[0] == f"{name}_bucket"
            )
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{name} buckets not cumulative"
            assert buckets[-1][0] == float("inf")
            assert buckets[-1][1] == samples[(f"{name}_count", ())]
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def submit(cluster: Cluster, cwd: Path, *command: str) -> int:
    return int(cluster.kueue("cmd", *command, cwd=cwd).stdout.strip())


def state(cluster: Cluster, job_id: int) -> str:
    shown = json.loads(cluster.kueue("show", str(job_id), "--json").stdout)
    return shown.get("job", shown)["state"]


def test_metrics_endpoint_counts_jobs_workers_and_commits(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    cluster.server_settings["metrics_port"] = port
    cluster.start_server()
    assert f"metrics at http://127.0.0.1:{port}/metrics" in cluster.server_log()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    status, content_type, text = scrape(port)
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    before = parse_exposition(text)
    assert value(before, "kueue_jobs_submitted_total") == 0
    assert value(before, "kueue_workers_connected") == 1
    assert value(before, "kueue_jobs_finished_total", outcome="failed") == 0

    ok = [submit(cluster, tmp_path, "true") for _ in range(2)]
    bad = submit(cluster, tmp_path, "sh", "-c", "exit 3")
    cluster.kueue("wait", *map(str, [*ok, bad]), check=False)
    assert [state(cluster, j) for j in [*ok, bad]] == ["JOB_STATE_SUCCEEDED"] * 2 + ["JOB_STATE_FAILED"]

    after = parse_exposition(scrape(port)[2])
    assert value(after, "kueue_jobs_submitted_total") == 3
    assert value(after, "kueue_jobs_dispatched_total") >= 3
    assert value(after, "kueue_jobs_finished_total", outcome="succeeded") == 2
    assert value(after, "kueue_jobs_finished_total", outcome="failed") == 1
    assert value(after, "kueue_jobs_finished_total", outcome="canceled") == 0
    assert value(after, "kueue_jobs", state="succeeded") == 2
    assert value(after, "kueue_jobs", state="failed") == 1
    assert value(after, "kueue_jobs", state="pending") == 0
    assert value(after, "kueue_job_queue_wait_seconds_count") >= 3
    assert value(after, "kueue_job_run_seconds_count") == 3
    assert value(after, "kueue_job_run_seconds_sum") >= 0
    assert value(after, "kueue_workers_connected") == 1
    # Run time counts processes that ran: one that never started adds none,
    # one killed on request adds its run.
    unstartable = submit(cluster, tmp_path, "./no-such-program-here")
    cluster.kueue("wait", str(unstartable), check=False)
    assert state(cluster, unstartable) == "JOB_STATE_FAILED"
    assert value(parse_exposition(scrape(port)[2]), "kueue_job_run_seconds_count") == 3
    killed = submit(cluster, tmp_path, "sleep", "600")
    wait_for(lambda: state(cluster, killed) == "JOB_STATE_RUNNING", timeout=60, what="sleep to run")
    cluster.kueue("rm", "--kill", str(killed))
    cluster.kueue("wait", str(killed), check=False)
    assert state(cluster, killed) == "JOB_STATE_CANCELED"
    after = parse_exposition(scrape(port)[2])
    assert value(after, "kueue_job_run_seconds_count") == 4
    assert value(after, "kueue_store_commit_seconds_count") > value(
        before, "kueue_store_commit_seconds_count"
    )
    assert value(after, "kueue_store_commit_failures_total") == 0
    assert value(after, "kueue_server_info", version="0.1.0") == 1

    # Anything but GET /metrics gets a clear HTTP error; HEAD gets the headers only.
    assert scrape(port, "/")[0] == 404
    assert raw_request(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert raw_request(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    head = raw_request(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    # A peer that sends nothing useful does not stop the next scrape.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        idle.sendall(b"GET /met")
        assert scrape(port)[0] == 200

    cluster.kill_worker("w1", signal.SIGTERM)
    wait_for(
        lambda: value(parse_exposition(scrape(port)[2]), "kueue_workers_connected") == 0,
        what="the metrics to show no worker",
    )


def json_lines(path: Path) -> list[dict[str, Any]]:
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{path.name} line {n} is not JSON: {line!r}")
        assert isinstance(record, dict)
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
        records.append(record)
    return records


def job_events(records: list[dict[str, Any]], job_id: int) -> list[tuple[str, int | None, str | None]]:
    return [
        (r["event"], r.get("attempt"), r.get("worker"))
        for r in records
        if r.get("event", "").startswith("job_") and r.get("job") == job_id
    ]


def test_json_logs_have_one_event_per_state_change_in_order(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server("--log-format", "json")
    # The workers take the format from the config file instead.
    cluster.common_settings["log_format"] = "json"
    cluster.start_worker("w1", on_sigterm="requeue")
    cluster.wait_workers("w1")
    failed = submit(cluster, tmp_path, "sh", "-c", "exit 3")
    cluster.kueue("wait", str(failed), check=False)
    moved = submit(cluster, tmp_path, "sleep", "60")
    wait_for(lambda: state(cluster, moved) == "JOB_STATE_RUNNING", what="the job to run")
    # w1 stops and hands the job back; it runs again on w2 and is killed there.
    cluster.kill_worker("w1", signal.SIGTERM)
    # w2 from the command line instead of its config.
    del cluster.common_settings["log_format"]
    cluster.start_worker("w2", "--log-format", "json")
    wait_for(lambda: state(cluster, moved) == "JOB_STATE_RUNNING", what="the job to run again")
    cluster.kueue("rm", "-k", str(moved))
    wait_for(lambda: state(cluster, moved) == "JOB_STATE_CANCELED", what="the job to be canceled")
    never = submit(cluster, tmp_path, "-c", "64", "true")  # fits no worker: stays queued
    cluster.kueue("rm", str(never))
    cluster.kill_worker("w2", signal.SIGTERM)
    assert cluster.stop_server() == 0

    server = json_lines(cluster.root / "server.log")
    assert job_events(server, failed) == [
        ("job_submitted", None, None),
        ("job_offered", 1, "w1"),
        ("job_started", 1, "w1"),
        ("job_finished", 1, "w1"),
    ]
    (finish,) = [r for r in server if r.get("event") == "job_finished" and r["job"] == failed]
    assert (finish["state"], finish["exit_code"], finish["level"]) == ("failed", 3, "info")
    assert finish["logger"] == "kueue_server"
    assert job_events(server, moved) == [
        ("job_submitted", None, None),
        ("job_offered", 1, "w1"),
        ("job_started", 1, "w1"),
        ("job_requeued", 1, "w1"),
        ("job_offered", 2, "w2"),
        ("job_started", 2, "w2"),
        ("job_canceled", 2, "w2"),
    ]
    assert job_events(server, never) == [("job_submitted", None, None), ("job_canceled", None, None)]
    (requeue,) = [r for r in server if r.get("event") == "job_requeued"]
    assert (requeue["state"], requeue["reason"]) == ("pending", "worker w1 shut down")
    workers = [(r["event"], r["worker"]) for r in server if r.get("event", "").startswith("worker_")]
    assert workers == [
        ("worker_connected", "w1"),
        ("worker_leaving", "w1"),
        ("worker_disconnected", "w1"),
        ("worker_connected", "w2"),
        ("worker_leaving", "w2"),
        ("worker_disconnected", "w2"),
    ]

    w1 = json_lines(cluster.root / "worker-w1.log")
    assert [
        (r["event"], r.get("job")) for r in w1 if r.get("event", "").startswith(("attempt_", "worker_"))
    ] == [
        ("worker_registered", None),
        ("attempt_started", failed),
        ("attempt_finished", failed),
        ("attempt_started", moved),
        ("worker_stopping", None),
        ("attempt_finished", moved),
        ("worker_stopped", None),
    ]
    ended, killed = [r for r in w1 if r.get("event") == "attempt_finished"]
    assert (ended["exit_code"], ended["attempt"], ended["worker"]) == (3, 1, "w1")
    assert (killed["signal"], "exit_code" in killed) == (15, False)
    w2 = json_lines(cluster.root / "worker-w2.log")
    assert [(r["event"], r.get("job")) for r in w2 if r.get("event", "").startswith("attempt_")] == [
        ("attempt_started", moved),
        ("attempt_killing", moved),
        ("attempt_finished", moved),
    ]
