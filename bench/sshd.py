"""A throw-away sshd on 127.0.0.1 for comparing `kueue run` with `ssh host cmd`.

Uses the running user's existing `ssh localhost` if that works without a
password; otherwise starts /usr/sbin/sshd on a free port with a fresh host
key and a fresh client key allowed only by its own AuthorizedKeysFile, all in
a temporary directory (nothing in ~/.ssh is touched). None when neither works.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

QUIET = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]  # fmt: skip


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run([*argv, "true"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ssh_command(work: Path) -> Iterator[tuple[list[str] | None, str]]:
    """(argv prefix that runs a command over ssh on this machine, how), or (None, why not)."""
    if not shutil.which("ssh"):
        yield None, "ssh not installed"
        return
    existing = ["ssh", *QUIET, "localhost"]
    if _works(existing):
        yield existing, "ssh localhost"
        return
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or not shutil.which("ssh-keygen"):
        yield None, "no sshd to start"
        return
    d = work / "sshd"
    d.mkdir(mode=0o700)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = _free_port()
    config = d / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\n"
    )
    with contextlib.suppress(OSError):
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory, when root
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(d / "log", "wb"),  # noqa: SIM115
    )
    argv = ["ssh", *QUIET, "-i", str(d / "client_key"), "-p", str(port), "127.0.0.1"]
    try:
        deadline = time.monotonic() + 10
        while not _works(argv):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = (d / "log").read_text(errors="replace").strip().splitlines()[-1:] or ["no answer"]
                yield None, f"could not start sshd: {why[0][:200]}"
                return
            time.sleep(0.2)
        yield argv, "ssh to a private sshd on 127.0.0.1"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
