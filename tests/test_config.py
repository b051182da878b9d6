"""The shared config file (kueue/config.py): location, template, parsing, errors.

Every test runs with HOME, XDG_CONFIG_HOME, XDG_DATA_HOME and KUEUE_CONFIG
pointed into tmp_path, so the real home directory is never read or written.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import pytest

from kueue import config
from kueue.config import Config, ConfigError

SECRET = "a" * 64


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUEUE_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def parse(text: str, path: str = "/etc/kueue/test.toml") -> Config:
    return config.parse(text, Path(path))


def with_secret(text: str = "") -> str:
    return f'[common_settings]\nshared_secret = "{SECRET}"\n' + text


# ---------------------------------------------------------------- location and template


def test_first_load_writes_the_template_with_a_random_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "xdg" / "kueue" / "config.toml"
    assert not path.exists()

    cfg = config.load()

    assert path.is_file()
    assert cfg.path == path
    secret = cfg.common_settings.shared_secret
    assert re.fullmatch(r"[A-Za-z0-9]{64}", secret)
    assert f'shared_secret = "{secret}"' in path.read_text()
    assert str(path) in capsys.readouterr().err
    # The file holds the secret: nobody else may read it.
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_template_is_written_once_and_then_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "deep" / "dir"))
    path = tmp_path / "deep" / "dir" / "kueue" / "config.toml"
    first = config.load()
    assert first.path == path
    text = path.read_text()
    second = config.load()
    assert path.read_text() == text
    assert second.common_settings.shared_secret == first.common_settings.shared_secret


def test_each_template_gets_its_own_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "a"))
    a = config.load().common_settings.shared_secret
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "b"))
    b = config.load().common_settings.shared_secret
    assert a != b


def test_a_missing_file_named_by_config_is_an_error_not_a_new_secret(tmp_path: Path) -> None:
    path = tmp_path / "typo" / "confg.toml"
    with pytest.raises(ConfigError) as excinfo:
        config.load(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: no such config file (named by --config)"), message
    assert "\n" not in message
    assert not path.parent.exists()


def test_a_config_file_not_in_utf8_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ConfigError) as excinfo:
        config.load(path)
    assert str(excinfo.value) == (
        f"{path}: not a text file in UTF-8 (byte 0 cannot be decoded); is it the config file?"
    )


def test_random_secret() -> None:
    secrets = {config.random_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9]{64}", s) for s in secrets)


def test_no_template_when_create_is_false(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as excinfo:
        config.load(path, create=False)
    assert str(path) in str(excinfo.value)
    assert not path.exists()


def test_template_parses_to_exactly_the_defaults() -> None:
    cfg = parse(config.template(SECRET))
    assert cfg.warnings == []
    expected = Config()
    expected.common_settings.shared_secret = SECRET
    for section in (
        "common_settings",
        "server_settings",
        "worker_settings",
        "client_settings",
        "restart_workers",
    ):
        assert getattr(cfg, section) == getattr(expected, section), section
    assert cfg.global_resources == {}


def test_template_mentions_every_key() -> None:
    text = config.template(SECRET)
    for section in (
        "common_settings",
        "server_settings",
        "worker_settings",
        "client_settings",
        "restart_workers",
    ):
        assert f"[{section}]" in text
        for f in dataclasses.fields(getattr(Config(), section)):
            assert re.search(rf"^{f.name} = ", text, re.MULTILINE), (
                f"{section}.{f.name} missing from template"
            )
    assert "[global_resources]" in text


def test_default_path_is_under_home_config(isolated_home: Path) -> None:
    assert config.resolve_config_path() == isolated_home / ".config" / "kueue" / "config.toml"


def test_precedence_explicit_then_kueue_config_then_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    env = tmp_path / "env.toml"
    explicit = tmp_path / "explicit.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert config.resolve_config_path() == xdg / "kueue" / "config.toml"
    monkeypatch.setenv("KUEUE_CONFIG", str(env))
    assert config.resolve_config_path() == env
    assert config.resolve_config_path(explicit) == explicit
    assert config.resolve_config_path(str(explicit)) == explicit


def test_precedence_decides_which_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def file(name: str, port: int) -> Path:
        return write(tmp_path / name, with_secret(f"server_port = {port}\n"))

    xdg_file = file("xdg/kueue/config.toml", 1001)
    env_file = file("env.toml", 1002)
    explicit_file = file("explicit.toml", 1003)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.load().path == xdg_file
    assert config.load().common_settings.server_port == 1001
    monkeypatch.setenv("KUEUE_CONFIG", str(env_file))
    assert config.load().common_settings.server_port == 1002
    assert config.load(explicit_file).common_settings.server_port == 1003


def test_empty_kueue_config_falls_back_to_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUEUE_CONFIG", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.resolve_config_path() == tmp_path / "xdg" / "kueue" / "config.toml"


def test_tilde_is_expanded(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.resolve_config_path("~/k.toml") == isolated_home / "k.toml"
    monkeypatch.setenv("KUEUE_CONFIG", "~/env.toml")
    assert config.resolve_config_path() == isolated_home / "env.toml"


def test_kueue_config_file_is_created_where_it_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "by-env" / "kueue.toml"
    monkeypatch.setenv("KUEUE_CONFIG", str(target))
    assert config.load().path == target
    assert target.is_file()
    assert not (tmp_path / "home" / ".config").exists()


# ---------------------------------------------------------------- parsing

FULL = """\
[common_settings]
shared_secret = "SECRET-0123456789"
server_name = "kueue.example.org"
server_port = 4242
log_level = "debug"
log_format = "json"
tls_ca = "/etc/kueue/ca.pem"
tls_client_cert = "/etc/kueue/client.pem"
tls_client_key = "/etc/kueue/client.key"

[server_settings]
bind_addresses = "127.0.0.1"
maintenance_interval_seconds = 5
worker_timeout_seconds = 30
job_offer_timeout_seconds = 7
job_cleanup_after_minutes = 99
global_max_parallel_jobs = 12
data_dir = "/srv/kueue"
job_output_cap_mb = 3
tls_cert = "/etc/kueue/server.pem"
tls_key = "/etc/kueue/server.key"
tls_require_client_cert = true
metrics_port = 9464

[worker_settings]
system_update_interval_seconds = 2
worker_max_parallel_jobs = 4
dynamic_check_free_resources = false
dynamic_cpu_load_scale_factor = 0.5
kill_grace_seconds = 1.5
on_sigterm = "requeue"
output_memory_mb = 8
output_spill_mb = 100
prefetch_jobs = 2
worker_processes = 2

[client_settings]
job_default_cpus = 8
job_default_ram_mb = 8192

[global_resources]
genus = 3
matlab = 0

[restart_workers]
ssh_user = "kueue"
hostnames = "node1 node2\\tnode3"
sleep_minutes_before_recheck = 15
ssh_port = 2222
ssh_options = "-i ~/.ssh/kueue"
worker_command = "~/venv/bin/kueue_worker"
"""


def test_every_section_and_key_is_parsed() -> None:
    cfg = parse(FULL)
    assert cfg.warnings == []
    assert cfg.common_settings == config.CommonSettings(
        shared_secret="SECRET-0123456789",
        server_name="kueue.example.org",
        server_port=4242,
        log_level="debug",
        log_format="json",
        tls_ca="/etc/kueue/ca.pem",
        tls_client_cert="/etc/kueue/client.pem",
        tls_client_key="/etc/kueue/client.key",
    )
    assert cfg.server_settings == config.ServerSettings(
        bind_addresses="127.0.0.1",
        maintenance_interval_seconds=5,
        worker_timeout_seconds=30,
        job_offer_timeout_seconds=7,
        job_cleanup_after_minutes=99,
        global_max_parallel_jobs=12,
        data_dir="/srv/kueue",
        job_output_cap_mb=3,
        tls_cert="/etc/kueue/server.pem",
        tls_key="/etc/kueue/server.key",
        tls_require_client_cert=True,
        metrics_port=9464,
    )
    assert cfg.worker_settings == config.WorkerSettings(
        system_update_interval_seconds=2,
        worker_max_parallel_jobs=4,
        dynamic_check_free_resources=False,
        dynamic_cpu_load_scale_factor=0.5,
        kill_grace_seconds=1.5,
        on_sigterm="requeue",
        output_memory_mb=8,
        output_spill_mb=100,
        prefetch_jobs=2,
        worker_processes=2,
    )
    assert cfg.client_settings == config.ClientSettings(job_default_cpus=8, job_default_ram_mb=8192)
    assert cfg.global_resources == {"genus": 3, "matlab": 0}
    assert cfg.restart_workers == config.RestartWorkers(
        ssh_user="kueue",
        hostnames="node1 node2\tnode3",
        sleep_minutes_before_recheck=15,
        ssh_port=2222,
        ssh_options="-i ~/.ssh/kueue",
        worker_command="~/venv/bin/kueue_worker",
    )
    assert cfg.server_address == "kueue.example.org:4242"
    assert cfg.data_dir == Path("/srv/kueue")


def test_full_file_covers_every_key() -> None:
    # Keeps FULL above honest when a key is added to config.py.
    cfg = parse(FULL)
    for section in (
        "common_settings",
        "server_settings",
        "worker_settings",
        "client_settings",
        "restart_workers",
    ):
        for f in dataclasses.fields(getattr(cfg, section)):
            assert re.search(rf"^{f.name} = ", FULL, re.MULTILINE), f"test FULL lacks {section}.{f.name}"


def test_missing_keys_take_defaults() -> None:
    cfg = parse(with_secret())
    assert cfg.warnings == []
    assert cfg.common_settings.server_name == "localhost"
    assert cfg.common_settings.server_port == 11236
    assert cfg.common_settings.log_level == "info"
    assert cfg.server_settings == config.ServerSettings()
    assert cfg.server_settings.bind_addresses == "0.0.0.0 [::]"
    assert cfg.server_settings.worker_timeout_seconds == 300
    assert cfg.server_settings.job_offer_timeout_seconds == 60
    assert cfg.server_settings.job_cleanup_after_minutes == 2880
    assert cfg.server_settings.global_max_parallel_jobs == 100
    assert cfg.worker_settings == config.WorkerSettings()
    assert cfg.worker_settings.system_update_interval_seconds == 60
    assert cfg.worker_settings.worker_max_parallel_jobs == 10
    assert cfg.worker_settings.dynamic_check_free_resources is True
    assert cfg.worker_settings.dynamic_cpu_load_scale_factor == 1.0
    # Ours deliberately differ from Kueue's 8 CPUs / 8192 MB, which never fit a small machine.
    assert cfg.client_settings.job_default_cpus == 1
    assert cfg.client_settings.job_default_ram_mb == 512
    assert cfg.restart_workers == config.RestartWorkers()
    assert cfg.global_resources == {}


def test_partial_section_keeps_other_defaults() -> None:
    cfg = parse(with_secret("[worker_settings]\nworker_max_parallel_jobs = 2\n"))
    assert cfg.worker_settings.worker_max_parallel_jobs == 2
    assert cfg.worker_settings.system_update_interval_seconds == 60


def test_integer_is_accepted_for_a_float_key() -> None:
    cfg = parse(with_secret("[worker_settings]\ndynamic_cpu_load_scale_factor = 2\nkill_grace_seconds = 3\n"))
    assert cfg.worker_settings.dynamic_cpu_load_scale_factor == 2.0
    assert isinstance(cfg.worker_settings.dynamic_cpu_load_scale_factor, float)
    assert isinstance(cfg.worker_settings.kill_grace_seconds, float)


def test_ipv6_server_name_is_bracketed() -> None:
    cfg = parse('[common_settings]\nshared_secret = "x"\nserver_name = "::1"\nserver_port = 5\n')
    assert cfg.server_address == "[::1]:5"
    cfg = parse('[common_settings]\nshared_secret = "x"\nserver_name = "[::1]"\n')
    assert cfg.server_address == "[::1]:11236"


# ---------------------------------------------------------------- unknown keys


def test_unknown_key_is_a_warning_naming_it() -> None:
    cfg = parse(with_secret("colour = true\n[server_settings]\nworker_timeout_secs = 5\n"))
    joined = "\n".join(cfg.warnings)
    assert "common_settings.colour" in joined
    assert "server_settings.worker_timeout_secs" in joined
    assert "/etc/kueue/test.toml" in joined
    # The misspelt key did not change anything; the rest still applies.
    assert cfg.server_settings.worker_timeout_seconds == 300
    assert cfg.common_settings.shared_secret == SECRET


def test_unknown_section_is_a_warning_naming_it() -> None:
    cfg = parse(with_secret("[server_setings]\nworker_timeout_seconds = 5\n"))
    assert any("server_setings" in w for w in cfg.warnings)
    assert cfg.server_settings.worker_timeout_seconds == 300


def test_unknown_key_through_load(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", with_secret("[client_settings]\njob_default_gpus = 1\n"))
    cfg = config.load(path)
    assert any("client_settings.job_default_gpus" in w and str(path) in w for w in cfg.warnings)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "section, line, key",
    [
        ("common_settings", 'server_port = "11236"', "common_settings.server_port"),
        ("common_settings", "server_name = 5", "common_settings.server_name"),
        ("common_settings", "server_port = true", "common_settings.server_port"),
        ("common_settings", "server_port = 1.5", "common_settings.server_port"),
        ("server_settings", "worker_timeout_seconds = [1]", "server_settings.worker_timeout_seconds"),
        ("server_settings", "bind_addresses = ['0.0.0.0']", "server_settings.bind_addresses"),
        (
            "worker_settings",
            'dynamic_check_free_resources = "yes"',
            "worker_settings.dynamic_check_free_resources",
        ),
        (
            "worker_settings",
            "dynamic_check_free_resources = 1",
            "worker_settings.dynamic_check_free_resources",
        ),
        (
            "worker_settings",
            "dynamic_cpu_load_scale_factor = true",
            "worker_settings.dynamic_cpu_load_scale_factor",
        ),
        ("client_settings", "job_default_ram_mb = 1.5", "client_settings.job_default_ram_mb"),
        ("restart_workers", "hostnames = 3", "restart_workers.hostnames"),
        ("global_resources", 'genus = "3"', "global_resources.genus"),
        ("global_resources", "genus = 1.0", "global_resources.genus"),
    ],
)
def test_wrong_type_is_an_error_naming_key_and_file(
    tmp_path: Path, section: str, line: str, key: str
) -> None:
    path = tmp_path / "wrong.toml"
    # with_secret() opens [common_settings], so its keys need no header of their own.
    header = "" if section == "common_settings" else f"[{section}]\n"
    write(path, with_secret(f"{header}{line}\n"))
    with pytest.raises(ConfigError) as excinfo:
        config.load(path)
    message = str(excinfo.value)
    assert key in message
    assert str(path) in message


def test_known_section_that_is_not_a_table_is_an_error_naming_it(tmp_path: Path) -> None:
    # `server_settings = 5` is a known section of the wrong type, not an unknown key.
    path = write(tmp_path / "c.toml", "server_settings = 5\n" + with_secret())
    with pytest.raises(ConfigError) as excinfo:
        config.load(path)
    assert "server_settings" in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_invalid_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.toml", "[common_settings\nshared_secret = \n")
    with pytest.raises(ConfigError) as excinfo:
        config.load(path)
    assert str(path) in str(excinfo.value)


def test_empty_secret_is_an_error() -> None:
    with pytest.raises(ConfigError, match="shared_secret"):
        parse("[common_settings]\nserver_port = 1\n")


@pytest.mark.parametrize("port", [-1, 65536, 100_000])
def test_port_out_of_range_is_an_error(port: int) -> None:
    with pytest.raises(ConfigError, match="server_port"):
        parse(with_secret(f"server_port = {port}\n"))


def test_port_zero_is_accepted_for_an_ephemeral_server_port() -> None:
    assert parse(with_secret("server_port = 0\n")).common_settings.server_port == 0


@pytest.mark.parametrize(
    "text, key",
    [
        ("[server_settings]\nworker_timeout_seconds = 0\n", "worker_timeout_seconds"),
        ("[server_settings]\njob_offer_timeout_seconds = -5\n", "job_offer_timeout_seconds"),
        ("[server_settings]\nmaintenance_interval_seconds = 0\n", "maintenance_interval_seconds"),
        ("[server_settings]\njob_output_cap_mb = 0\n", "job_output_cap_mb"),
        ("[worker_settings]\nsystem_update_interval_seconds = 0\n", "system_update_interval_seconds"),
        ("[worker_settings]\nworker_max_parallel_jobs = -1\n", "worker_max_parallel_jobs"),
        ("[global_resources]\ngenus = -1\n", "global_resources.genus"),
    ],
)
def test_invalid_values_are_errors_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        parse(with_secret(text))


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    directory = tmp_path / "is-a-dir.toml"
    directory.mkdir()
    with pytest.raises(ConfigError) as excinfo:
        config.load(directory)
    assert str(directory) in str(excinfo.value)


# ---------------------------------------------------------------- global resources


def test_global_resources() -> None:
    cfg = parse(with_secret('[global_resources]\ngenus = 3\nvirtuoso = 1\n"odd name" = 2\n'))
    assert cfg.global_resources == {"genus": 3, "virtuoso": 1, "odd name": 2}
    assert cfg.warnings == []


def test_global_resources_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="global_resources"):
        parse("global_resources = 3\n" + with_secret())


# ---------------------------------------------------------------- data directory


def test_data_dir_defaults_to_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert parse(with_secret()).data_dir == tmp_path / "data" / "kueue"


def test_data_dir_without_xdg_data_home(isolated_home: Path) -> None:
    assert parse(with_secret()).data_dir == isolated_home / ".local" / "share" / "kueue"


def test_empty_xdg_data_home_is_ignored(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "")
    assert parse(with_secret()).data_dir == isolated_home / ".local" / "share" / "kueue"


def test_explicit_data_dir_wins_and_expands_tilde(
    tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert parse(with_secret('[server_settings]\ndata_dir = "/srv/q"\n')).data_dir == Path("/srv/q")
    assert parse(with_secret('[server_settings]\ndata_dir = "~/q"\n')).data_dir == isolated_home / "q"


def test_loading_never_touches_the_real_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Sanity check of the isolation every test here relies on.
    assert Path.home() == tmp_path / "home"
    assert os.environ.get("KUEUE_CONFIG") is None
    cfg = config.load()
    assert cfg.path is not None
    assert tmp_path in cfg.path.parents


@pytest.mark.parametrize(
    ("line", "key"),
    [("output_memory_mb = 0", "output_memory_mb"), ("output_spill_mb = -1", "output_spill_mb")],
)
def test_output_limits_must_be_sane(line: str, key: str) -> None:
    with pytest.raises(config.ConfigError, match=key):
        parse(FULL.replace(f"{key} = {8 if key == 'output_memory_mb' else 100}", line))


def test_prefetch_jobs_defaults_to_32_and_must_not_be_negative() -> None:
    assert parse(with_secret("")).worker_settings.prefetch_jobs == 32
    assert parse(with_secret("[worker_settings]\nprefetch_jobs = 0\n")).worker_settings.prefetch_jobs == 0
    with pytest.raises(config.ConfigError, match="prefetch_jobs must not be negative"):
        parse(with_secret("[worker_settings]\nprefetch_jobs = -1\n"))


def test_worker_processes_defaults_to_1_and_each_needs_a_slot() -> None:
    assert parse(with_secret("")).worker_settings.worker_processes == 1
    with pytest.raises(config.ConfigError, match="worker_processes must be at least 1"):
        parse(with_secret("[worker_settings]\nworker_processes = 0\n"))
    with pytest.raises(
        config.ConfigError,
        match=r"worker_processes \(5\) is more than worker_max_parallel_jobs \(4\): each process needs a slot",
    ):
        parse(with_secret("[worker_settings]\nworker_max_parallel_jobs = 4\nworker_processes = 5\n"))
    # A worker of no slots (it runs nothing) is not refused for its one process.
    assert parse(with_secret("[worker_settings]\nworker_max_parallel_jobs = 0\n")).warnings == []


def test_on_sigterm_must_be_drain_or_requeue() -> None:
    with pytest.raises(config.ConfigError, match="on_sigterm"):
        parse(FULL.replace('on_sigterm = "requeue"', 'on_sigterm = "panic"'))


def test_log_level_unknown_is_a_warning_log_format_unknown_an_error() -> None:
    cfg = parse(with_secret('log_level = "loud"\n'))
    assert cfg.common_settings.log_level == "loud"
    assert any("log_level 'loud'" in w and "using info" in w for w in cfg.warnings)
    assert parse(with_secret('log_level = "WARN"\n')).warnings == []
    with pytest.raises(ConfigError, match='log_format must be "text" or "json", not \'xml\''):
        parse(with_secret('log_format = "xml"\n'))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server_settings]\nmetrics_port = 70000\n", "server_settings.metrics_port must be between 0 (off)"),
        ("[server_settings]\nmetrics_port = -1\n", "server_settings.metrics_port must be between 0 (off)"),
        ("[restart_workers]\nssh_port = 65536\n", "restart_workers.ssh_port must be between 0"),
    ],
)
def test_ports_out_of_range_are_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(with_secret(text))
