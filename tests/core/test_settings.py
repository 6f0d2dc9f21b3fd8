"""Settings: defaults, environment parsing, secrets.toml precedence and one clear error per bad value."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import DEFAULT_MODEL, DEFAULT_SYSTEM_PROMPT, Settings, SettingsError, read_secrets_file


def test_defaults_use_a_sqlite_file_in_the_per_user_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    settings = Settings.load({})
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'burrow' / 'burrow.db'}"
    assert settings.model == DEFAULT_MODEL
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert settings.tracker_project == "burrow" and settings.tracking_enabled
    assert settings.blocked_words == ("unsafe",)
    assert settings.use_moderation is False
    assert settings.request_timeout > 0 and settings.max_retries >= 0


def test_load_without_arguments_reads_os_environ(monkeypatch):
    monkeypatch.setenv("BURROW_MODEL", "from-os-environ")
    assert Settings.load().model == "from-os-environ"


@pytest.mark.parametrize(
    "env, offline",
    [
        ({}, True),
        ({"OPENAI_API_KEY": "   "}, True),
        ({"OPENAI_BASE_URL": ""}, True),
        ({"OPENAI_API_KEY": "sk-abc"}, False),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}, False),
    ],
)
def test_offline_only_without_key_and_base_url(env, offline):
    assert Settings.load(env).offline is offline


def test_environment_values_are_parsed():
    settings = Settings.load({
        "BURROW_DATABASE_URL": " postgresql+psycopg://u@localhost:5432/burrow ",
        "OPENAI_API_KEY": "sk-abc",
        "OPENAI_BASE_URL": "https://example.test/v1",
        "BURROW_MODEL": " llama3 ",
        "BURROW_SYSTEM_PROMPT": "Be brief.",
        "BURROW_REQUEST_TIMEOUT": "12.5",
        "BURROW_MAX_RETRIES": "0",
        "BURROW_TRACKER_PROJECT": "demo",
        "BURROW_TRACKER_DIR": "/tmp/tracks",
        "BURROW_USE_MODERATION": "yes",
        "BURROW_MAX_MESSAGE_CHARS": "500",
        "BURROW_LIST_CACHE_MB": "0",
        "UNRELATED": "ignored",
    })
    assert settings.database_url == "postgresql+psycopg://u@localhost:5432/burrow"
    assert settings.openai_api_key == "sk-abc"
    assert settings.openai_base_url == "https://example.test/v1"
    assert settings.model == "llama3"
    assert settings.system_prompt == "Be brief."
    assert settings.request_timeout == 12.5
    assert settings.max_retries == 0
    assert settings.tracker_project == "demo"
    assert settings.tracker_dir == "/tmp/tracks"
    assert settings.use_moderation is True
    assert settings.max_message_chars == 500
    assert settings.list_cache_mb == 0


@pytest.mark.parametrize("raw, expected", [("1", True), ("TRUE", True), ("on", True), ("0", False),
                                           ("no", False), ("Off", False), ("", False)])
def test_boolean_spellings(raw, expected):
    assert Settings.load({"BURROW_USE_MODERATION": raw}).use_moderation is expected


def test_secrets_fill_in_and_environment_wins():
    secrets = {
        "OPENAI_API_KEY": "sk-from-secrets",
        "BURROW_MODEL": "secret-model",
        "BURROW_MAX_RETRIES": 4,  # TOML integers arrive as ints
        "BURROW_USE_MODERATION": True,  # and booleans as bools
        "connections": {"db": {"url": "ignored"}},  # nested tables are not settings
        "SOMETHING_ELSE": "ignored",
    }
    settings = Settings.load({"BURROW_MODEL": "env-model"}, secrets=secrets)
    assert settings.model == "env-model"
    assert settings.openai_api_key == "sk-from-secrets"
    assert settings.max_retries == 4
    assert settings.use_moderation is True
    assert not settings.offline


def test_secrets_toml_array_of_blocked_words(tmp_path: Path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('BURROW_BLOCKED_WORDS = ["Unsafe", "evil "]\n', encoding="utf-8")
    assert Settings.load({}, secrets=read_secrets_file(secrets)).blocked_words == ("unsafe", "evil")


def test_invalid_secret_value_names_the_variable():
    with pytest.raises(SettingsError, match="BURROW_MAX_RETRIES"):
        Settings.load({}, secrets={"BURROW_MAX_RETRIES": "lots"})


def test_api_key_is_not_in_repr():
    settings = Settings.load({"OPENAI_API_KEY": "sk-test-SECRET123"})
    assert "SECRET123" not in repr(settings)


@pytest.mark.parametrize(
    "name, value",
    [
        ("BURROW_DATABASE_URL", "not a url"),
        ("BURROW_DATABASE_URL", ""),
        ("OPENAI_BASE_URL", "localhost:8000/v1"),
        ("OPENAI_BASE_URL", "ftp://example.test"),
        ("BURROW_MODEL", "   "),
        ("BURROW_SYSTEM_PROMPT", ""),
        ("BURROW_REQUEST_TIMEOUT", "fast"),
        ("BURROW_REQUEST_TIMEOUT", "0"),
        ("BURROW_REQUEST_TIMEOUT", "-5"),
        ("BURROW_REQUEST_TIMEOUT", "99999"),
        ("BURROW_REQUEST_TIMEOUT", "nan"),
        ("BURROW_MAX_RETRIES", "two"),
        ("BURROW_MAX_RETRIES", "1.5"),
        ("BURROW_MAX_RETRIES", "-1"),
        ("BURROW_MAX_RETRIES", "11"),
        ("BURROW_TRACKER_PROJECT", "a/b"),
        ("BURROW_TRACKER_PROJECT", "..\\up"),
        ("BURROW_USE_MODERATION", "maybe"),
        ("BURROW_MAX_MESSAGE_CHARS", "0"),
        ("BURROW_MAX_MESSAGE_CHARS", "many"),
        ("BURROW_LIST_CACHE_MB", "-1"),
        ("BURROW_LIST_CACHE_MB", "64MB"),
        ("BURROW_BURR_UI_URL", "localhost:7241"),
        ("BURROW_BURR_UI_URL", "http://"),
        ("BURROW_BURR_UI_URL", ""),
    ],
)
def test_every_invalid_value_raises_settings_error_naming_the_variable(name, value):
    with pytest.raises(SettingsError) as caught:
        Settings.load({name: value})
    assert name in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", ["off", "OFF", " Off ", "none", "false", "0", "disabled", ""])
def test_tracking_off_values(value):
    settings = Settings.load({"BURROW_TRACKER_PROJECT": value})
    assert settings.tracker_project is None
    assert not settings.tracking_enabled


@pytest.mark.parametrize(
    "raw, words",
    [
        ("unsafe", ("unsafe",)),
        (" Unsafe, EVIL ,, drop table ", ("unsafe", "evil", "drop table")),
        ("", ()),
        (" , ", ()),
    ],
)
def test_blocked_words_parsing(raw, words):
    assert Settings.load({"BURROW_BLOCKED_WORDS": raw}).blocked_words == words


def test_read_secrets_file(tmp_path: Path):
    assert read_secrets_file(tmp_path / "missing.toml") == {}
    good = tmp_path / "secrets.toml"
    good.write_text('OPENAI_API_KEY = "sk-x"\nBURROW_MAX_RETRIES = 3\n[section]\nk = 1\n', encoding="utf-8")
    assert read_secrets_file(good) == {"OPENAI_API_KEY": "sk-x", "BURROW_MAX_RETRIES": 3, "section": {"k": 1}}
    assert Settings.load({}, secrets=read_secrets_file(good)).max_retries == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("OPENAI_API_KEY = \n", encoding="utf-8")
    with pytest.raises(SettingsError, match="bad.toml"):
        read_secrets_file(bad)


def test_settings_are_frozen():
    settings = Settings.load({})
    with pytest.raises(AttributeError):
        settings.model = "other"  # type: ignore[misc]


@pytest.mark.parametrize("raw, level", [("DEBUG", "DEBUG"), ("debug", "DEBUG"), (" Info ", "INFO"),
                                        ("warning", "WARNING"), ("Error", "ERROR"), ("CRITICAL", "CRITICAL")])
def test_log_level_spellings(raw, level):
    assert Settings.load({"BURROW_LOG_LEVEL": raw}).log_level == level


def test_log_level_defaults_to_warning_and_can_come_from_secrets():
    assert Settings.load({}).log_level == "WARNING"
    assert Settings.load({}, secrets={"BURROW_LOG_LEVEL": "debug"}).log_level == "DEBUG"


@pytest.mark.parametrize("value", ["loud", "", "  ", "10", "WARN", "verbose"])
def test_a_bad_log_level_is_one_line_naming_the_variable(value):
    with pytest.raises(SettingsError) as caught:
        Settings.load({"BURROW_LOG_LEVEL": value})
    message = str(caught.value)
    assert "BURROW_LOG_LEVEL" in message and "DEBUG" in message and "\n" not in message


def test_burr_ui_url_defaults_to_the_local_burr_server_and_can_be_moved():
    assert Settings.load({}).burr_ui_url == "http://localhost:7241"
    moved = Settings.load({"BURROW_BURR_UI_URL": " https://burr.example.test/ui/ "})
    assert moved.burr_ui_url == "https://burr.example.test/ui"  # no trailing slash: paths are appended
    from_secrets = Settings.load({}, secrets={"BURROW_BURR_UI_URL": "http://10.0.0.5:7241"})
    assert from_secrets.burr_ui_url == "http://10.0.0.5:7241"
