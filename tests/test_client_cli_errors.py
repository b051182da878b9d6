"""Errors of the `kueue` command: one line `kueue: ...` on stderr, exit 2 for
bad input and 1 otherwise, never a traceback. No server is needed."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

import kueue
from kueue.config import template
from kueue_client.cli import build_parser, main, verb_named
from kueue_client.completion import script
from kueue_client.errors import from_rpc_error

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    text = template("t" * 64)
    text = text.replace('server_name = "localhost"', 'server_name = "127.0.0.1"')
    text = text.replace("server_port = 11236", f"server_port = {free_port()}")
    text = text.replace('data_dir = ""', f'data_dir = "{tmp_path / "data"}"')
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def port_of(config: Path) -> int:
    line = next(line for line in config.read_text().splitlines() if line.startswith("server_port"))
    return int(line.split("=")[1])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("kueue: "), err
    assert "Traceback" not in err
    return lines[0]


def test_empty_command(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = run(capsys, "--config", str(config), "cmd")
    assert code == 2 and out == ""
    assert "no command given" in one_error_line(err)
    code, _, err = run(capsys, "--config", str(config), "cmd", "-c", "2", "--")
    assert code == 2 and "no command given" in one_error_line(err)


def test_server_unreachable_names_the_address(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    for argv in (
        ["ls"],
        ["cmd", "echo", "hi"],
        ["wait", "3"],
        ["workers"],
        ["show", "1"],
        ["rm", "1", "2", "3"],
    ):
        code, out, err = run(capsys, "--config", str(config), *argv)
        line = one_error_line(err)
        assert code == 1, argv
        assert out == ""
        assert f"cannot reach the kueue server at 127.0.0.1:{port_of(config)}" in line
        assert str(config) in line


def test_run_without_a_command(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    for argv in (["run"], ["run", "-c", "2", "--quiet", "--"]):
        code, out, err = run(capsys, "--config", str(config), *argv)
        assert code == 2 and out == ""
        assert "no command given (usage: kueue run" in one_error_line(err)


def test_run_options_stop_at_the_command() -> None:
    options = [
        "-j",
        "2",
        "-c",
        "3",
        "-r",
        "100",
        "--resource",
        "genus=2",
        "--no-env",
        "-q",
        "--kill-on-detach",
    ]
    args = build_parser().parse_args(["run", *options, "python", "-c", "x", "-q"])
    assert (args.slots, args.cpus, args.ram, args.resource) == (2, 3, 100, ["genus=2"])
    assert args.no_env and args.quiet and args.kill_on_detach
    assert args.command == ["python", "-c", "x", "-q"]


def test_run_with_the_server_unreachable_exits_255(config: Path, tmp_path: Path) -> None:
    # 255 like ssh: kueue could not run the job, which no job exit code says.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("KUEUE_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "kueue_client", "--config", str(config), "run", "echo", "hi"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 255
    assert result.stdout == ""
    assert f"cannot reach the kueue server at 127.0.0.1:{port_of(config)}" in one_error_line(result.stderr)


# Stands for a Ctrl-C that lands while `kueue` is still importing what it
# needs: an import hook raises KeyboardInterrupt as that module is loaded.
INTERRUPTED_IMPORT = """
import sys
class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupt())
sys.argv = ["kueue", "--config", {config!r}, "ls"]
from kueue_client.cli import run
run()
"""


@pytest.mark.parametrize("module", ["kueue_client.context", "kueue_client.verbs"])
def test_a_ctrl_c_while_kueue_imports_exits_130_without_a_traceback(
    config: Path, tmp_path: Path, module: str
) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("KUEUE_CONFIG", None)
    code = INTERRUPTED_IMPORT.format(module=module, config=str(config))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (130, "", "")


@pytest.mark.parametrize("verb", [["ls"], ["cmd", "true"]])  # cmd's submission has a path of its own
def test_server_unreachable_as_a_process(config: Path, tmp_path: Path, verb: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("KUEUE_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "kueue_client", "--config", str(config), *verb],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"cannot reach the kueue server at 127.0.0.1:{port_of(config)}" in one_error_line(result.stderr)


def test_config_from_environment(
    capsys: pytest.CaptureFixture[str], config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUEUE_CONFIG", str(config))
    code, _, err = run(capsys, "ls")
    assert code == 1 and f"127.0.0.1:{port_of(config)}" in one_error_line(err)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["cmd", "--array", "10-1", "echo"], "bad --array range '10-1'"),
        (["cmd", "--array", "x", "echo"], "bad --array range"),
        (["cmd", "--array", "1-2", "--each-line", "f", "echo"], "not allowed with"),
        (["cmd", "--resource", "genus=0", "echo"], "--resource"),
        (["cmd", "-c", "many", "echo"], "not a whole number"),
        (["cmd", "-c", "-1", "echo"], "-c"),
        (["show", "abc"], "not a job id: 'abc'"),
        (["show"], "required"),
        (["wait", "0"], "not a job id"),
        (["rm"], "required"),
        (["ls", "--bogus"], "unrecognized arguments"),
        (["ls", "-n", "x"], "not a whole number"),
        (["frobnicate"], "invalid choice"),
        (["complete", "tcsh"], "invalid choice"),
        (["complete"], "which shell"),
        # Numbers past what a job id or a protobuf field holds.
        (["show", "99999999999999999999"], "not a job id"),
        (["rm", "1_000"], "not a job id: '1_000'"),
        (["wait", "+5"], "not a job id"),
        (["cmd", "-c", "1000000000000", "true"], "too large: '1000000000000' (at most 4294967295)"),
        (["cmd", "-j", "5000000000", "true"], "too large"),
        (["cmd", "-r", "99999999999999999999", "true"], "too large"),
        (["ls", "-n", "99999999999999999999"], "too large"),
        (["cmd", "--resource", "genus=99999999999999999999", "true"], "N must be at most 4294967295"),
        (["cmd", "--array", "1-99999999999999999999", "true"], "more than 1000000 jobs"),
        # Bytes that are not UTF-8 (as Python hands them over: surrogates).
        (["cmd", "-o", "out\udcff", "true"], "the stdout path contains bytes that are not UTF-8"),
        (["cmd", "-e", "err\udcff", "true"], "the stderr path contains bytes that are not UTF-8"),
        (["cmd", "--resource", "gen\udcffus", "true"], "not UTF-8"),
        (["drain", "node\udcff"], "not UTF-8"),
        (["show-worker", "node\udcff"], "not UTF-8"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], config: Path, argv: list[str], expected: str
) -> None:
    code, out, err = run(capsys, "--config", str(config), *argv)
    assert code == 2, err
    assert out == ""
    assert expected in one_error_line(err)


def test_a_working_directory_not_in_utf8_is_one_line(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = os.fsdecode(bytes(tmp_path) + b"/bad\xffdir")
    os.mkdir(odd)
    monkeypatch.chdir(odd)
    monkeypatch.delenv("PWD", raising=False)
    code, out, err = run(capsys, "--config", str(config), "cmd", "true")
    assert (code, out) == (2, "")
    assert "the working directory's path contains bytes that are not UTF-8" in one_error_line(err)


def test_each_line_with_a_nul_byte_names_its_line(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    lines = tmp_path / "lines"
    lines.write_bytes(b"a\nb\x00c\n")
    code, _, err = run(capsys, "--config", str(config), "cmd", "--each-line", str(lines), "echo")
    assert code == 2
    assert f"line 2 of {lines} contains a NUL byte" in one_error_line(err)


def test_a_missing_config_named_by_config_is_one_line_and_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "typo.toml"
    code, _, err = run(capsys, "--config", str(missing), "ls")
    assert code == 2
    assert f"{missing}: no such config file (named by --config)" in one_error_line(err)
    assert not missing.exists()


def test_each_line_file_missing(capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "--config", str(config), "cmd", "--each-line", str(tmp_path / "nope"), "echo")
    assert code == 2 and "cannot read" in one_error_line(err)


def test_bad_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[common_settings]\nserver_port = 'eleven'\n")
    code, _, err = run(capsys, "--config", str(bad), "ls")
    # Bad input, as kueue_server and kueue_worker exit for the same file.
    assert code == 2
    assert "server_port" in one_error_line(err) and str(bad) in err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"kueue {kueue.__version__}"
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "cmd" in out and "list-jobs (ls)" in out


def _all_verbs() -> list[str]:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(subparsers.choices)


# Every verb and alias the parser knows, so a new verb cannot skip its help.
VERBS = _all_verbs()


def _subparser(parser: argparse.ArgumentParser, verb: str) -> argparse.ArgumentParser:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[verb]


def test_a_parser_of_one_verb_is_that_verb_s_parser() -> None:
    """main() builds the parser of the verb named alone (a fast `kueue cmd`):
    it must know every verb, and make of each what the whole parser makes."""
    whole = build_parser()
    for verb in VERBS:
        alone = build_parser(verb)
        assert _subparser(alone, verb).format_help() == _subparser(whole, verb).format_help(), verb
        # Only that verb (and its aliases): nothing else was built.
        built = next(a for a in alone._actions if isinstance(a, argparse._SubParsersAction)).choices
        assert {_subparser(alone, v) for v in built} == {_subparser(alone, verb)}, verb
    for argv in (
        ["cmd", "-c", "2", "-r", "100", "--array", "1-3", "-w", "sh", "-c", "x -c 3"],
        ["--config", "/x.toml", "run", "-q", "-n", "python", "-c", "1"],
        ["ls", "-n", "5", "-p", "-o", "-r", "-s", "-f", "-c", "--json"],
        ["show", "7", "--tail", "100", "--config", "/y.toml"],
        ["rm", "--kill", "1", "2"],
    ):
        assert build_parser(verb_named(argv)).parse_args(argv) == whole.parse_args(argv), argv


def test_the_verb_named_is_found_past_config_only() -> None:
    assert verb_named(["cmd", "true"]) == "cmd"
    assert verb_named(["--config", "c.toml", "ls", "-n", "3"]) == "ls"
    assert verb_named(["--config=c.toml", "workers"]) == "workers"
    # The whole parser answers these, as before: help, version, options it does not know, nothing.
    for argv in (["--help"], ["--version"], ["-x", "cmd"], [], ["--config"]):
        assert verb_named(argv) is None, argv
    # A word that is no verb gets the whole parser too, and so its error.
    assert verb_named(["cnd", "true"]) == "cnd"
    assert build_parser("cnd").format_help() == build_parser().format_help()


def test_every_verb_of_the_reference_is_there() -> None:
    reference = ["cmd", "list-jobs", "show-job", "wait-job", "remove-job", "clean-jobs", "list-workers",
                 "show-worker", "list-resources", "complete"]  # fmt: skip
    ours = ["run", "ls", "show", "log", "output", "wait", "rm", "clean", "workers", "resources", "drain",
            "undrain", "up", "down", "install-units"]  # fmt: skip
    assert set(reference + ours) <= set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_an_example(capsys: pytest.CaptureFixture[str], verb: str) -> None:
    code, out, err = run(capsys, verb, "--help")
    assert code == 0 and err == ""
    assert out.startswith("usage: kueue ")
    assert "example" in out and "kueue " in out.split("example")[-1]


def test_ls_flags_as_the_reference() -> None:
    args = build_parser().parse_args(["ls", "-n", "5", "-p", "-o", "-r", "-s", "-f", "-c", "--json"])
    assert args.n == 5 and args.json
    assert all(getattr(args, s) for s in ("pending", "offered", "running", "succeeded", "failed", "canceled"))


def test_cmd_options_stop_at_the_command() -> None:
    args = build_parser().parse_args(
        ["cmd", "-j", "2", "-c", "3", "-r", "100", "-w", "python", "-c", "x", "-w"]
    )
    assert (args.slots, args.cpus, args.ram, args.wait) == (2, 3, 100, True)
    assert args.command == ["python", "-c", "x", "-w"]


def test_config_is_accepted_after_the_verb() -> None:
    args = build_parser().parse_args(["--config", "a.toml", "ls", "--config", "b.toml"])
    assert args.config == "b.toml"
    assert build_parser().parse_args(["--config", "a.toml", "ls"]).config == "a.toml"


# ------------------------------------------------------------------ rpc errors


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "expected", "status"),
    [
        (grpc.StatusCode.NOT_FOUND, "no job 42", "no job 42", 2),
        (grpc.StatusCode.INVALID_ARGUMENT, "unknown global resource 'x'", "unknown global resource 'x'", 2),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "job 3 is running on w1; use --kill to stop it",
            "job 3 is running on w1; use --kill to stop it",
            1,
        ),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many jobs", "too many jobs", 1),
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "the shared secret does not match the server's",
            "the shared secret does not match the server's "
            "(check common_settings.shared_secret in /etc/k.toml)",
            1,
        ),
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "replayed authentication token refused",
            "the shared secret does not match the server's "
            "(check common_settings.shared_secret in /etc/k.toml): replayed authentication token refused",
            1,
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses",
            "cannot reach the kueue server at h:1 (is kueue_server running? "
            "server_name/server_port are set in /etc/k.toml)",
            1,
        ),
        (
            # The server went during a call: not a TLS mismatch, as "Socket closed" alone is.
            grpc.StatusCode.UNAVAILABLE,
            "Stream removed (Socket closed)",
            "lost the connection to the kueue server at h:1 (did it stop? ask again once it is back)",
            1,
        ),
    ],
)
def test_rpc_errors_become_one_clear_line(
    code: grpc.StatusCode, details: str, expected: str, status: int
) -> None:
    err = from_rpc_error(FakeRpcError(code, details), "h:1", "/etc/k.toml")
    assert str(err) == expected
    assert err.exit_status == status
    assert err.code == code.name


def test_clock_skew_is_not_called_a_wrong_secret() -> None:
    err = from_rpc_error(
        FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "clock skew of +400 s between client and server"),
        "h:1",
        None,
    )
    assert "secret" not in str(err) and "clock skew" in str(err)


def test_multi_line_details_become_one_line() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad\nthing"), "h:1", None)
    assert str(err) == "bad thing"


# ------------------------------------------------------------------ completion


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_every_verb_and_parse(shell: str, tmp_path: Path) -> None:
    text = script(shell, build_parser())
    for verb in VERBS:
        assert verb in text
    for flag in ("each-line", "array", "kill", "json"):
        assert (f"-l {flag}" if shell == "fish" else f"--{flag}") in text
    if shutil.which(shell):
        path = tmp_path / f"kueue.{shell}"
        path.write_text(text)
        checked = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stderr


def test_bash_completion_completes_verbs_and_flags(tmp_path: Path) -> None:
    if not shutil.which("bash"):
        pytest.skip("no bash")
    path = tmp_path / "kueue.bash"
    path.write_text(script("bash", build_parser()))

    def complete(*words: str) -> list[str]:
        line = " ".join(["kueue", *words])
        probe = (
            f"source {path}; COMP_WORDS=(kueue {' '.join(words)}); COMP_CWORD={len(words)}; "
            f'COMP_LINE="{line}"; _kueue; printf "%s\\n" "${{COMPREPLY[@]}}"'
        )
        result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert "list-jobs" in complete("li")
    assert set(complete("ls", "--")) >= {"--json", "--running", "--pending"}
    assert "--each-line" in complete("cmd", "--e")
    assert complete("cmd", "echo", "--e") == []  # the command's own arguments


def _fake_kueue(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `kueue` on PATH standing in for the server's answer to
    `kueue complete --ids`: it logs its arguments and prints two ids."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    fake = bin_dir / "kueue"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nprintf "101\\n102\\n"\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return env, calls


def test_bash_completion_asks_the_server_for_ids_only_for_a_non_flag_word(tmp_path: Path) -> None:
    if not shutil.which("bash"):
        pytest.skip("no bash")
    path = tmp_path / "kueue.bash"
    path.write_text(script("bash", build_parser()))
    env, calls = _fake_kueue(tmp_path)

    def complete(*words: str) -> list[str]:
        quoted = " ".join(f"'{w}'" for w in ["kueue", *words])
        probe = (
            f"source {path}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
            f'COMP_LINE="kueue {" ".join(words)}"; _kueue; printf "%s\\n" "${{COMPREPLY[@]}}"'
        )
        result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    def asked() -> list[str]:
        text = calls.read_text() if calls.exists() else ""
        calls.unlink(missing_ok=True)
        return text.splitlines()

    # Flags, and the value of a flag: completed without the server.
    assert complete("show", "-") == ["-h", "--help", "--config", "--tail", "--json"]
    assert complete("show", "--j") == ["--json"]
    assert complete("log", "--tail", "") == []
    assert complete("rm", "3", "--k") == ["--kill"]
    assert asked() == []
    # An id: asked of the server, with the --config of the command line.
    assert complete("show", "") == ["101", "102"]
    assert asked() == ["complete --ids jobs"]
    assert complete("--config", "/etc/k.toml", "drain", "1") == ["101", "102"]
    assert asked() == ["--config /etc/k.toml complete --ids workers"]
    # Verbs without ids never ask.
    assert complete("ls", "") == []
    assert asked() == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_offers_the_shells_after_complete(shell: str, tmp_path: Path) -> None:
    text = script(shell, build_parser())
    if shell == "bash":
        assert (
            'complete)\n            flags="-h --help --config"; valued="--config"; ids=""; choices="bash zsh fish";;'
            in text
        )
    elif shell == "zsh":
        assert "        complete)\n" in text
        assert "else compadd -- bash zsh fish; fi;;" in text.split("        complete)\n")[1].split("\n")[3]
    else:
        assert (
            "complete -c kueue -n '__fish_seen_subcommand_from complete' -a 'bash zsh fish'"
            in text.splitlines()
        )
    if shell != "bash" or not shutil.which("bash"):
        return  # zsh and fish are not installed here: their text is what can be checked
    path = tmp_path / "kueue.bash"
    path.write_text(text)
    for word, offered in (("", "bash zsh fish"), ("z", "zsh"), ("--", "--help --config")):
        probe = (
            f"source {path}; COMP_WORDS=(kueue complete '{word}'); COMP_CWORD=2; "
            f'COMP_LINE="kueue complete {word}"; _kueue; echo "${{COMPREPLY[@]}}"'
        )
        result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == offered, (word, result.stdout, result.stderr)


def test_fish_asks_for_ids_with_the_config_of_the_command_line() -> None:
    # fish is not installed here (its end-to-end test is skipped): check that
    # every ids completion goes through the function that passes --config on.
    text = script("fish", build_parser())
    id_lines = [line for line in text.splitlines() if "--ids" in line or "__kueue_ids" in line]
    function = text.split("function __kueue_ids", 1)[1].split("\nend\n", 1)[0]
    assert "(commandline -opc)" in function
    assert "case --config" in function and "case '--config=*'" in function
    assert function.rstrip().endswith("kueue $config complete --ids $argv[1] 2>/dev/null")
    completions = [line for line in id_lines if line.startswith("complete ")]
    assert completions and all("-a '(__kueue_ids " in line for line in completions)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_output_to_a_full_disk_is_one_line(config: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "kueue_client", "--config", str(config), "complete", "bash"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr == "kueue: cannot write the output: No space left on device\n"
