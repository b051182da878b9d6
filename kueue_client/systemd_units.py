"""`kueue install-units`: systemd user units for kueue_server and kueue_worker.

Written to ~/.config/systemd/user (or $XDG_CONFIG_HOME/systemd/user) with
absolute paths: this Python interpreter, the config file in use, and the
package's directory on PYTHONPATH when the interpreter would not find it by
itself (a checkout run with `python -m kueue_client`). No root needed;
`loginctl enable-linger` keeps them running without a login session.

The worker's unit matches its graceful stop: systemd sends SIGTERM to
kueue_worker alone (KillMode=mixed), which drains for at most
--drain-timeout seconds, then stops its jobs' process trees itself and tells
the server, which queues them again at once. TimeoutStopSec leaves room for
all of that; only what is left after it is killed by systemd.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kueue_client.errors import KueueError, UsageError

SERVER_UNIT = "kueue-server.service"
WORKER_UNIT = "kueue-worker.service"
DEFAULT_DRAIN_TIMEOUT = 60.0
# Beyond draining and the jobs' kill grace: the worker's goodbye to the server
# (up to 10 s for the last acknowledgements, 2 s to close) and slack.
STOP_MARGIN_SECONDS = 30
SERVER_STOP_SECONDS = 30


def unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def quote(arg: str) -> str:
    """One argument of an ExecStart= line: systemd splits on whitespace,
    removes quotes, and expands % specifiers and $VARIABLES."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if escaped and not re.search(r"[\s\"'\\;]", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def package_root() -> Path:
    return Path(__file__).resolve().parent.parent


def needs_pythonpath(python: str, root: Path) -> bool:
    """Whether `python`, started by systemd (no PYTHONPATH, cwd /), would import
    another kueue than this one, or none."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [python, "-c", "import kueue_server, kueue_worker; print(kueue_server.__file__)"],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=60,
    )
    if probe.returncode != 0:
        return True
    return Path(probe.stdout.strip()).resolve().parent.parent != root


@dataclass
class Paths:
    python: str
    config: Path
    pythonpath: Path | None


def _exec(paths: Paths, module: str, *args: str) -> list[str]:
    argv = [paths.python, "-m", module, "--config", str(paths.config), *args]
    lines = [f"ExecStart={' '.join(quote(a) for a in argv)}"]
    if paths.pythonpath is not None:
        lines.append(f"Environment={quote('PYTHONPATH=' + str(paths.pythonpath))}")
    return lines


def server_unit(paths: Paths) -> str:
    return "\n".join(
        [
            "# Written by `kueue install-units`; rewrite with `kueue install-units --force`.",
            "[Unit]",
            "Description=Kueue server: the job queue and its scheduler",
            "",
            "[Service]",
            "Type=exec",
            *_exec(paths, "kueue_server"),
            "Restart=on-failure",
            "RestartSec=5",
            "# Exit status 2: the config file cannot be used; restarting will not fix it.",
            "RestartPreventExitStatus=2",
            "# On SIGTERM it commits and closes; workers keep their jobs meanwhile.",
            f"TimeoutStopSec={SERVER_STOP_SECONDS}",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def worker_stop_seconds(drain_timeout: float, kill_grace_seconds: float) -> str:
    if drain_timeout <= 0:
        return "infinity"
    return str(math.ceil(drain_timeout + kill_grace_seconds + STOP_MARGIN_SECONDS))


def worker_unit(paths: Paths, drain_timeout: float, kill_grace_seconds: float) -> str:
    stop = worker_stop_seconds(drain_timeout, kill_grace_seconds)
    return "\n".join(
        [
            "# Written by `kueue install-units`; rewrite with `kueue install-units --force`.",
            "[Unit]",
            "Description=Kueue worker: runs the jobs the Kueue server assigns",
            "After=kueue-server.service",
            "",
            "[Service]",
            "Type=exec",
            *_exec(paths, "kueue_worker", "--drain-timeout", f"{drain_timeout:g}"),
            "Restart=on-failure",
            "RestartSec=5",
            "# Exit status 2: the config file cannot be used; restarting will not fix it.",
            "RestartPreventExitStatus=2",
            "# SIGTERM to kueue_worker alone: it drains (at most --drain-timeout s), then",
            "# stops its jobs itself (kill_grace_seconds) and tells the server, which",
            "# queues them again. To cut a drain short while it stops:",
            "#   systemctl --user kill --kill-whom=main kueue-worker",
            "KillMode=mixed",
            f"TimeoutStopSec={stop}",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def install(
    config_path: Path,
    kill_grace_seconds: float,
    *,
    server: bool,
    worker: bool,
    force: bool,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    python: str | None = None,
) -> list[str]:
    """Write the units; the lines to print. Raises KueueError, writing nothing,
    if a unit exists with other content and force is not set."""
    if drain_timeout < 0 or not math.isfinite(drain_timeout):
        raise UsageError(f"--drain-timeout must be a number of seconds >= 0, not {drain_timeout:g}")
    python = python or sys.executable
    if not python:
        raise KueueError("cannot tell which Python runs this; the units need its path")
    root = package_root()
    paths = Paths(python, config_path.absolute(), root if needs_pythonpath(python, root) else None)
    wanted = {}
    if server:
        wanted[SERVER_UNIT] = server_unit(paths)
    if worker:
        wanted[WORKER_UNIT] = worker_unit(paths, drain_timeout, kill_grace_seconds)
    directory = unit_dir()
    existing = {}
    for name in wanted:
        try:
            existing[name] = (directory / name).read_text()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise KueueError(f"cannot read {directory / name}: {exc.strerror}") from None
    clashes = [name for name, text in existing.items() if text != wanted[name]]
    if clashes and not force:
        raise KueueError(
            f"{', '.join(str(directory / n) for n in clashes)} already exist{'s' if len(clashes) == 1 else ''} "
            "with other content; use --force to overwrite"
        )
    lines = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in wanted.items():
            path = directory / name
            if existing.get(name) == text:
                lines.append(f"unchanged {path}")
                continue
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            lines.append(f"{'rewrote' if name in existing else 'wrote'} {path}")
    except OSError as exc:
        raise KueueError(f"cannot write the units to {directory}: {exc.strerror}") from None
    units = " ".join(name.removesuffix(".service") for name in wanted)
    lines += [
        f"they run {paths.python} with {paths.config}",
        "next:",
        "  systemctl --user daemon-reload",
        f"  systemctl --user enable --now {units}",
        "  loginctl enable-linger $USER    # keep them running when you log out, and start them at boot",
        f"  journalctl --user -u {units.split()[0]} -f    # their logs",
    ]
    return lines
