"""A real OpenSSH server on 127.0.0.1 for tests: its own host key, one
authorized user key, both made with ssh-keygen in a temporary directory, on
an ephemeral port, logging to a file. Tests that need it skip with the reason
when sshd or the ssh client is not installed."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.cluster import wait_for

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def find_sshd() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def require_ssh_tools() -> str:
    """The sshd path, or skip the test saying what is missing."""
    sshd = find_sshd()
    if sshd is None:
        pytest.skip("sshd is not installed (Debian: apt-get install openssh-server); .ci/run installs it")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install openssh-client)")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        # sshd as root insists on its privilege separation directory, which
        # the package makes only when its service starts.
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError as exc:
            pytest.skip(f"sshd needs /run/sshd, which cannot be created: {exc}")
    return sshd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        # An ssh server speaks first: its version line.
        s.settimeout(5)
        return s.recv(4).startswith(b"SSH-")
    return False


class Sshd:
    def __init__(self, root: Path, sshd: str, accept_env: str = "") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        self.host_key = root / "host_ed25519"
        self.user_key = root / "user_ed25519"
        for key in (self.host_key, self.user_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kueue-test", "-f", str(key)],
                check=True,
            )
        (root / "authorized_keys").write_text(self.user_key.with_suffix(".pub").read_text())
        self.known_hosts = root / "known_hosts"
        self.log = root / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        for _ in range(5):  # another process may take the port between pick and bind
            self.port = _free_port()
            config = root / "sshd_config"
            config.write_text(
                "\n".join(
                    [
                        f"Port {self.port}",
                        "ListenAddress 127.0.0.1",
                        f"HostKey {self.host_key}",
                        f"AuthorizedKeysFile {root / 'authorized_keys'}",
                        f"PidFile {root / 'sshd.pid'}",
                        "StrictModes no",
                        "UsePAM no",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        "PubkeyAuthentication yes",
                        "PermitRootLogin prohibit-password",
                        "PrintMotd no",
                        "LogLevel VERBOSE",
                        *([f"AcceptEnv {accept_env}"] if accept_env else []),
                        "",
                    ]
                )
            )
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [sshd, "-D", "-e", "-f", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            proc = self.proc
            wait_for(lambda p=proc: _accepts(self.port) or p.poll() is not None, 30, "sshd to listen")
            if proc.poll() is None:
                break
        else:
            raise AssertionError(f"sshd did not start:\n{self.log.read_text(errors='replace')}")
        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")

    def client_options(self) -> list[str]:
        """ssh arguments that reach this server (whatever host name is given)
        with the test's key, trusting only its host key."""
        return [
            "-F",
            "/dev/null",
            "-i",
            str(self.user_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "HostName=127.0.0.1",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "CheckHostIP=no",
        ]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
