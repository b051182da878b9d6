"""Optional TLS, and mutual TLS, with certificates made by the test (openssl)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster import Cluster

pytestmark = pytest.mark.skipif(
    not shutil.which("openssl"), reason="needs the openssl command to make certificates"
)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=kueue test CA", cwd=d)  # fmt: skip
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=kueue {name}", cwd=d)  # fmt: skip
        ext = d / f"{name}.ext"
        ext.write_text(extra + "\n" if extra else "basicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", str(ext), cwd=d)  # fmt: skip


def test_tls_cluster_runs_jobs_and_plaintext_client_gets_a_clear_error(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    make_pki(pki)
    cluster = Cluster(tmp_path / "c", tls_cert=str(pki / "server.pem"), tls_key=str(pki / "server.key"))
    cluster.common_settings = {"tls_ca": str(pki / "ca.pem")}
    try:
        cluster.start_server()
        assert "with TLS" in cluster.server_log()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        result = cluster.kueue("cmd", "--wait", "echo", "over tls", cwd=tmp_path)
        assert result.stdout.split()[-1] == "0"
        # A client without tls_ca speaks plaintext to a TLS server.
        cluster.common_settings = {}
        plain = cluster.write_config(tmp_path / "plain.toml", port=cluster.port)
        refused = cluster.kueue("ls", config=plain, check=False)
        assert refused.returncode != 0
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "TLS" in refused.stderr and "tls_ca" in refused.stderr
    finally:
        cluster.close()
        print(cluster.logs())


def mutual_tls_cluster(tmp_path: Path, pki: Path) -> Cluster:
    """A cluster whose server requires client certificates, clients holding one."""
    make_pki(pki)
    cluster = Cluster(
        tmp_path / "c",
        tls_cert=str(pki / "server.pem"),
        tls_key=str(pki / "server.key"),
        tls_require_client_cert=True,
    )
    cluster.common_settings = {
        "tls_ca": str(pki / "ca.pem"),
        "tls_client_cert": str(pki / "client.pem"),
        "tls_client_key": str(pki / "client.key"),
    }
    return cluster


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    cluster = mutual_tls_cluster(tmp_path, pki)
    try:
        cluster.start_server()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        assert cluster.kueue("cmd", "--wait", "true", cwd=tmp_path).stdout.split()[-1] == "0"
        cluster.common_settings = {"tls_ca": str(pki / "ca.pem")}
        no_cert = cluster.write_config(tmp_path / "nocert.toml", port=cluster.port)
        refused = cluster.kueue("ls", config=no_cert, check=False)
        assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
        assert "certificate" in refused.stderr
    finally:
        cluster.close()
        print(cluster.logs())
