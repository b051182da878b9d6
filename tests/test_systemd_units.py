"""`kueue install-units`: the systemd user units it writes, run as a real
`kueue` process with HOME and XDG_CONFIG_HOME in a temporary directory."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kueue_client.systemd_units import quote
from tests.cluster import Cluster, _env


def kueue(home: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env()
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"))
    return subprocess.run(
        [sys.executable, "-m", "kueue_client", "--config", str(config), "install-units", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=home,
    )


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


@pytest.fixture
def setup(cluster: Cluster, tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    home.mkdir()
    config = cluster.write_config(
        tmp_path / "my config.toml", port=11236, worker_settings={"kill_grace_seconds": 7.5}
    )
    return home, config


def test_units_run_this_python_with_this_config(setup: tuple[Path, Path]) -> None:
    home, config = setup
    result = kueue(home, config)
    assert result.returncode == 0, result.stderr
    units = home / "xdg" / "systemd" / "user"
    assert sorted(p.name for p in units.iterdir()) == ["kueue-server.service", "kueue-worker.service"]
    assert f"wrote {units / 'kueue-worker.service'}" in result.stdout
    assert "systemctl --user enable --now kueue-server kueue-worker" in result.stdout
    assert "loginctl enable-linger" in result.stdout

    for module in ("kueue_server", "kueue_worker"):
        unit = read_unit(units / f"{module.replace('_', '-')}.service")
        service = unit["Service"]
        assert unit["Install"]["WantedBy"] == "default.target"
        assert service["Restart"] == "on-failure"
        assert service["RestartPreventExitStatus"] == "2"
        argv = shlex.split(service["ExecStart"])
        assert argv[:5] == [sys.executable, "-m", module, "--config", str(config)]
        assert Path(argv[0]).is_file() and os.access(argv[0], os.X_OK) and config.is_file()
        # Started the way systemd would (no PYTHONPATH of ours, cwd /), it runs.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if "Environment" in service:
            name, _, value = shlex.split(service["Environment"])[0].partition("=")
            assert name == "PYTHONPATH" and Path(value, module).is_dir()
            env["PYTHONPATH"] = value
        ran = subprocess.run([*argv, "--help"], capture_output=True, text=True, env=env, cwd="/", timeout=60)
        assert ran.returncode == 0 and f"usage: {module}" in ran.stdout, ran.stderr

    worker = read_unit(units / "kueue-worker.service")["Service"]
    assert shlex.split(worker["ExecStart"])[5:] == ["--drain-timeout", "60"]
    # SIGTERM to the worker alone, which drains then stops its jobs itself;
    # systemd waits for the drain, the kill grace time and a margin.
    assert worker["KillMode"] == "mixed"
    assert worker["TimeoutStopSec"] == str(60 + 8 + 30)
    assert read_unit(units / "kueue-worker.service")["Unit"]["After"] == "kueue-server.service"


def test_existing_units_are_kept_unless_forced(setup: tuple[Path, Path]) -> None:
    home, config = setup
    assert kueue(home, config).returncode == 0
    worker = home / "xdg" / "systemd" / "user" / "kueue-worker.service"
    again = kueue(home, config)
    assert again.returncode == 0 and f"unchanged {worker}" in again.stdout
    worker.write_text(worker.read_text() + "# my edit\n")
    refused = kueue(home, config, "--drain-timeout", "0")
    assert refused.returncode == 1
    assert refused.stderr == f"kueue: {worker} already exists with other content; use --force to overwrite\n"
    assert worker.read_text().endswith("# my edit\n")
    forced = kueue(home, config, "--force", "--drain-timeout", "0")
    assert forced.returncode == 0 and f"rewrote {worker}" in forced.stdout
    service = read_unit(worker)["Service"]
    assert service["TimeoutStopSec"] == "infinity"
    assert shlex.split(service["ExecStart"])[5:] == ["--drain-timeout", "0"]


def test_server_or_worker_only(setup: tuple[Path, Path], tmp_path: Path) -> None:
    home, config = setup
    assert kueue(home, config, "--worker").returncode == 0
    assert [p.name for p in (home / "xdg" / "systemd" / "user").iterdir()] == ["kueue-worker.service"]
    both = kueue(home, config, "--server", "--worker")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    bad = kueue(home, config, "--drain-timeout", "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("kueue: --drain-timeout must be")


def test_systemd_analyze_verify_accepts_them(setup: tuple[Path, Path]) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    home, config = setup
    assert kueue(home, config).returncode == 0
    units = sorted((home / "xdg" / "systemd" / "user").iterdir())
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=120
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "kueue-" in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def test_quoting_for_exec_lines() -> None:
    assert quote("/usr/bin/python3") == "/usr/bin/python3"
    assert quote("/home/a b/c.toml") == '"/home/a b/c.toml"'
    assert quote("50%$HOME") == "50%%$$HOME"
    assert quote('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert shlex.split(quote("/home/a b/c.toml")) == ["/home/a b/c.toml"]
