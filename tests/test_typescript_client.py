"""The TypeScript client (clients/typescript/) against a real server and
worker: built with tsc, run with node, speaking gRPC over HTTP/2 to our
grpcio server, with and without TLS. Needs node and `npm ci` at the root."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kueue.v1 import common_pb2 as common
from tests.cluster import Cluster, wait_for

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clients" / "typescript"
CLI = PACKAGE / "dist" / "cli.js"
WORKED_EXAMPLE_MAC = "9256908ec002b8cfd74368a20e375f09d15da991829cbc3bd1dd5a097d964139"


@pytest.fixture(scope="module")
def built() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the TypeScript client")
    if not (ROOT / "node_modules" / "@connectrpc" / "connect-node").is_dir():
        pytest.skip("the TypeScript client's packages are not installed; run `npm ci` at the repository root")
    result = subprocess.run(
        [npm, "run", "build", "--workspace", "clients/typescript"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"tsc failed:\n{result.stdout}{result.stderr}"
    return CLI


def node_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without the settings that would override the test's, plus `env`."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("KUEUE_CONFIG", "KUEUE_SHARED_SECRET")}
    full_env.update(env or {})
    return full_env


def kueue_ts(
    cli: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(cli), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=node_env(env)
    )


def one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The single line a failing kueue-ts prints on stderr, after checking its exit status."""
    assert result.returncode == status, result
    assert result.stdout == "", result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result.stdout


@pytest.fixture
def running(cluster: Cluster) -> Iterator[Cluster]:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")
    yield cluster


def test_auth_matches_the_worked_example_of_protos_readme(built: Path) -> None:
    script = (
        "import('./dist/auth.js').then(a => console.log(JSON.stringify({"
        "mac: a.mac('correct horse battery staple', '/kueue.v1.JobService/SubmitJobs', '1700000000',"
        " '0123456789abcdef0123456789abcdef'),"
        "token: a.makeToken('s', '/kueue.v1.JobService/ListJobs', 1700000000.9)})))"
    )
    out = json.loads(ok(subprocess.run(["node", "-e", script], cwd=PACKAGE, capture_output=True, text=True)))
    assert out["mac"] == WORKED_EXAMPLE_MAC
    scheme, stamp, nonce, mac = out["token"].split(" ")
    assert (scheme, stamp) == ("v1", "1700000000")
    assert len(nonce) == 32 and int(nonce, 16) >= 0
    from kueue import auth

    assert mac == auth.mac("s", "/kueue.v1.JobService/ListJobs", stamp, nonce)


def follow(
    argv: list[str], first_line: str, then: Callable[[], object], **popen: Any
) -> tuple[int, str, str]:
    """Run a watching process: once it has printed first_line (and still
    runs), do `then`; its exit status, stdout and stderr once it has ended."""
    watcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        first = watcher.stdout.readline() if watcher.stdout else ""
        assert first.strip() == first_line, first
        assert watcher.poll() is None, "the watch ended before it should have"
        then()
        out, err = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=10)
    return watcher.returncode, first + out, err


def test_submit_watch_output_and_list_from_typescript(built: Path, running: Cluster, tmp_path: Path) -> None:
    cluster = running
    config = str(cluster.client_config)
    work = tmp_path / "work"
    work.mkdir()
    gate = work / "go"
    # Runs in the submitting directory with the submitter's environment, and
    # waits (bounded) for the test to let it finish.
    script = (
        "for i in $(seq 1200); do [ -e go ] && break; sleep 0.05; done; "
        'echo "out from $TS_MARK in $(pwd)"; echo err line >&2; exit 3'
    )
    job_id = ok(
        kueue_ts(built, "--config", config, "submit", script, cwd=work, env={"TS_MARK": "ts"})
    ).strip()
    assert job_id.isdigit(), job_id

    with cluster.client() as client:
        wait_for(
            lambda: client.get_job(int(job_id)).job.state == common.JOB_STATE_RUNNING, what="the job to run"
        )
    code, out, err = follow(
        ["node", str(built), "--config", config, "watch", job_id],
        f"job {job_id}: running on w1 (attempt 1)",
        gate.touch,
    )
    assert code == 3, (out, err)
    assert out.strip().splitlines()[-1] == f"job {job_id}: failed with exit code 3", out

    assert ok(kueue_ts(built, "--config", config, "output", job_id)) == f"out from ts in {work}\n"
    assert ok(kueue_ts(built, "--config", config, "output", "--stderr", job_id)) == "err line\n"

    listed = json.loads(ok(kueue_ts(built, "--config", config, "list", "--json")))
    (job,) = [j for j in listed["jobs"] if j["id"] == job_id]
    assert job["state"] == "JOB_STATE_FAILED" and job["exit_code"] == 3 and job["worker_name"] == "w1"
    assert job["spec"]["cwd"] == str(work)
    table = ok(kueue_ts(built, "--config", config, "list"))
    assert any(line.split("\t")[:2] == [job_id, "failed"] for line in table.splitlines()), table

    waited = kueue_ts(built, "--config", config, "submit", "--wait", "echo", "waited for", cwd=work)
    assert ok(waited) == "waited for\n"
    assert "queued as job" in waited.stderr
    # The Python client sees the TypeScript client's jobs like its own.
    ids = [line.split()[0] for line in cluster.kueue("ls").stdout.splitlines()[1:] if line.split()]
    assert job_id in ids
    # An id that names no job is bad input (2), for watch as for output.
    for verb in ("watch", "output"):
        assert kueue_ts(built, "--config", config, verb, "999999").returncode == 2, verb


def test_submit_wait_exits_as_the_python_client_and_a_shell(
    built: Path, running: Cluster, tmp_path: Path
) -> None:
    """submit --wait exits as `kueue wait` does: 128+N for signal N, 127 and 126
    where the command could not start (Job.start_failure), 1 for any other start failure."""
    config = str(running.client_config)
    (tmp_path / "plain.txt").write_text("echo never\n")  # not executable
    cases = [
        (["sh", "-c", "kill -TERM $$"], 143),
        (["no-such-command-here"], 127),
        (["./plain.txt"], 126),
    ]
    for command, status in cases:
        result = kueue_ts(built, "--config", config, "submit", "--wait", *command, cwd=tmp_path)
        assert result.returncode == status, (command, result)
        job_id = result.stderr.split("queued as job")[1].split()[0]
        python = running.kueue("wait", job_id.strip(".,:;"), check=False)
        assert python.returncode == status, (command, python)


def test_wrong_secret_gives_a_clear_authentication_error(
    built: Path, running: Cluster, tmp_path: Path
) -> None:
    bad = running.write_config(tmp_path / "bad.toml", port=running.port, secret="not the cluster's secret")
    result = kueue_ts(built, "--config", str(bad), "list")
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (
        "kueue-ts: authentication failed: the shared secret does not match the server's "
        f"(check common_settings.shared_secret in {bad})"
    )


def test_flags_instead_of_a_config_file(built: Path, running: Cluster, tmp_path: Path) -> None:
    home = tmp_path / "home"  # no config file anywhere
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    secret = tmp_path / "secret"
    secret.write_text(running.secret + "\n")
    server = f"127.0.0.1:{running.port}"
    out = ok(kueue_ts(built, "--server", server, "--secret-file", str(secret), "list", env=env))
    assert out.splitlines()[0].split("\t")[:2] == ["id", "state"]
    ok(kueue_ts(built, "--server", server, "list", env={**env, "KUEUE_SHARED_SECRET": running.secret}))

    missing = kueue_ts(built, "--server", server, "list", env=env)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing
    assert "no such config file" in missing.stderr and "--secret-file" in missing.stderr
    unreachable = kueue_ts(built, "--server", "127.0.0.1:1", "--secret-file", str(secret), "list", env=env)
    assert unreachable.returncode == 1 and len(unreachable.stderr.strip().splitlines()) == 1, unreachable
    assert "cannot reach the kueue server at 127.0.0.1:1" in unreachable.stderr
    # A refused connection is a wrong address or a stopped server, not TLS.
    assert "tls" not in unreachable.stderr.lower(), unreachable.stderr
    bad_id = kueue_ts(built, "--server", server, "--secret-file", str(secret), "output", "99999", env=env)
    assert bad_id.returncode == 2 and bad_id.stderr.strip() == "kueue-ts: no job 99999", bad_id


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command to make certificates")
def test_typescript_client_over_tls_and_mutual_tls(built: Path, tmp_path: Path) -> None:
    from tests.test_e2e_tls import mutual_tls_cluster

    pki = tmp_path / "pki"
    cluster = mutual_tls_cluster(tmp_path, pki)
    try:
        cluster.start_server()
        cluster.start_worker("w1")
        cluster.wait_workers("w1")
        config = str(cluster.client_config)
        assert ok(
            kueue_ts(built, "--config", config, "submit", "--wait", "echo", "over tls", cwd=tmp_path)
        ) == ("over tls\n")
        refusals = {
            # Without the client certificate the server drops the connection.
            "no client certificate": ({"tls_ca": str(pki / "ca.pem")}, "require a client certificate"),
            # Plaintext against the TLS port.
            "plaintext": ({}, "it may use TLS"),
            # A CA that did not sign the server's certificate.
            "wrong CA": ({"tls_ca": str(pki / "client.pem")}, "TLS with the kueue server"),
        }
        for what, (settings, expected) in refusals.items():
            cluster.common_settings = settings
            path = cluster.write_config(tmp_path / f"{what.replace(' ', '-')}.toml", port=cluster.port)
            refused = kueue_ts(built, "--config", str(path), "list", timeout=60)
            assert refused.returncode == 1, (what, refused)
            assert len(refused.stderr.strip().splitlines()) == 1, (what, refused.stderr)
            assert expected in refused.stderr and str(path) in refused.stderr, (what, refused.stderr)
    finally:
        cluster.close()
        print(cluster.logs())


def submit_gated_job(cli: Path, cluster: Cluster, work: Path) -> str:
    """Queues a job that runs until the test creates work/go (bounded: 2 min),
    then exits 5; returns its id once it runs."""
    script = "for i in $(seq 2400); do [ -e go ] && exit 5; sleep 0.05; done; exit 9"
    job_id = ok(kueue_ts(cli, "--config", str(cluster.client_config), "submit", script, cwd=work)).strip()
    with cluster.client() as client:
        wait_for(
            lambda: client.get_job(int(job_id)).job.state == common.JOB_STATE_RUNNING, what="the job to run"
        )
    return job_id


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_watch_rides_through_a_server_restart(
    built: Path, running: Cluster, tmp_path: Path, sig: signal.Signals
) -> None:
    cluster = running
    work = tmp_path / "work"
    work.mkdir()
    job_id = submit_gated_job(built, cluster, work)
    out_path, err_path = tmp_path / "watch.out", tmp_path / "watch.err"
    running_line = f"job {job_id}: running on w1 (attempt 1)"
    with out_path.open("w") as out, err_path.open("w") as err:
        watcher = subprocess.Popen(
            ["node", str(built), "--config", str(cluster.client_config), "watch", job_id],
            stdout=out,
            stderr=err,
            env=node_env(),
        )
    try:
        wait_for(
            lambda: running_line in out_path.read_text() or watcher.poll() is not None,
            what="the watch to report the job running",
        )
        assert watcher.poll() is None, (out_path.read_text(), err_path.read_text())
        # Stopped gracefully, the server ends the stream with UNAVAILABLE;
        # killed, the connection is reset under it.
        cluster.stop_server(sig)
        wait_for(
            lambda: "retrying" in err_path.read_text() or watcher.poll() is not None,
            what="the watch to say that it waits for the server",
        )
        assert watcher.poll() is None, f"the watch ended when the server went away: {err_path.read_text()}"
        cluster.start_server()  # same port, same data directory
        (work / "go").touch()
        watcher.wait(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=10)
    out, err = out_path.read_text(), err_path.read_text()
    assert watcher.returncode == 5, (out, err)
    lines = out.splitlines()
    assert lines[0] == running_line and lines[-1] == f"job {job_id}: failed with exit code 5", out
    assert "tls" not in err.lower(), err
    lost = [line for line in err.splitlines() if "unreachable" in line]
    assert len(lost) == 1 and "retrying for up to 120 s" in lost[0], err
    assert f"the kueue server at 127.0.0.1:{cluster.port} is back" in err, err


# Watches a job through the library with a short reconnection window.
GIVE_UP_SCRIPT = """
import('./dist/index.js').then(async (k) => {
  const client = new k.KueueClient(k.loadConfig(process.argv[1]));
  try {
    await client.waitForJobs([BigInt(process.argv[2])], (c) => console.log(k.JobState[c.job.state]), {
      reconnectMs: 1000,
      onLost: () => console.error('lost'),
    });
  } catch (err) {
    console.error(err.message);
    process.exitCode = 3;
  } finally {
    client.close();
  }
});
"""


def test_a_watch_gives_up_on_a_server_gone_for_good(built: Path, running: Cluster, tmp_path: Path) -> None:
    cluster = running
    work = tmp_path / "work"
    work.mkdir()
    job_id = submit_gated_job(built, cluster, work)
    code, out, err = follow(
        ["node", "-e", GIVE_UP_SCRIPT, str(cluster.client_config), job_id],
        "RUNNING",
        cluster.stop_server,
        cwd=PACKAGE,
        env=node_env(),
    )
    assert code == 3, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0] == "lost", err
    reason = lines[1]
    assert reason.startswith(
        f"lost the kueue server at 127.0.0.1:{cluster.port} for 1 s while watching; "
        "the jobs may still run (see kueue-ts list)"
    ), reason
    assert "tls" not in reason.lower(), reason


def test_an_option_without_its_value_says_which_and_exits_2(built: Path, tmp_path: Path) -> None:
    # Options are read before any call: no server is needed.
    config = tmp_path / "config.toml"
    config.write_text('[common_settings]\nshared_secret = "s"\nserver_name = "127.0.0.1"\nserver_port = 1\n')
    c = ("--config", str(config))
    cases = {
        "-c": (*c, "submit", "-c"),
        "--cpus": (*c, "submit", "--cpus"),
        "-r": (*c, "submit", "-r"),
        "--ram-mb": (*c, "submit", "--ram-mb=", "echo", "x"),
        "-n": (*c, "list", "-n"),
        "--limit": (*c, "list", "--limit"),
        "--config": ("--config",),
        "--server": (*c, "--server"),
        "--secret-file": (*c, "--secret-file", "--tls-ca", "ca.pem", "list"),
        "--tls-ca": (*c, "--tls-ca"),
        "--tls-cert": (*c, "--tls-cert"),
        "--tls-key": (*c, "--tls-key="),
    }
    for flag, args in cases.items():
        line = one_error_line(kueue_ts(built, *args), 2)
        assert line.startswith(f"kueue-ts: {flag} needs a value: "), (args, line)
        assert line.endswith("(kueue-ts --help for usage)") and "undefined" not in line, (args, line)
    # The next option is not taken for the value (nor is a job queued).
    before_wait = one_error_line(kueue_ts(built, *c, "submit", "-c", "--wait", "echo", "x"), 2)
    assert before_wait == (
        "kueue-ts: -c needs a value: the number of CPUs the job needs, e.g. -c 4 (kueue-ts --help for usage)"
    )
    wrong = one_error_line(kueue_ts(built, *c, "submit", "-c", "many", "echo", "x"), 2)
    assert wrong == "kueue-ts: -c needs a whole number, not many (kueue-ts --help for usage)"


# A command line with a mistake of its own, and the one line that names it.
BAD_COMMAND_LINES = {
    ("submit", "-c"): "-c needs a value: the number of CPUs the job needs, e.g. -c 4",
    ("submit", "--cpus=", "echo", "x"): "--cpus needs a value: the number of CPUs the job needs, e.g. -c 4",
    ("submit", "-c", "many", "echo", "x"): "-c needs a whole number, not many",
    ("submit", "--bogus", "echo", "x"): "unknown option for submit: --bogus",
    ("submit",): "submit needs a command",
    ("list", "-n"): "-n needs a value: how many of the most recent jobs to list, e.g. -n 20",
    ("list", "--bogus"): "unknown argument for list: --bogus",
    ("watch",): "watch needs job ids",
    ("watch", "7", "seven"): "not a job id: seven",
    ("output", "x7"): "not a job id: x7",
    ("output",): "output needs one job id",
    ("frob",): "unknown verb frob",
    ("--bogus", "list"): "unknown option --bogus",
    ("--server", "nowhere", "list"): "--server must be HOST:PORT, not nowhere",
}


def test_a_bad_command_line_is_blamed_before_the_config_file(built: Path, tmp_path: Path) -> None:
    # The command line is checked before the config file is read: the
    # user's own typo is named even when the config file is broken or
    # missing too (and no server is needed).
    broken = tmp_path / "broken.toml"
    broken.write_text("[common_settings\nshared_secret = \n")
    missing = tmp_path / "missing.toml"
    home = tmp_path / "home"  # no config file anywhere
    home.mkdir()
    no_file = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    configs = {
        "broken --config": (("--config", str(broken)), {}),
        "broken $KUEUE_CONFIG": ((), {"KUEUE_CONFIG": str(broken)}),
        "missing --config": (("--config", str(missing)), {}),
        "no config file": ((), no_file),
    }
    for what, (config_args, env) in configs.items():
        for args, problem in BAD_COMMAND_LINES.items():
            line = one_error_line(kueue_ts(built, *config_args, *args, env=env), 2)
            assert line == f"kueue-ts: {problem} (kueue-ts --help for usage)", (what, args, line)
    # A right command line still meets the config file's problem, as before.
    assert one_error_line(kueue_ts(built, "--config", str(broken), "list"), 2).startswith(
        f"kueue-ts: {broken}: not valid TOML: "
    )
    assert one_error_line(kueue_ts(built, "--config", str(missing), "submit", "-c", "2", "echo", "x"), 2) == (
        f"kueue-ts: {missing}: no such config file"
    )


def test_help_needs_no_config_file(built: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[common_settings\n")
    c = ("--config", str(broken))
    for args in [
        ("--help",),
        (*c, "-h"),
        (*c, "submit", "--help"),
        (*c, "list", "-n", "3", "-h"),
        (*c, "watch", "--help"),
    ]:
        result = kueue_ts(built, *args)
        assert result.returncode == 0 and result.stderr == "", (args, result)
        assert result.stdout.startswith("usage: kueue-ts "), (args, result.stdout)
    # After the command's first word, --help is the command's.
    assert one_error_line(kueue_ts(built, *c, "submit", "ls", "--help"), 2).startswith(
        f"kueue-ts: {broken}: "
    )


def test_a_wrong_secret_is_blamed_on_where_it_came_from(
    built: Path, running: Cluster, tmp_path: Path
) -> None:
    good = str(running.client_config)
    wrong = "not the cluster's secret"
    mismatch = "kueue-ts: authentication failed: the shared secret does not match the server's "
    from_env = kueue_ts(built, "--config", good, "list", env={"KUEUE_SHARED_SECRET": wrong})
    assert one_error_line(from_env, 1) == (
        mismatch + "(check KUEUE_SHARED_SECRET, which is used instead of the config file's shared_secret)"
    )

    home = tmp_path / "home"  # no config file anywhere
    home.mkdir()
    no_file = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "KUEUE_SHARED_SECRET": wrong}
    server = f"127.0.0.1:{running.port}"
    env_only = kueue_ts(built, "--server", server, "list", env=no_file)
    assert one_error_line(env_only, 1) == mismatch + "(check KUEUE_SHARED_SECRET)"

    secret_file = tmp_path / "secret"
    secret_file.write_text(wrong + "\n")
    from_file = kueue_ts(built, "--config", good, "--secret-file", str(secret_file), "list")
    assert one_error_line(from_file, 1) == (
        mismatch
        + f"(check --secret-file {secret_file}, which is used instead of the config file's shared_secret)"
    )

    bad = running.write_config(tmp_path / "bad.toml", port=running.port, secret=wrong)
    from_config = kueue_ts(built, "--config", str(bad), "list")
    assert one_error_line(from_config, 1) == mismatch + f"(check common_settings.shared_secret in {bad})"


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl command to make certificates")
def test_tls_against_a_plaintext_server_says_so(built: Path, running: Cluster, tmp_path: Path) -> None:
    from tests.test_e2e_tls import make_pki

    make_pki(tmp_path / "pki")
    running.common_settings = {"tls_ca": str(tmp_path / "pki" / "ca.pem")}
    config = running.write_config(tmp_path / "tls.toml", port=running.port)
    line = one_error_line(kueue_ts(built, "--config", str(config), "list"), 1)
    assert line.startswith(f"kueue-ts: TLS with the kueue server at 127.0.0.1:{running.port} failed: "), line
    assert line.endswith(f"if it runs without TLS, remove tls_ca (or --tls-ca) from {config}"), line
