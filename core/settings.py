"""Burrow's settings: one typed object, built from the environment (and, in the UI, secrets.toml).

Every knob is read here and nowhere else, so the README's table and this module are the whole story.
Values come from, in order of precedence: environment variables, then `.streamlit/secrets.toml`
(passed in as a mapping by the UI), then the defaults below.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_SYSTEM_PROMPT = "You are Burrow, a helpful, concise assistant. Answer in Markdown."
TRACKING_OFF = {"", "off", "none", "false", "0", "disabled"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
AUTH_MODES = ("none", "oidc", "proxy")


class SettingsError(ValueError):
    """A setting has a value Burrow cannot use; the message names the variable."""


def default_database_url() -> str:
    """A SQLite file in the per-user data directory, e.g. ~/.local/share/burrow/burrow.db on Linux."""
    return f"sqlite:///{Path(user_data_dir('burrow', appauthor=False)) / 'burrow.db'}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything Burrow can be configured with. Build it with `Settings.load()`."""

    database_url: str = dataclasses.field(default_factory=default_database_url)
    openai_api_key: str | None = dataclasses.field(default=None, repr=False)
    openai_base_url: str | None = None
    model: str = DEFAULT_MODEL
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    request_timeout: float = 60.0
    max_retries: int = 2
    tracker_project: str | None = "burrow"
    tracker_dir: str | None = None
    blocked_words: tuple[str, ...] = ("unsafe",)
    use_moderation: bool = False
    relay: bool = False  # PostgreSQL: follow runs of other server processes over LISTEN/NOTIFY (core/relay.py)
    max_message_chars: int = 20_000
    list_cache_mb: int = 64  # decoded chat histories kept per process (core/listcache.py); 0 turns it off
    log_level: str = "WARNING"  # of Burrow's own loggers (core/logs.py); one of LOG_LEVELS
    max_runs: int = 8  # turns answered at once per process (core/runs.py); more get "busy, try again"
    run_keep_seconds: float = 300.0  # a finished run stays re-attachable this long (core/runs.py, core/relay.py)
    api_host: str = "127.0.0.1"  # where `python -m server` (the HTTP API, server/) listens
    api_port: int = 8000
    burr_ui_url: str = "http://localhost:7241"  # where `burr` (Burr's tracking UI) is reached; History links to it
    retention_days: float | None = None  # conversations idle longer are deleted (core/retention.py); None: kept
    auth: str = "none"  # who is using Burrow (core/users.py): one of AUTH_MODES
    proxy_user_header: str = "X-Forwarded-Email"  # auth=proxy: the header the trusted proxy sets
    admins: tuple[str, ...] = ()  # subjects or e-mails (lowercase) that may read everyone's conversations
    user_max_runs: int = 3  # replies one user may have running at once (per process)
    user_messages_per_minute: int = 20  # messages one user may send per minute (per process); 0: no limit

    @property
    def offline(self) -> bool:
        """No key and no base URL: answer with the built-in offline model."""
        return not self.openai_api_key and not self.openai_base_url

    @property
    def tracking_enabled(self) -> bool:
        return self.tracker_project is not None

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
    ) -> "Settings":
        """Reads the environment (default: os.environ) over `secrets`; raises SettingsError on bad values."""
        env = os.environ if environ is None else environ
        merged = {k: _secret_text(v) for k, v in (secrets or {}).items() if not isinstance(v, Mapping)}
        merged.update({k: v for k, v in env.items() if k in _FIELDS})
        return cls(**{_FIELDS[k][0]: _FIELDS[k][1](k, v) for k, v in merged.items() if k in _FIELDS})


def _secret_text(value: Any) -> str:
    """A secrets.toml value as the environment would spell it (a TOML array of words -> "a,b")."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def read_secrets_file(path: Path) -> dict[str, Any]:
    """Parses a secrets.toml; a missing file is an empty mapping, a broken one a SettingsError."""
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc


# ---- parsers: each gets the variable's name so its error can say which one is wrong ----------
def _text(name: str, value: str) -> str:
    if not value.strip():
        raise SettingsError(f"{name} must not be empty")
    return value.strip()


def _optional(name: str, value: str) -> str | None:
    return value.strip() or None


def _positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {value!r}") from None
    if not 0 < number <= 3600:
        raise SettingsError(f"{name} must be between 0 and 3600 seconds, got {value!r}")
    return number


def _retention_days(name: str, value: str) -> float | None:
    """Unset or empty keeps conversations forever; otherwise a positive number of days (fractions allowed)."""
    if not str(value).strip():
        return None
    try:
        days = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number of days (or unset to keep everything), got {value!r}") from None
    if not 0 < days <= 1_000_000:
        raise SettingsError(f"{name} must be a positive number of days, up to 1000000, got {value!r}")
    return days


def _int_in(low: int, high: int):
    def parse(name: str, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, got {value!r}")
        return number

    return parse


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r}")


def _database_url(name: str, value: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value.strip())
    except ArgumentError:
        raise SettingsError(f"{name} is not a SQLAlchemy URL (e.g. sqlite:///burrow.db), got {value!r}") from None
    return value.strip()


def _base_url(name: str, value: str) -> str | None:
    value = value.strip()
    if value and not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must start with http:// or https://, got {value!r}")
    return value or None


def _web_url(name: str, value: str) -> str:
    """An http(s) base URL without the trailing slash, so paths can be appended to it."""
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")) or len(value.split("//", 1)[1]) == 0:
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value


def _tracker_project(name: str, value: str) -> str | None:
    value = value.strip()
    if value.lower() in TRACKING_OFF:
        return None
    if "/" in value or "\\" in value:
        raise SettingsError(f"{name} must be a plain name (no slashes), got {value!r}")
    return value


def _words(name: str, value: str) -> tuple[str, ...]:
    return tuple(word.strip().lower() for word in value.split(",") if word.strip())


def _auth_mode(name: str, value: str) -> str:
    mode = value.strip().lower() or "none"
    if mode not in AUTH_MODES:
        raise SettingsError(f"{name} must be one of {', '.join(AUTH_MODES)}, got {value!r}")
    return mode


def _header_name(name: str, value: str) -> str:
    value = value.strip()
    if not value or not all(c.isalnum() or c == "-" for c in value):
        raise SettingsError(f"{name} must be an HTTP header name (letters, digits and '-'), got {value!r}")
    return value


def _log_level(name: str, value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return level


_FIELDS: dict[str, tuple[str, Any]] = {
    "BURROW_DATABASE_URL": ("database_url", _database_url),
    "OPENAI_API_KEY": ("openai_api_key", _optional),
    "OPENAI_BASE_URL": ("openai_base_url", _base_url),
    "BURROW_MODEL": ("model", _text),
    "BURROW_SYSTEM_PROMPT": ("system_prompt", _text),
    "BURROW_REQUEST_TIMEOUT": ("request_timeout", _positive_float),
    "BURROW_MAX_RETRIES": ("max_retries", _int_in(0, 10)),
    "BURROW_TRACKER_PROJECT": ("tracker_project", _tracker_project),
    "BURROW_TRACKER_DIR": ("tracker_dir", _optional),
    "BURROW_BLOCKED_WORDS": ("blocked_words", _words),
    "BURROW_USE_MODERATION": ("use_moderation", _bool),
    "BURROW_RELAY": ("relay", _bool),
    "BURROW_MAX_MESSAGE_CHARS": ("max_message_chars", _int_in(1, 1_000_000)),
    "BURROW_LIST_CACHE_MB": ("list_cache_mb", _int_in(0, 1_000_000)),
    "BURROW_LOG_LEVEL": ("log_level", _log_level),
    "BURROW_MAX_RUNS": ("max_runs", _int_in(1, 1000)),
    "BURROW_RUN_KEEP_SECONDS": ("run_keep_seconds", _positive_float),
    "BURROW_API_HOST": ("api_host", _text),
    "BURROW_API_PORT": ("api_port", _int_in(1, 65535)),
    "BURROW_BURR_UI_URL": ("burr_ui_url", _web_url),
    "BURROW_RETENTION_DAYS": ("retention_days", _retention_days),
    "BURROW_AUTH": ("auth", _auth_mode),
    "BURROW_PROXY_USER_HEADER": ("proxy_user_header", _header_name),
    "BURROW_ADMINS": ("admins", _words),
    "BURROW_USER_MAX_RUNS": ("user_max_runs", _int_in(1, 1000)),
    "BURROW_USER_MESSAGES_PER_MINUTE": ("user_messages_per_minute", _int_in(0, 100_000)),
}
