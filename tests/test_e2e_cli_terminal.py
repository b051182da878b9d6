"""End to end: what `kueue show`, `wait`, `ls` and shell completion look like,
on a real pseudo-terminal (pyte), when piped, and with NO_COLOR, against a
real server and worker."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import REPO, Cluster, wait_for
from tests.pty_session import PtySession

SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colour and style codes


def start(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_worker("w1")
    cluster.wait_workers("w1")


def job_json(cluster: Cluster, job_id: int) -> dict:
    return json.loads(cluster.kueue("show", str(job_id), "--json").stdout)["job"]


def submit(cluster: Cluster, *args: str, cwd: Path) -> list[int]:
    return [int(i) for i in cluster.kueue("cmd", *args, cwd=cwd).stdout.split()]


def blocked_until(gate: Path, before: str = "") -> str:
    """A shell command that waits until `gate` exists: the test decides when jobs end."""
    return f"{before}while [ ! -e {gate} ]; do sleep 0.05; done"


def on_terminal(
    cluster: Cluster, *args: str, cols: int = 100, rows: int = 60, cwd: Path | None = None, **env: str
) -> PtySession:
    return PtySession(cluster.kueue_argv(*args), env={**cluster.env(), **env}, cols=cols, rows=rows, cwd=cwd)


# ------------------------------------------------------------------ show


def test_show_tells_the_history_of_a_job_whose_worker_crashed(cluster: Cluster, tmp_path: Path) -> None:
    start(cluster)
    gate = tmp_path / "gate"
    (job_id,) = submit(
        cluster, blocked_until(gate, 'echo "attempt $KUEUE_ATTEMPT"; echo oops >&2; '), cwd=tmp_path
    )
    wait_for(lambda: job_json(cluster, job_id).get("state") == "JOB_STATE_RUNNING", what="job running")
    cluster.kill_worker("w1")
    cluster.start_worker("w1")  # same identity: it kills the orphan and reports the attempt over
    wait_for(
        lambda: (
            (j := job_json(cluster, job_id)).get("attempt") == 2 and j.get("state") == "JOB_STATE_RUNNING"
        ),
        what="the second attempt to run",
    )
    gate.touch()
    wait_for(lambda: job_json(cluster, job_id).get("state") == "JOB_STATE_SUCCEEDED", what="success")

    first, second = job_json(cluster, job_id)["attempts"]
    assert first["number"] == 1 and first["outcome"] == "ATTEMPT_OUTCOME_WORKER_LOST"
    assert "w1 crashed while it ran" in first["reason"] and first["worker_name"] == "w1"
    assert first["started_at"] and first["ended_at"]
    assert second["number"] == 2 and second["outcome"] == "ATTEMPT_OUTCOME_FINISHED"

    shown = cluster.kueue("show", str(job_id))
    text = shown.stdout
    assert "\x1b" not in text  # piped: plain
    assert re.search(r"attempts:\s+2 \(1 worker lost\)", text)
    history = text[text.index("history:") :]
    order = ["issued", "offered to w1 (attempt 1)", "started on w1", "crashed while it ran (ended when the worker restarted); queued again",
             "offered to w1 (attempt 2)", "finished after"]  # fmt: skip
    positions = [history.index(event) for event in order]
    assert positions == sorted(positions), history
    assert "--- stdout ---\nattempt 2\n" in text and "--- stderr ---\noops\n" in text
    assert f"all of the output: kueue log {job_id}" in text

    # On a terminal: a panel titled with the job and its status, in colour.
    with on_terminal(cluster, "show", str(job_id), cols=120) as screen:
        assert screen.wait_exit() == 0
        assert f"job {job_id}: finished after" in screen.text()
        assert (
            "╭" in screen.text()
            and "crashed while it ran (ended when the worker restarted); queued again" in screen.text()
        )
        assert SGR.search(screen.raw)


# ------------------------------------------------------------------ wait


def test_wait_shows_progress_on_a_terminal_and_nothing_extra_when_piped(
    cluster: Cluster, tmp_path: Path
) -> None:
    start(cluster)
    gate = tmp_path / "gate"
    ids = submit(
        cluster,
        "-c0",  # the machine has as few as 2 cpus: all three must run at once
        "--array",
        "1-3",
        blocked_until(gate, 'if [ "$KUEUE_ARRAY_ID" = 3 ]; then exit 4; fi; '),
        cwd=tmp_path,
    )
    assert len(ids) == 3
    with on_terminal(cluster, "wait", *map(str, ids)) as screen:
        screen.wait_text("1/3 done")
        screen.wait_text("2 running")
        assert "1 failed" in screen.text() and "ETA" in screen.text()
        assert SGR.search(screen.raw)  # coloured
        gate.touch()
        assert screen.wait_exit() == 4  # unchanged: the first failing exit code
        text = screen.text()
    assert f"{ids[0]}: finished after" in text and f"{ids[2]}: failed with code 4" in text
    assert "done" not in text and "ETA" not in text  # the bar is erased at the end

    piped = cluster.kueue("wait", *map(str, ids), check=False)
    assert piped.returncode == 4 and piped.stderr == ""
    lines = piped.stdout.splitlines()
    assert [line.split(" after ")[0] for line in lines] == [
        f"{ids[0]}: finished",
        f"{ids[1]}: finished",
        f"{ids[2]}: failed with code 4",
    ]


def test_ctrl_c_during_wait_erases_the_bar_and_shows_the_cursor(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()  # no worker: the job waits
    (job_id,) = submit(cluster, "true", cwd=tmp_path)
    with on_terminal(cluster, "wait", str(job_id)) as screen:
        screen.wait_text("0/1 done, 1 waiting")
        screen.proc.send_signal(signal.SIGINT)
        assert screen.wait_exit() == 130
        assert screen.text().strip() == ""
        assert screen.raw.endswith(b"\x1b[2K") and b"\x1b[?25h" in screen.raw  # erased, cursor back


def test_cmd_array_wait_shows_progress_and_no_colour_with_no_color(cluster: Cluster, tmp_path: Path) -> None:
    start(cluster)
    gate = tmp_path / "gate"
    with on_terminal(
        cluster, "cmd", "-c0", "--array", "1-2", "--wait", blocked_until(gate), NO_COLOR="1", cwd=tmp_path
    ) as screen:
        screen.wait_text("2 running")
        assert "0/2 done" in screen.text()
        gate.touch()
        assert screen.wait_exit() == 0
        lines = [line for line in screen.text().splitlines() if line]
    assert lines[-2:] == ["0", "0"]  # the exit codes, after the ids
    assert not SGR.search(screen.raw)

    # Piped, `cmd --wait` prints the ids and the exit codes, nothing else.
    piped = cluster.kueue("cmd", "--array", "1-2", "--wait", "true", cwd=tmp_path)
    assert piped.stderr == "" and len(piped.stdout.split()) == 4 and piped.stdout.split()[2:] == ["0", "0"]


# ------------------------------------------------------------------ colours


def test_tables_are_coloured_on_a_terminal_only(cluster: Cluster, tmp_path: Path) -> None:
    cluster.global_resources = {"genus": 2}
    start(cluster)
    (failed,) = submit(cluster, "exit 3", cwd=tmp_path)
    wait_for(lambda: job_json(cluster, failed).get("state") == "JOB_STATE_FAILED", what="the job to fail")
    for verb in (["ls"], ["workers"], ["show", str(failed)], ["show-worker", "w1"], ["resources"]):
        with on_terminal(cluster, *verb) as screen:
            assert screen.wait_exit() == 0
            assert SGR.search(screen.raw), verb
        with on_terminal(cluster, *verb, NO_COLOR="1") as screen:
            assert screen.wait_exit() == 0
            assert b"\x1b" not in screen.raw, verb  # plain text: no escape code at all
        piped = cluster.kueue(*verb)
        assert "\x1b" not in piped.stdout and piped.stdout.strip(), verb
    with on_terminal(cluster, "ls") as screen:
        assert screen.wait_exit() == 0
        red = re.search(rb"\x1b\[31m[^\x1b]*failed with code 3", screen.raw)
        assert red, screen.raw
        assert "failed with code 3" in screen.text()


# ------------------------------------------------------------------ completion


def kueue_on_path(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    launcher = bin_dir / "kueue"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m kueue_client "$@"\n')
    launcher.chmod(0o755)
    return bin_dir


def completion_env(cluster: Cluster, tmp_path: Path, config: Path | None = None) -> dict[str, str]:
    env = cluster.env()
    env["PATH"] = f"{kueue_on_path(tmp_path)}:{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    env["KUEUE_CONFIG"] = str(config or cluster.client_config)
    return env


def completing(
    cluster: Cluster, tmp_path: Path, shell: str, script_name: str, jobs: int = 2
) -> tuple[list[int], Path, dict[str, str]]:
    """A cluster with `jobs` finished jobs, the shell's completion script
    written, and the environment to run it in: the ids, script and env."""
    start(cluster)
    ids = submit(cluster, "--array", f"1-{jobs}", "true", cwd=tmp_path)
    script = tmp_path / script_name
    script.write_text(cluster.kueue("complete", shell).stdout)
    return ids, script, completion_env(cluster, tmp_path)


def bash_complete(script: Path, env: dict[str, str], *words: str) -> subprocess.CompletedProcess[str]:
    """Runs bash's completion function as bash would for `kueue WORDS<TAB>`."""
    quoted = " ".join(f"'{w}'" for w in ["kueue", *words])
    probe = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
        f'COMP_LINE="kueue {" ".join(words)}"; _kueue; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_completes_job_ids_and_worker_names_from_the_server(cluster: Cluster, tmp_path: Path) -> None:
    ids, script, env = completing(cluster, tmp_path, "bash", "kueue.bash", jobs=3)

    def complete(*words: str) -> list[str]:
        result = bash_complete(script, env, *words)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return result.stdout.split()

    assert sorted(map(int, complete("show", ""))) == sorted(ids)
    assert sorted(map(int, complete("wait", str(ids[0]), ""))) == sorted(ids)
    assert set(complete("rm", "-k", "")) == {str(i) for i in ids}
    assert complete("show-worker", "") == ["w1"]
    assert complete("drain", "w") == ["w1"]
    assert set(complete("sh")) == {"show-job", "show", "show-worker"}
    assert "--json" in complete("show", "--j")
    # --config on the command line is used for the ids too.
    env["KUEUE_CONFIG"] = str(tmp_path / "no-such-config.toml")
    assert sorted(map(int, complete("--config", str(cluster.client_config), "show", ""))) == sorted(ids)
    assert sorted(map(int, complete("log", "--config", str(cluster.client_config), ""))) == sorted(ids)


def bash_words(line: str) -> list[str]:
    """COMP_WORDS after `kueue` as bash makes them of `line`: = is one of its
    COMP_WORDBREAKS, so `--config=PATH` is three words, and right after the
    = the word being completed is the = itself."""
    words: list[str] = []
    for token in line.split(" "):
        head, *rest = token.split("=")
        words.append(head)
        for part in rest:
            words.append("=")
            if part:
                words.append(part)
    if words[-1] == "" and len(words) > 1 and words[-2] == "=":
        words.pop()  # the cursor right after =: completing "="
    return words


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_completion_takes_flag_values_written_with_equals(cluster: Cluster, tmp_path: Path) -> None:
    ids, script, env = completing(cluster, tmp_path, "bash", "kueue.bash")
    # Only the --config of the command line can lead to the server.
    env["KUEUE_CONFIG"] = str(tmp_path / "no-such-config.toml")
    config = cluster.client_config

    def complete(line: str) -> list[str]:
        result = bash_complete(script, env, *bash_words(line))
        assert result.returncode == 0 and result.stderr == "", result.stderr
        return result.stdout.split()

    assert sorted(map(int, complete(f"--config={config} show "))) == sorted(ids)
    assert sorted(map(int, complete(f"show --config={config} "))) == sorted(ids)
    assert sorted(map(int, complete(f"wait --config={config} {ids[0]} "))) == sorted(ids)
    # A flag after a value given with = is still a flag; the value itself is a file.
    assert complete("cmd --cpus=2 --no-e") == ["--no-env"]
    assert complete(f"--config={config.parent}/{config.name[:3]}") == [str(config)]
    assert str(config) in complete(f"--config={config.parent}/")
    assert complete(f"show --config={config.parent}/{config.name[:3]}") == [str(config)]


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_completes_job_ids_from_the_server_of_the_command_line(cluster: Cluster, tmp_path: Path) -> None:
    ids, script, env = completing(cluster, tmp_path, "zsh", "_kueue")
    env["KUEUE_CONFIG"] = str(tmp_path / "no-such-config.toml")
    env["HOME"] = str(tmp_path)
    home_config = tmp_path / "home.toml"
    home_config.write_text(cluster.client_config.read_text())

    def offered(*words: str) -> list[str]:
        """What _kueue offers for `kueue WORDS`, run by zsh itself with the
        completion system's builtins standing in as functions that print."""
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ["kueue", *words])
        probe = (
            'compdef() { : }; compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@" }; '
            "_describe() { print -rl -- ${(P)2%%:*} }; _files() { print _files }; "
            f"source {script}; words=({quoted}); CURRENT={len(words) + 1}; PREFIX={words[-1]!r}; _kueue"
        )
        result = subprocess.run(
            ["zsh", "-f", "-c", probe], capture_output=True, text=True, env=env, timeout=60
        )
        assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr
        return result.stdout.split()

    expected = sorted(ids)
    for words in (
        ("--config", str(cluster.client_config), "show", ""),
        (f"--config={cluster.client_config}", "show", ""),
        ("show", "--config", str(cluster.client_config), ""),
        ("log", f"--config={cluster.client_config}", ""),
        ("--config", "~/home.toml", "show", ""),
    ):
        assert sorted(map(int, offered(*words))) == expected, words
    assert "show" in offered("sh") and "list-jobs" in offered("")
    assert {"--json", "--tail", "--config"} <= set(offered("show", "--j"))
    assert offered("show", "--tail", "") == ["_files"]


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_completion_offers_nothing_when_the_server_does_not_answer(
    cluster: Cluster, tmp_path: Path
) -> None:
    # A port that accepts connections and never speaks: the worst case, a hung server.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        cluster.port = silent.getsockname()[1]
        config = cluster.write_config(tmp_path / "silent.toml", port=cluster.port)
        script = tmp_path / "kueue.bash"
        script.write_text(cluster.kueue("complete", "bash", config=config).stdout)
        env = completion_env(cluster, tmp_path, config)
        # Far below the client's usual 30 s timeout: the completion gives up after a few seconds.
        result = bash_complete(script, env, "show", "")
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr == ""
    # Nothing listens at all: as quiet.
    env["KUEUE_CONFIG"] = str(cluster.write_config(tmp_path / "closed.toml", port=cluster.port))
    result = bash_complete(script, env, "show", "")
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr == ""


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_completes_job_ids_from_the_server(cluster: Cluster, tmp_path: Path) -> None:
    ids, script, env = completing(cluster, tmp_path, "fish", "kueue.fish")
    env["HOME"] = str(tmp_path)  # fish writes its own state there

    def offered(line: str) -> tuple[set[str], str]:
        """What fish offers to complete `line`, and all it printed (for failures)."""
        result = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        return {out.split("\t")[0] for out in result.stdout.splitlines()}, result.stdout + result.stderr

    got, printed = offered("kueue show ")
    assert {str(i) for i in ids} <= got, printed
    assert offered("kueue li")[0] >= {"list-jobs", "list-workers"}
    # --config on the command line is used for the ids too (as in bash and zsh).
    env["KUEUE_CONFIG"] = str(tmp_path / "no-such-config.toml")
    for line in (
        f"kueue --config {cluster.client_config} show ",
        f"kueue log --config {cluster.client_config} ",
    ):
        got, printed = offered(line)
        assert {str(i) for i in ids} <= got, line + printed
