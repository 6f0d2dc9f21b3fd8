"""Where Burrow's log lines go, and what they may never say.

Errors are logged once, where they become a message for the user (a failed turn in core/chat.py,
a start-up or page error in ui/services.py); this module only sets up the output. Its filter
removes secrets from the message and from the formatted traceback of every record: the
OPENAI_API_KEY value, the database password, and anything shaped like a bearer token or an
OpenAI key. Some model servers quote the key back in their error bodies, and that text travels
in the `openai` exception chained under an LLMError, so the traceback needs it as much as the message.
"""
from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

from core.errors import BurrowError
from core.settings import Settings

LOGGERS = ("core", "ui", "burrow")  # Burrow's own logger trees; the pages log as "ui.views.*"
HANDLER_NAME = "burrow"
DEFAULT_LEVEL = "WARNING"
REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter "secrets" (a local server's dummy key) would mangle every line, protecting nothing
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_PATTERNS = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer " + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),
    # user:password@ in any URL, e.g. a database URL that failed to parse and so has no known password
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)
_BURR_STEP_ERROR = "encountered an error!"  # Burr's own report of an action that raised


class Redactor:
    """Replaces secrets in text: the configured ones wherever they appear, then token-shaped strings."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        kept = {secret for secret in secrets if secret and len(secret) >= MIN_SECRET_CHARS}
        self.secrets = tuple(sorted(kept, key=len, reverse=True))  # longest first: no half-redacted key

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def including(self, secrets: Iterable[str | None]) -> "Redactor":
        """This redactor plus more secrets (an old key stays secret after the settings change)."""
        return Redactor((*self.secrets, *secrets))


def secrets_of(settings: Settings | None) -> tuple[str, ...]:
    """The values a log line must never contain: the API key and the database password (as typed and URL-encoded)."""
    if settings is None:
        return ()
    found = [settings.openai_api_key]
    password = _database_password(settings.database_url)
    if password:
        found += [password, quote(password, safe=""), quote_plus(password)]
    return tuple(secret for secret in found if secret)


def _database_password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        return None  # the URL pattern above still catches user:password@


class RedactingFilter(logging.Filter):
    """Redacts a record's formatted message and traceback in place, so every handler after it sees them clean."""

    def __init__(self, redactor: Redactor | None = None):
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format call: the handler reports it when formatting
            return True
        record.msg, record.args = self.redactor(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:  # formatters use exc_text as the traceback once it is set
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


class _BurrStepErrors(logging.Filter):
    """Drops Burr's report of an action that raised one of `reported`, Burrow's own errors.

    Burrow logs those once where they become a message; Burr's report would be a second record,
    and it prints the whole state (the conversation's messages) besides.
    """

    def __init__(self, reported: tuple[type[BaseException], ...]):
        super().__init__()
        self.reported = reported

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, self.reported) and _BURR_STEP_ERROR in str(record.msg))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record arrives (Streamlit and pytest replace it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def burrow_handler() -> logging.Handler | None:
    """The handler configure_logging installed, if it has run in this process."""
    return next((h for h in logging.getLogger(LOGGERS[0]).handlers if h.get_name() == HANDLER_NAME), None)


def configure_logging(settings: Settings | None = None) -> logging.Handler:
    """One stderr handler for Burrow's loggers, at BURROW_LOG_LEVEL, behind the redacting filter.

    Idempotent, as Streamlit reruns the script: a second call adds no handler; it sets the level
    and adds the new settings' secrets. Without settings (they failed to load) the level stays as
    it was, or WARNING. The handler is found by name on the logger, not in a module variable,
    because Streamlit may re-import changed modules.
    """
    handler = burrow_handler()
    level = settings.log_level if settings is not None else None
    if handler is None:
        handler = _new_handler()
        level = level or DEFAULT_LEVEL
    redacting = next(f for f in handler.filters if isinstance(f, RedactingFilter))
    redacting.redactor = redacting.redactor.including(secrets_of(settings))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        if level is not None:
            logger.setLevel(level)
    _quiet_burr_step_errors()
    return handler


def _new_handler() -> logging.Handler:
    handler = _StderrHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    return handler


def _quiet_burr_step_errors() -> None:
    from core.llm import LLMError  # here, not at the top: core.llm imports this module

    burr = logging.getLogger("burr.core.application")
    if not any(isinstance(f, _BurrStepErrors) for f in burr.filters):
        burr.addFilter(_BurrStepErrors((BurrowError, LLMError)))
