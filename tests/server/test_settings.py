"""Every setting is settable by its flag and its `EXAMSYNC_*` variable, and docs/server.md's
table of them says what the code does."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from examsync_server.cli import cli
from examsync_server.config import (
    COMMANDS,
    SETTINGS,
    SettingInfo,
    Settings,
    settings_env,
    settings_from_env,
)
from examsync_server.errors import StartupError

DOCS = Path(__file__).parents[2] / "docs" / "server.md"
HEADER = "| setting | flag | variable | default | commands | meaning |"

# The variables the server read before the settings were grouped: each must keep working.
EARLIER_VARIABLES = """HOST PORT SOCKET_HOST SOCKET_PORT PUBLIC_SOCKET_URL DATA_DIR REDIS_URL
ADMIN_TOKEN SECRET_KEY SESSION_TTL_SECONDS MAX_PACKAGE_BYTES MAX_JSON_BODY_BYTES MAX_SAVE_BYTES
ACK_TIMEOUT_SECONDS CLAIM_IDLE_MS COMMIT_LINGER_MS LATE_GRACE_SECONDS PING_INTERVAL PING_TIMEOUT
LOST_AFTER_SECONDS HANDSHAKE_LIMIT HANDSHAKE_WINDOW_SECONDS RUN_SOCKET_SERVER HTTP_SERVER
PROCESSES NICE REUSE_PORT RUN_PERSISTER NODE_ID WEB_DIR""".split()


def value_of(settings: Settings, info: SettingInfo) -> object:
    return getattr(getattr(settings, info.group), info.name)


def other_value(info: SettingInfo) -> tuple[str, object]:
    """A value unlike the default, as a variable or flag spells it, and as the setting holds it."""
    default = info.default
    if info.kind is bool:
        return ("0", False) if default else ("1", True)
    if info.kind is int:
        assert isinstance(default, int)
        return str(default + 1), default + 1
    if info.kind is float:
        assert isinstance(default, float)
        return str(default + 0.5), default + 0.5
    if info.kind is Path:
        return "elsewhere", Path("elsewhere")
    if info.name == "trusted_proxies":  # read as addresses at once
        return "10.0.0.1", "10.0.0.1"
    if info.name == "admin_token":  # refused under 22 characters
        return "other-admin-token-0123456789", "other-admin-token-0123456789"
    return "other", "other"


def row(info: SettingInfo) -> str:
    literal = info.default is not None and info.default != ""
    default = f"`{info.default_text}`" if literal else info.default_text
    commands = (
        "all"
        if info.commands == set(COMMANDS)
        else ", ".join(c for c in COMMANDS if c in info.commands)
    )
    return (
        f"| `{info.group}.{info.name}` | `{info.flag}` | `{info.variable}` | {default}"
        f" | {commands} | {info.meaning} |"
    )


def test_the_docs_table_lists_every_setting_as_the_code_has_it() -> None:
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    assert lines.count(HEADER) == 1, f"docs/server.md needs one table headed {HEADER}"
    start = lines.index(HEADER) + 2  # past the header and its |---| line
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    expected = [row(info) for info in SETTINGS]
    table = "\n".join([HEADER, "| --- " * 6 + "|", *expected])
    assert lines[start:end] == expected, f"docs/server.md's settings table should read:\n{table}"


def test_a_name_is_unique_and_names_its_flag_and_variable() -> None:
    assert len({info.name for info in SETTINGS}) == len(SETTINGS) == 49
    for info in SETTINGS:
        assert info.flag == "--" + info.name.replace("_", "-")
        assert info.variable == "EXAMSYNC_" + info.name.upper()
        assert info.commands and info.commands <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_a_flag_for_each_of_its_settings_and_no_other(command: str) -> None:
    found = cli.commands[command]
    options = {p.name: p for p in found.params if isinstance(p, click.Option)}
    options.pop("help", None)
    assert set(options) == {i.name for i in SETTINGS if command in i.commands}
    for info in SETTINGS:
        if command in info.commands:
            assert info.flag in options[info.name].opts


@pytest.mark.parametrize("command", COMMANDS)
def test_a_flag_sets_its_setting(command: str) -> None:
    found = cli.commands[command]
    for info in SETTINGS:
        if command not in info.commands:
            continue
        text, value = other_value(info)
        if info.name == "http_server":
            text, value = "hypercorn", "hypercorn"
        args = [("--no-" + info.flag[2:]) if value is False else info.flag] + (
            [] if info.kind is bool else [text]
        )
        context = found.make_context(command, args)
        assert value_of(settings_from_env(**context.params), info) == value, info.name


def test_the_sockets_command_takes_host_for_its_address() -> None:
    context = cli.commands["sockets"].make_context("sockets", ["--host", "0.0.0.0"])
    assert settings_from_env(**context.params).listen.socket_host == "0.0.0.0"


def test_a_variable_sets_its_setting_and_a_bad_one_says_which(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for info in SETTINGS:
        text, value = other_value(info)
        with monkeypatch.context() as env:
            env.setenv(info.variable, text)
            assert value_of(settings_from_env(), info) == value, info.variable
            # A flag wins over the variable.
            assert value_of(settings_from_env(**{info.name: value}), info) == value
    monkeypatch.setenv("EXAMSYNC_CLAIM_IDLE_MS", "soon")
    with pytest.raises(StartupError, match="EXAMSYNC_CLAIM_IDLE_MS='soon'"):
        settings_from_env()


def test_every_earlier_variable_still_sets_its_setting() -> None:
    variables = {info.variable for info in SETTINGS}
    assert {f"EXAMSYNC_{name}" for name in EARLIER_VARIABLES} <= variables


def test_a_child_process_gets_every_setting_but_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = Settings().with_changes(
        **{info.name: other_value(info)[1] for info in SETTINGS if info.name != "http_server"}
    )
    for variable, text in settings_env(changed).items():
        monkeypatch.setenv(variable, text)
    child = settings_from_env()
    assert child.process.node_id != changed.process.node_id
    assert child.with_changes(node_id=changed.process.node_id) == changed


def test_with_changes_takes_settings_by_name_and_checks_them() -> None:
    settings = Settings().with_changes(claim_idle_ms=300, host="0.0.0.0")
    assert (settings.pipeline.claim_idle_ms, settings.listen.host) == (300, "0.0.0.0")
    assert settings.pipeline.max_persist_attempts == Settings().pipeline.max_persist_attempts
    with pytest.raises(TypeError, match="claim_idle"):
        Settings().with_changes(claim_idle=300)
    with pytest.raises(StartupError, match="nice must be from 0 to 19"):
        settings.with_changes(nice=20)
    with pytest.raises(StartupError, match="handshake_limit"):
        settings.with_changes(handshake_limit=0)
