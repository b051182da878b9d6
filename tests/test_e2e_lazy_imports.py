"""Start-up cost of the everyday commands: `kueue cmd` (on a terminal or not)
and piped `kueue ls` must not import rich (it alone costs tens of
milliseconds per call), against a real server. A terminal `kueue ls` does
import it, which shows the probe would see it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import Cluster

# Runs the CLI's main() as `kueue` does (run() is main() and os._exit), then
# writes the names of the rich modules loaded to the file argv[2]. With
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
    json.dump({"code": code, "rich": sorted(m for m in sys.modules if m.partition(".")[0] == "rich")}, f)
"""


def rich_modules(cluster: Cluster, tmp_path: Path, mode: str, *args: str) -> list[str]:
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
    return report["rich"]


@pytest.fixture
def server(cluster: Cluster) -> Cluster:
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
