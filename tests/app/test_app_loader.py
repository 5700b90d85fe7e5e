"""The loader reads exactly the file and the environment it is given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relay.app.loader import load_settings
from relay.app.settings import ConfigError


def test_environ_replaces_the_process_environment_for_every_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    process_config = tmp_path / "process.toml"
    process_config.write_text("[http]\nport = 1111\n")
    monkeypatch.setenv("RELAY_CONFIG", str(process_config))
    monkeypatch.setenv("RELAY_HTTP__PORT", "2222")
    monkeypatch.setenv("RELAY_LOG__LEVEL", "debug")

    isolated = load_settings(environ={})
    assert isolated.http.port == 8080 and isolated.log.level == "info"

    given = tmp_path / "given.toml"
    given.write_text("[http]\nport = 3333\nhost = '127.0.0.2'\n")
    chosen = load_settings(environ={"RELAY_CONFIG": str(given), "RELAY_HTTP__PORT": "4444"})
    assert chosen.http.port == 4444  # the given environment overrides the given file
    assert chosen.http.host == "127.0.0.2"  # a key the environment leaves alone stays
    assert chosen.log.level == "info"  # nothing from the process leaked in

    assert load_settings().http.port == 2222  # without environ=, the process's own


def test_bad_json_in_a_list_variable_is_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"RELAY_TENANTS": '[{"name": "acme", "client_secret": "s3cr'})
    message = str(caught.value)
    assert message.startswith("environment: RELAY_TENANTS must be valid JSON")
    assert "\n" not in message and "s3cr" not in message


def test_private_keys_in_the_file_are_refused_not_obeyed(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('_env_prefix = "NOPE_"\n')
    with pytest.raises(ConfigError, match="_env_prefix: not a setting"):
        load_settings(config, environ={"NOPE_HTTP__PORT": "1"})
    config.write_text('[[tenants]]\nname = "acme"\n_cli_parse_args = true\n')
    with pytest.raises(ConfigError, match=r"tenants\[0\]._cli_parse_args: not a setting"):
        load_settings(config, environ={})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[http]\nport = 80\xff\xfe\n", "not UTF-8 (byte 0xff at offset 16)"),
        (
            b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
            "nested too deeply to be a configuration",
        ),
    ],
)
def test_a_hostile_file_is_one_line_not_a_traceback(
    tmp_path: Path, content: bytes, message: str
) -> None:
    config = tmp_path / "relay.toml"
    config.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert str(caught.value) == f"config file {config}: {message}"


@pytest.mark.parametrize(
    ("content", "environ", "message"),
    [
        (b"[http]\nport = 80\xff\xfe\n", {}, "not UTF-8"),
        (b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", {}, "nested too deeply"),
        (b'_env_prefix = "NOPE_"\n', {}, "_env_prefix: not a setting"),
        (b"", {"RELAY_TENANTS": "[{"}, "RELAY_TENANTS"),
        (b"", {"RELAY_AMQP": "{nope"}, "RELAY_AMQP"),
    ],
)
def test_hostile_config_exits_2_with_one_line(
    tmp_path: Path, content: bytes, environ: dict[str, str], message: str
) -> None:
    """Through the real command line, in a child process: exit 2 (bad input), one line
    on stderr, no traceback, for the file and for the environment alike."""
    config = tmp_path / "relay.toml"
    config.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    for command in (["run"], ["config", "check"]):
        done = subprocess.run(
            [sys.executable, "-m", "relay", *command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**env, **environ},
        )
        assert done.returncode == 2, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (command, done.stderr)
        assert "Traceback" not in done.stderr
