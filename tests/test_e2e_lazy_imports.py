"""Start-up cost of the everyday commands: `kueue cmd` (on a terminal or not)
and piped `kueue ls` must not import rich (it alone costs tens of
milliseconds per call), and `kueue cmd` not protobuf (about 25 ms: it
encodes its submission itself, kueue_client/submission.py), against a real
server. A terminal `kueue ls` does import both, which shows the probe would
see them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import Cluster

# Runs the CLI's main() as `kueue` does (run() is main() and os._exit), then
# writes the names of the rich and protobuf modules loaded to the file argv[2]. With
# argv[1] == "tty", stdout claims to be a terminal (as on one, rich is used).
PROBE = r"""
import io, json, sys
mode, out, *argv = sys.argv[1:]
if mode == "tty":
    class Tty(io.TextIOWrapper):
        def isatty(self):
            return True
    sys.stdout = Tty(sys.stdout.buffer, encoding="utf-8", line_buffering=True)
from kueue_client import cli
code = cli.main(argv)
sys.stdout.flush()
with open(out, "w") as f:
    json.dump({
        "code": code,
        "rich": sorted(m for m in sys.modules if m.partition(".")[0] == "rich"),
        "protobuf": sorted(m for m in sys.modules if m.startswith("google.protobuf")),
    }, f)
"""


def loaded(cluster: Cluster, tmp_path: Path, mode: str, *args: str) -> dict[str, list[str]]:
    """The rich and the protobuf modules the command loaded."""
    out = tmp_path / "modules.json"
    out.unlink(missing_ok=True)
    env = cluster.env()
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(out), "--config", str(cluster.client_config), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["code"] == 0, (args, result.stdout, result.stderr)
    return report


def rich_modules(cluster: Cluster, tmp_path: Path, mode: str, *args: str) -> list[str]:
    return loaded(cluster, tmp_path, mode, *args)["rich"]


@pytest.fixture
def server(cluster: Cluster) -> Cluster:
    cluster.global_resources = {"licence": 4}
    cluster.start_server()  # no worker: jobs stay pending, nothing else needed
    return cluster


def test_cmd_and_piped_ls_do_not_import_rich(server: Cluster, tmp_path: Path) -> None:
    assert rich_modules(server, tmp_path, "pipe", "cmd", "true") == []
    assert rich_modules(server, tmp_path, "tty", "cmd", "true") == []
    assert rich_modules(server, tmp_path, "pipe", "cmd", "--array", "1-3", "echo", "$KUEUE_ARRAY_ID") == []
    assert rich_modules(server, tmp_path, "pipe", "ls") == []
    assert rich_modules(server, tmp_path, "pipe", "ls", "--json") == []
    # The probe sees rich where it is used: `kueue ls` on a terminal.
    assert "rich.console" in rich_modules(server, tmp_path, "tty", "ls")


def test_cmd_does_not_import_protobuf_and_its_jobs_are_as_asked(server: Cluster, tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("a b\n\u00e9t\u00e9\n")
    for args in (
        ("cmd", "true"),
        ("cmd", "-c", "3", "--ram", "700", "--resource", "licence=2", "-o", "out.txt", "echo", "x y"),
        ("cmd", "--array", "1-3", "echo $KUEUE_ARRAY_ID"),
        ("cmd", "--each-line", str(lines), "echo"),
    ):
        assert loaded(server, tmp_path, "pipe", *args)["protobuf"] == [], args
    # The probe sees protobuf where it is used.
    assert "google.protobuf.message" in loaded(server, tmp_path, "pipe", "ls")["protobuf"]
    with server.client() as client:
        jobs = {job.id: job for job in client.list_jobs(include_env=True).jobs}
    assert len(jobs) == 1 + 1 + 3 + 2
    second = jobs[2].spec
    assert (list(second.command), second.cwd, second.stdout_path) == (
        ["echo", "x y"],
        str(tmp_path),
        "out.txt",
    )
    assert (second.resources.cpus, second.resources.ram_mb, dict(second.resources.global_resources)) == (
        3,
        700,
        {"licence": 2},
    )
    assert second.env["PWD"] == str(tmp_path) and second.user and second.submit_host
    assert [jobs[i].spec.env["KUEUE_ARRAY_ID"] for i in (3, 4, 5)] == ["1", "2", "3"]
    assert [jobs[i].spec.env["KUEUE_ENTRY"] for i in (6, 7)] == ["a b", "\u00e9t\u00e9"]
    assert jobs[3].spec.shell and list(jobs[3].spec.command) == ["echo $KUEUE_ARRAY_ID"]
    assert not jobs[6].spec.shell and list(jobs[6].spec.command) == ["echo"]
