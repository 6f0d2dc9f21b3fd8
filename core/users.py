"""Who is using Burrow: the signed-in user, from the mode BURROW_AUTH chooses.

- `none`: one local user owns everything (a single person on their own machine).
- `oidc`: Streamlit's `st.login` with an OpenID Connect provider (`[auth]` in secrets.toml); the
  user's subject is the provider's `sub` claim with its issuer, never the e-mail (which can change
  or be given to someone else later).
- `proxy`: a reverse proxy that has already signed the user in (oauth2-proxy and the like) names
  them in a header. Only safe when nothing can reach Burrow except through that proxy.

The HTTP API does not sign anyone in: outside `none` it takes personal API tokens made in the UI.
Nothing here imports Streamlit: the UI hands in `st.user` and the request headers as mappings.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from core.settings import Settings, SettingsError
from core.storage import LOCAL_OWNER

SUBJECT_CHARS = 255  # the owner column's width


@dataclasses.dataclass(frozen=True)
class User:
    """A user as the service scopes by it: `subject` is what their conversations' owner holds."""

    subject: str
    email: str | None = None
    name: str | None = None
    admin: bool = False  # may read (never change) everyone's conversations
    everything: bool = False  # may read and change everyone's: retention and operators' commands, never a person

    @property
    def label(self) -> str:
        return self.name or self.email or "Signed-in user"


LOCAL_USER = User(LOCAL_OWNER, None, "Local user")
MAINTENANCE = User("burrow:maintenance", None, "Burrow maintenance", everything=True)  # owns nothing itself


def with_admin(user: User, settings: Settings) -> User:
    """The user, marked admin when BURROW_ADMINS names their subject or e-mail."""
    names = {user.subject.lower(), (user.email or "").lower()} - {""}
    return dataclasses.replace(user, admin=bool(names & set(settings.admins)))


def oidc_user(claims: Mapping[str, Any], settings: Settings) -> User | None:
    """The user of an OpenID Connect sign-in (Streamlit's `st.user`), or None when there is none."""
    subject, issuer = claims.get("sub"), claims.get("iss") or ""
    if not subject:
        return None
    owner = f"oidc:{issuer}|{subject}"[:SUBJECT_CHARS]
    email = claims.get("email") if claims.get("email_verified", True) is not False else None
    return with_admin(User(owner, _text(email), _text(claims.get("name"))), settings)


def proxy_user(headers: Mapping[str, str], settings: Settings) -> User | None:
    """The user a trusted proxy named in BURROW_PROXY_USER_HEADER, or None without that header."""
    wanted = settings.proxy_user_header.lower()
    value = next((v for k, v in headers.items() if k.lower() == wanted), "")
    value = (value or "").strip()
    if not value or len(value) > SUBJECT_CHARS - 6 or any(ord(c) < 32 for c in value):
        return None
    email = value if "@" in value else None
    return with_admin(User(f"proxy:{value.lower()}", email, value), settings)


OIDC_KEYS = ("client_id", "client_secret", "server_metadata_url")


def oidc_providers(secrets: Mapping[str, Any]) -> list[str | None]:
    """The providers `[auth]` in secrets.toml configures (None: the one unnamed provider); raises
    SettingsError naming what is missing, so BURROW_AUTH=oidc never starts half-configured."""
    auth = secrets.get("auth")
    if not isinstance(auth, Mapping):
        raise SettingsError("BURROW_AUTH=oidc needs an [auth] section in .streamlit/secrets.toml "
                            "(redirect_uri, cookie_secret and a provider; see the README's Sign-in section)")
    missing = [key for key in ("redirect_uri", "cookie_secret") if not auth.get(key)]
    if missing:
        raise SettingsError(f"[auth] in .streamlit/secrets.toml is missing {', '.join(missing)}")
    named = [name for name, value in auth.items() if isinstance(value, Mapping)]
    providers: list[str | None] = [None] if all(auth.get(k) for k in OIDC_KEYS) else []
    for name in named:
        if lacking := [k for k in OIDC_KEYS if not auth[name].get(k)]:
            raise SettingsError(f"[auth.{name}] in .streamlit/secrets.toml is missing {', '.join(lacking)}")
        providers.append(name)
    if not providers:
        raise SettingsError("[auth] in .streamlit/secrets.toml names no provider: give client_id, client_secret "
                            "and server_metadata_url (or an [auth.<name>] section with them)")
    return providers


def _text(value: Any) -> str | None:
    return str(value).strip()[:320] or None if value else None
