"""Users who signed in and their API tokens: the `burrow_users` and `burrow_api_tokens` tables, read and
written here only. Which conversations a user owns is the catalog's (`burrow_conversations.owner`).

A token is shown once, when it is made; the database keeps its SHA-256 only, so a copy of the
database (or a backup) cannot be used to call the API. Tokens are long random strings, so a plain
hash is enough (no salt or slow hash: nothing to guess).
"""
from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.errors import InputError
from core.storage.schema import ApiToken, User, as_utc
from core.text import plain_text

if TYPE_CHECKING:
    from core.storage.engine import Database

TOKEN_PREFIX = "burrow_"  # says what a leaked string is (secret scanners can match it)
MAX_TOKENS = 50  # per user
LAST_USE_STEP = 60  # seconds: last-use times are written at most this often per token (not on every call)


@dataclasses.dataclass(frozen=True)
class UserRecord:
    subject: str
    email: str | None
    name: str | None
    created_at: datetime
    last_seen_at: datetime


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """A token as its owner sees it in the list: never the token itself."""

    id: int
    owner: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AccountStore:
    """Remembers who signed in; makes, checks, lists and revokes API tokens."""

    def __init__(self, database: "Database"):
        self.database = database

    # ---- users --------------------------------------------------------------------------------
    def remember(self, subject: str, email: str | None, name: str | None) -> None:
        """Records a sign-in (first time: a new row; then e-mail, name and last-seen are refreshed)."""
        now = datetime.now(timezone.utc)
        values = dict(subject=subject, email=email, name=name, created_at=now, last_seen_at=now)

        def work(conn: Connection) -> None:
            insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(User.__table__)
            conn.execute(insert.values(**values).on_conflict_do_update(
                index_elements=[User.subject], set_=dict(email=email, name=name, last_seen_at=now)))

        self.database.write(work)

    def user(self, subject: str) -> UserRecord | None:
        query = select(User).where(User.subject == subject)
        return self.database.read(lambda conn: next((_user(row) for row in conn.execute(query)), None))

    def find(self, who: str) -> list[UserRecord]:
        """Users whose subject is `who`, or whose e-mail is (case-insensitive): more than one means the
        e-mail is ambiguous (two providers, or a reused address)."""
        query = select(User).where((User.subject == who) | (func.lower(User.email) == who.strip().lower()))
        return self.database.read(lambda conn: [_user(row) for row in conn.execute(query)])

    def users(self, subjects: set[str]) -> dict[str, UserRecord]:
        if not subjects:
            return {}
        query = select(User).where(User.subject.in_(sorted(subjects)))
        return self.database.read(lambda conn: {row.subject: _user(row) for row in conn.execute(query)})

    # ---- API tokens ---------------------------------------------------------------------------
    def create_token(self, owner: str, name: str) -> tuple[str, TokenInfo]:
        """A new token for `owner`: (the token, shown once; what is stored about it)."""
        name = plain_text(name or "").strip()[:100]
        if not name:
            raise InputError("Give the token a name, so you know later what uses it.")
        token, now = TOKEN_PREFIX + secrets.token_urlsafe(32), datetime.now(timezone.utc)

        def work(conn: Connection) -> int:
            count = conn.execute(select(func.count()).select_from(ApiToken).where(ApiToken.owner == owner)).scalar()
            if count >= MAX_TOKENS:
                raise InputError(f"You have {count} API tokens, the most there can be. Revoke one first.")
            return conn.execute(ApiToken.__table__.insert().values(
                owner=owner, name=name, token_hash=token_hash(token), created_at=now).returning(ApiToken.id)).scalar()

        token_id = self.database.write(work)
        return token, TokenInfo(token_id, owner, name, now, None)

    def tokens(self, owner: str) -> list[TokenInfo]:
        query = select(ApiToken).where(ApiToken.owner == owner).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        return self.database.read(lambda conn: [_token(row) for row in conn.execute(query)])

    def revoke(self, owner: str, token_id: int) -> bool:
        """Deletes one of `owner`'s tokens; False if it has no such token (someone else's is not theirs)."""
        statement = delete(ApiToken).where(ApiToken.owner == owner, ApiToken.id == token_id)
        return self.database.write(lambda conn: conn.execute(statement).rowcount > 0)

    def owner_of_token(self, token: str) -> str | None:
        """The owner of a valid token (and its last use noted), or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        query = select(ApiToken.id, ApiToken.owner, ApiToken.last_used_at).where(
            ApiToken.token_hash == token_hash(token))
        row = self.database.read(lambda conn: conn.execute(query).first())
        if row is None:
            return None
        now = datetime.now(timezone.utc)
        if row.last_used_at is None or (now - as_utc(row.last_used_at)).total_seconds() >= LAST_USE_STEP:
            self.database.write(lambda conn: conn.execute(
                update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now)))
        return row.owner


def _user(row: Any) -> UserRecord:
    return UserRecord(row.subject, row.email, row.name, as_utc(row.created_at), as_utc(row.last_seen_at))


def _token(row: Any) -> TokenInfo:
    return TokenInfo(row.id, row.owner, row.name, as_utc(row.created_at),
                     as_utc(row.last_used_at) if row.last_used_at else None)
