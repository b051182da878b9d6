"""Building job specs and instances: shell detection, environment, working
directory, --array and --each-line."""

from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest

from kueue_client.errors import UsageError
from kueue_client.spec import (
    array_instances,
    job_env,
    job_spec,
    line_instances,
    logical_cwd,
    needs_shell,
    parse_array,
    parse_resource,
    parse_resources,
    read_line_instances,
)


@pytest.mark.parametrize(
    "command",
    [
        ["make && ./run > log"],
        ["echo one two | wc -w"],
        ["./a.sh; ./b.sh"],
        ["ls *.txt"],
        ["echo $HOME"],
        ["~/bin/run"],
        ["(cd x && make)"],
    ],
)
def test_one_argument_with_shell_syntax_needs_a_shell(command: list[str]) -> None:
    assert needs_shell(command)


@pytest.mark.parametrize(
    "command",
    [
        ["./script.py", "a", "b"],
        ["./script.py"],
        ["echo", "a && b"],  # several arguments: run directly, the && is an argument
        ["python3", "-c", "print(1); print(2)"],
    ],
)
def test_plain_commands_run_directly(command: list[str]) -> None:
    assert not needs_shell(command)


def test_a_script_whose_name_has_a_space_runs_directly(tmp_path: Path) -> None:
    (tmp_path / "my script.sh").write_text("#!/bin/sh\n")
    assert not needs_shell(["my script.sh"], str(tmp_path))
    assert needs_shell(["my other.sh"], str(tmp_path))


def test_spec_fields(tmp_path: Path) -> None:
    spec = job_spec(
        ["make && ./run > log"],
        slots=2,
        cpus=4,
        ram_mb=8000,
        global_resources={"genus": 1},
        stdout_path="out.log",
        stderr_path="null",
        cwd=str(tmp_path),
        env={"PATH": "/usr/bin", "DISPLAY": ":0"},
    )
    assert spec.shell and list(spec.command) == ["make && ./run > log"]
    assert spec.cwd == str(tmp_path)
    assert (spec.resources.slots, spec.resources.cpus, spec.resources.ram_mb) == (2, 4, 8000)
    assert dict(spec.resources.global_resources) == {"genus": 1}
    assert (spec.stdout_path, spec.stderr_path) == ("out.log", "null")
    assert dict(spec.env) == {"PATH": "/usr/bin", "PWD": str(tmp_path)}
    assert spec.user and spec.submit_host == socket.gethostname()
    assert not spec.use_worker_env


def test_forced_shell_joins_several_arguments(tmp_path: Path) -> None:
    spec = job_spec(["echo", "a b", "$X"], shell=True, cwd=str(tmp_path), env={})
    assert spec.shell and list(spec.command) == ["echo 'a b' '$X'"]


def test_no_env_sends_no_environment(tmp_path: Path) -> None:
    spec = job_spec(["env"], use_worker_env=True, cwd=str(tmp_path), env={"PATH": "/bin"})
    assert spec.use_worker_env
    assert dict(spec.env) == {}


def test_host_local_variables_are_left_out() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/a",
        "VIRTUAL_ENV": "/home/a/venv",
        "HOSTNAME": "desk",
        "DISPLAY": ":0",
        "XAUTHORITY": "/x",
        "SSH_AUTH_SOCK": "/tmp/ssh",
        "SSH_CONNECTION": "1 2 3 4",
        "TMUX": "/tmp/tmux",
        "TMUX_PANE": "%1",
        "TERM_SESSION_ID": "x",
        "WINDOWID": "1",
        "XDG_RUNTIME_DIR": "/run/user/1",
        "XDG_SESSION_ID": "3",
        "DBUS_SESSION_BUS_ADDRESS": "unix:",
        "SESSION_MANAGER": "x",
        "SHLVL": "2",
        "OLDPWD": "/",
        "PWD": "/home/a",
        "_": "/usr/bin/kueue",
        "KUEUE_JOB_ID": "5",
        "KUEUE_WORKER": "w",
        "KUEUE_WORKER_ID": "ab" * 16,
        "KUEUE_ATTEMPT": "1",
        "KUEUE_ARRAY_ID": "3",
        "KUEUE_ENTRY": "x",
        "KUEUE_CONFIG": "/etc/kueue.toml",
        "XDG_DATA_HOME": "/d",
    }
    assert job_env(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/home/a",
        "VIRTUAL_ENV": "/home/a/venv",
        "KUEUE_CONFIG": "/etc/kueue.toml",
        "XDG_DATA_HOME": "/d",
    }


def test_undecodable_variables_are_left_out() -> None:
    assert job_env({"GOOD": "x", "BAD": "caf\udce9"}) == {"GOOD": "x"}


def test_default_env_is_this_process_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUEUE_TEST_VARIABLE", "42")
    monkeypatch.setenv("DISPLAY", ":1")
    spec = job_spec(["true"], cwd=str(tmp_path))
    assert spec.env["KUEUE_TEST_VARIABLE"] == "42"
    assert "DISPLAY" not in spec.env


def test_logical_cwd_keeps_a_symlinked_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = tmp_path / "mnt" / "nfs7" / "project"
    real.mkdir(parents=True)
    link = tmp_path / "project"
    link.symlink_to(real)
    monkeypatch.chdir(link)
    monkeypatch.setenv("PWD", str(link))
    assert logical_cwd() == str(link)
    assert job_spec(["true"], env={}).cwd == str(link)
    # $PWD naming another directory (stale, e.g. after os.chdir) is not trusted.
    monkeypatch.setenv("PWD", str(tmp_path))
    assert logical_cwd() == os.getcwd() == str(real.resolve())
    monkeypatch.delenv("PWD")
    assert logical_cwd() == str(real.resolve())


@pytest.mark.parametrize("command", [[], [""], ["  "]])
def test_empty_command_is_a_usage_error(command: list[str], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no command"):
        job_spec(command, cwd=str(tmp_path))


def test_relative_cwd_is_refused() -> None:
    with pytest.raises(UsageError, match="absolute"):
        job_spec(["true"], cwd="relative/dir", env={})


# ------------------------------------------------------------------ --resource


def test_parse_resources() -> None:
    assert parse_resource("genus") == ("genus", 1)
    assert parse_resource("matlab=2") == ("matlab", 2)
    assert parse_resources(["genus", "genus=2", "x=1"]) == {"genus": 3, "x": 1}


@pytest.mark.parametrize("text", ["", "=2", "genus=", "genus=two", "genus=0", "genus=-1"])
def test_bad_resources(text: str) -> None:
    with pytest.raises(UsageError, match="--resource"):
        parse_resource(text)


# ------------------------------------------------------------------ --array


def test_array_ranges_include_the_end() -> None:
    assert list(parse_array("1-5")) == [1, 2, 3, 4, 5]
    assert list(parse_array("0-90:30")) == [0, 30, 60, 90]
    assert list(parse_array("7-7")) == [7]
    assert list(parse_array(" 1 - 3 : 2 ")) == [1, 3]
    assert array_instances("1-3") == [
        {"KUEUE_ARRAY_ID": "1"},
        {"KUEUE_ARRAY_ID": "2"},
        {"KUEUE_ARRAY_ID": "3"},
    ]


@pytest.mark.parametrize(
    "text", ["", "5", "a-b", "1-", "-3", "1-10:0", "10-1", "1-5:2:3", "1..5", "1-999999999"]
)
def test_bad_array_ranges(text: str) -> None:
    with pytest.raises(UsageError, match="--array"):
        parse_array(text)


# ------------------------------------------------------------------ --each-line


def test_each_line_skips_blank_lines_and_keeps_the_text() -> None:
    lines = ["a.txt\n", "\n", "  \n", "with space.txt\r\n", "last"]
    assert line_instances(lines) == [
        {"KUEUE_ENTRY": "a.txt"},
        {"KUEUE_ENTRY": "with space.txt"},
        {"KUEUE_ENTRY": "last"},
    ]


def test_each_line_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "inputs.txt"
    path.write_text("one\ntwo\n")
    assert read_line_instances(str(path)) == [{"KUEUE_ENTRY": "one"}, {"KUEUE_ENTRY": "two"}]
    assert read_line_instances("-", io.StringIO("x\n\ny\n")) == [{"KUEUE_ENTRY": "x"}, {"KUEUE_ENTRY": "y"}]


def test_each_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no non-empty lines"):
        read_line_instances("-", io.StringIO("\n \n"))
    with pytest.raises(UsageError, match="cannot read"):
        read_line_instances(str(tmp_path / "missing.txt"))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_line_instances(str(binary))
    # Standard input as a C locale decodes it: the bytes as surrogates.
    with pytest.raises(UsageError, match="line 2 of standard input is not UTF-8 text"):
        read_line_instances("-", io.StringIO("ok\n" + b"\xff\n".decode("utf-8", "surrogateescape")))


def test_instance_chunks_keep_order_within_the_bounds_of_a_call() -> None:
    from kueue_client.spec import MAX_INSTANCE_ENV_BYTES, MAX_JOBS_PER_CALL, instance_chunks

    many = [{"KUEUE_ARRAY_ID": str(i)} for i in range(2 * MAX_JOBS_PER_CALL + 1)]
    chunks = instance_chunks(many)
    assert [len(c) for c in chunks] == [MAX_JOBS_PER_CALL, MAX_JOBS_PER_CALL, 1]
    assert [env for c in chunks for env in c] == many
    big = "x" * (MAX_INSTANCE_ENV_BYTES // 3)
    wide = [{"KUEUE_ENTRY": big} for _ in range(4)] + [{"KUEUE_ENTRY": "x" * (MAX_INSTANCE_ENV_BYTES + 1)}]
    # Two fit in a call, the third would not; one alone over the bound still goes (the server judges it).
    assert [len(c) for c in instance_chunks(wide)] == [2, 2, 1]
    assert instance_chunks([]) == []
