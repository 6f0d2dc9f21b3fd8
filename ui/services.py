"""The process-wide `ChatService`, built once from settings, and the pages shown when that fails.

`st.cache_resource` keeps only successful results: a failed start (bad setting, database down)
is retried on the next rerun, so the app recovers without a restart once the cause is fixed.
Logging is set up here too, where the settings are read; a start-up error, or a database error a
page hands to `storage_error`, is logged here, once, as it becomes the page the user sees.

The service owns the replies being written (on its worker threads, not in any page's script run),
so it is closed when the process ends (Ctrl+C or SIGTERM of `streamlit run`: `atexit`) or when its
cache entry is dropped (`on_release`): running replies are stopped and saved as stopped, not cut off.
"""
from __future__ import annotations

import atexit
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import streamlit as st
from streamlit import config
from streamlit.errors import StreamlitSecretNotFoundError

from core.chat import ChatService
from core.errors import SchemaVersionError, StorageError
from core.logs import configure_logging
from core.retention import start_pruning
from core.settings import Settings, SettingsError, read_secrets_file
from ui import account

log = logging.getLogger(__name__)


def secrets_mapping() -> dict[str, Any]:
    """`.streamlit/secrets.toml` as a dict; none at all is fine, a broken one is a SettingsError."""
    try:
        return st.secrets.to_dict()
    except StreamlitSecretNotFoundError:
        for path in config.get_option("secrets.files"):
            read_secrets_file(Path(path))  # raises, naming the file, when it exists but is not valid TOML
        return {}


_PRUNERS: dict[int, Callable[[], None]] = {}  # id(service) -> stops its retention pruning


def _release(service: ChatService) -> None:
    _PRUNERS.pop(id(service), lambda: None)()
    atexit.unregister(service.close)
    service.close()


@st.cache_resource(show_spinner="Connecting to the database…", on_release=_release)
def _service(settings: Settings) -> ChatService:
    configure_logging(settings)  # once per process (per settings): before anything below can log
    service = ChatService.from_settings(settings)
    atexit.register(service.close)
    _PRUNERS[id(service)] = start_pruning(service)  # BURROW_RETENTION_DAYS; nothing when it is unset
    return service


def get_service() -> ChatService:
    """The shared service acting for the signed-in user (ui/account.py: the sign-in page when nobody
    is); on a settings or database problem, renders a help page and stops the run."""
    try:
        secrets = secrets_mapping()
        settings = Settings.load(secrets=secrets)
    except SettingsError as exc:
        _settings_error(exc)
    try:
        service = _service(settings)
        return service.as_user(account.current_user(service, settings, secrets))
    except SettingsError as exc:  # BURROW_AUTH=oidc without a complete [auth]
        _settings_error(exc)
    except StorageError as exc:
        storage_error(exc)


def _settings_error(exc: SettingsError) -> NoReturn:
    configure_logging()  # no settings to take the level from: the defaults, so the line below is redacted
    log.error("Burrow's settings are not valid: %s", exc, exc_info=exc)
    startup_error("Burrow's settings are not valid", str(exc), SETTINGS_HELP)


SETTINGS_HELP = """
**What to check**
- The variable named above, in your environment or in `.streamlit/secrets.toml`
  (see `.streamlit/secrets.toml.example` for every setting and its format).
- Fix it, then press **Try again**; Streamlit re-reads `secrets.toml` on its own, environment variables need a restart.
"""

STORAGE_HELP = """
**What to check**
- `BURROW_DATABASE_URL`: for PostgreSQL, that the server is running and reachable and the user, password and
  database name are right; for SQLite, that the file's folder exists and is writable.
- Nothing typed is lost: conversations are in the database, and Burrow reconnects as soon as it is back.
  Press **Try again** once it is.
"""


def startup_error(title: str, detail: str, help_text: str) -> NoReturn:
    """A readable error page (never a traceback) with a retry button, then stops the script run."""
    st.error(f"**{title}.** {detail}", icon=":material/error:")
    st.markdown(help_text)
    st.button("Try again", type="primary", icon=":material/refresh:")
    st.stop()


SCHEMA_HELP = """
**What to check**
- `BURROW_DATABASE_URL`: it points at a database that a newer Burrow release upgraded. This release leaves it
  untouched rather than risk what the newer one wrote.
- Upgrade Burrow where this app runs, or point `BURROW_DATABASE_URL` at another database, then restart.
"""


def storage_error(exc: StorageError) -> NoReturn:
    """A database error at start or in the middle of a page: logged, then the help page (Try again reloads).
    A database from a newer release is not an outage: it gets its own heading and advice."""
    title, help_text = (("This database belongs to a newer Burrow", SCHEMA_HELP) if isinstance(exc, SchemaVersionError)
                        else ("The database is not available", STORAGE_HELP))
    log.error("%s: %s", title, exc, exc_info=exc)
    startup_error(title, str(exc), help_text)
