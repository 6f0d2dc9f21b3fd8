"""Who may do what: the service facade scoped to one user.

`ChatService.as_user(user)` gives a view of the one service that acts for that user. Every facade
method that takes a conversation id is marked `@scoped(...)`: before it runs, the conversation's
owner is looked up (one primary-key read of the catalog), and a conversation of someone else gets
exactly what an unknown id gets (the `unknown` result or error), so its existence is not revealed;
a read also does the reads an unknown id would (`_decoy`), so it takes as long.
Admins (BURROW_ADMINS) may read everyone's conversations (`write=False` methods), never change them.
A conversation nobody has saved yet belongs to whoever sends its first message (`claim`).
tests/core/test_access.py checks every such method is marked and that another user's id is unknown.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from core.errors import InputError, ReadOnlyError, StorageError
from core.text import valid_id
from core.storage import LOCAL_OWNER
from core.users import LOCAL_USER, User, with_admin

if TYPE_CHECKING:
    from core.settings import Settings
    from core.storage import AccountStore, ConversationStore, SQLAlchemyPersister, TokenInfo

F = TypeVar("F", bound=Callable[..., Any])
SCOPED = "__burrow_scoped__"  # the attribute @scoped sets (the test of the facade looks for it)
DECOY = "0" * 32  # a conversation id nothing creates (ids are random; the API refuses ids it did not make)


def scoped(unknown: Any = None, *, write: bool = True) -> Callable[[F], F]:
    """Marks a method whose first argument is a conversation id. `unknown` is what the method returns
    for an id that does not exist: a value, or a callable (self, partition_key, *args) that returns
    or raises it. `write=False` lets admins read."""
    def decorate(method: F) -> F:
        @functools.wraps(method)
        def checked(self: "AccessMixin", partition_key: str, *args: Any, **kwargs: Any) -> Any:
            partition_key = valid_id(partition_key)
            allowed = self._access(partition_key, write)
            if allowed:
                return method(self, partition_key, *args, **kwargs)
            if allowed is None:
                raise ReadOnlyError("This is another user's conversation: as an admin you can read it, not change it.")
            if not write:
                _decoy(method, self, *args, **kwargs)
            return unknown(self, partition_key, *args, **kwargs) if callable(unknown) else copy.copy(unknown)

        setattr(checked, SCOPED, write)
        return checked  # type: ignore[return-value]

    return decorate


def _decoy(method: Callable[..., Any], service: Any, *args: Any, **kwargs: Any) -> None:
    """Does the reads an unknown id costs (on an id that never exists) and drops the result, so that
    another user's id takes as long to refuse as an unknown one takes to find missing. Reads only: a
    change on an unknown id could create something."""
    try:
        method(service, DECOY, *args, **kwargs)
    except (InputError, StorageError, LookupError, ValueError):
        pass  # what an unknown id raises; the caller gets the unknown answer either way


def no_conversation(self: Any, partition_key: str, *args: Any, **kwargs: Any) -> Any:
    """The error for an id the user cannot see, as an unknown id's own would read."""
    raise InputError(f"No conversation {partition_key!r:.60}.")


def not_saved(action: str) -> Callable[..., Any]:
    def fail(self: Any, partition_key: str, *args: Any, **kwargs: Any) -> Any:
        raise StorageError(f"No saved conversation {partition_key!r} to {action}.")

    return fail


class AccessMixin:
    """ChatService's user scope (core/chat.py mixes it in)."""

    user: User = LOCAL_USER
    settings: "Settings"
    _catalog: "ConversationStore"
    _persister: "SQLAlchemyPersister"
    _accounts: "AccountStore"

    def as_user(self, user: User) -> Any:
        """This service acting for `user`: the same database, model and runs (a shallow copy)."""
        view = copy.copy(self)
        view.user = user
        return view

    def may(self, partition_key: str, *, write: bool = True) -> bool:
        """True when the conversation is the user's, does not exist yet, or (reading) the user is an admin."""
        return bool(self._access(partition_key, write))

    def _access(self, partition_key: str, write: bool) -> bool | None:
        """True: allowed; None: an admin writing to another user's conversation; False: not theirs."""
        if self.user.everything or self._single_user():
            return True
        owner = self._catalog.owner(partition_key)
        if owner is None or owner == self.user.subject:
            return True
        return (None if write else True) if self.user.admin else False

    def read_only(self, partition_key: str) -> bool:
        """True for a saved conversation an admin may read but not change (someone else's)."""
        return self.user.admin and self._access(valid_id(partition_key), True) is None

    def visible(self, partition_keys: list[str]) -> list[str]:
        """The ids among these the user may read (one query for the lot)."""
        if self.user.everything or self._single_user() or not partition_keys:
            return list(partition_keys)
        owners = self._catalog.owners(partition_keys)
        return [k for k in partition_keys if owners.get(k) in (None, self.user.subject) or self.user.admin]

    def listing_owner(self, everyone: bool = False) -> str | None:
        """Whose conversations a listing shows: the user's; None (all) for maintenance or an admin asking."""
        return None if self.user.everything or self._single_user() or (everyone and self.user.admin) \
            else self.user.subject

    def may_list_everyone(self) -> bool:
        """Whether `conversations(everyone=True)` lists everyone's: an admin's, or nobody signs in."""
        return self.user.everything or self._single_user() or self.user.admin

    def _single_user(self) -> bool:
        """BURROW_AUTH=none: one person, whose database it all is (even what users saved while sign-in was
        on); nothing to check, so no query and no new way for a turn to fail."""
        return self.settings.auth == "none"

    def owns(self, partition_key: str) -> bool:
        """True for a saved conversation of this user's (not an admin's read of someone else's)."""
        return self._catalog.owner(valid_id(partition_key)) == self.user.subject

    def _claim(self, partition_key: str) -> None:
        """A new conversation's first save makes it this user's (an existing one keeps its owner)."""
        self._persister.claim(partition_key, self.user.subject)

    def people(self, subjects: set[str]) -> dict[str, str]:
        """How to name these users to an admin (e-mail, else name, else subject); nothing for others."""
        if not self.may_list_everyone():
            return {}
        known = self._accounts.users(set(subjects))
        return {s: (known[s].email or known[s].name or s) if s in known else s for s in subjects}

    # ---- conversation ids the API hands out --------------------------------------------------------
    def mint_conversation_id(self) -> str:
        """A new id that every server on this database can tell was made for this user: a conversation
        is saved with its first message, and that message may reach another process than the one that
        made the id (several workers)."""
        nonce = secrets.token_hex(8)
        return nonce + self._id_tag(nonce)

    def minted(self, partition_key: str) -> bool:
        """True for an id `mint_conversation_id` made for this user (on any server of this database)."""
        return len(partition_key) == 32 and hmac.compare_digest(partition_key[16:], self._id_tag(partition_key[:16]))

    def _id_tag(self, nonce: str) -> str:
        """The id's second half: keyed by the database URL (password included), which only the servers know."""
        key = hashlib.sha256(b"burrow conversation ids\0" + self.settings.database_url.encode()).digest()
        return hmac.new(key, f"{self.user.subject}\0{nonce}".encode(), "sha256").hexdigest()[:16]

    # ---- signing in and API tokens ---------------------------------------------------------------
    def signed_in(self, user: User) -> Any:
        """Records a sign-in (for admins' listings and `burrow owner`) and returns the view for `user`."""
        self._accounts.remember(user.subject, user.email, user.name)
        return self.as_user(user)

    def user_for_token(self, token: str) -> User | None:
        """The user an API token belongs to, or None for an unknown or revoked one."""
        subject = self._accounts.owner_of_token(token)
        if subject is None:
            return None
        record = self._accounts.user(subject)
        user = User(subject, record.email, record.name) if record else User(subject)
        return with_admin(user, self.settings)

    def create_token(self, name: str) -> tuple[str, "TokenInfo"]:
        """A new API token of this user's: (the token, shown once; what is kept about it)."""
        return self._accounts.create_token(self.user.subject, name)

    def tokens(self) -> list["TokenInfo"]:
        return self._accounts.tokens(self.user.subject)

    def revoke_token(self, token_id: int) -> bool:
        return self._accounts.revoke(self.user.subject, token_id)

    def hand_over(self, to: str, from_owner: str = LOCAL_OWNER, partition_key: str | None = None) -> tuple[str, int]:
        """Gives `from_owner`'s conversations (or one) to the user `to` names (subject or e-mail, someone
        who has signed in once); (their subject, how many moved). Operators only (`burrow owner`)."""
        if not self.user.everything:
            raise InputError("Only Burrow's own maintenance commands can hand conversations over.")
        found = self._accounts.find(to)
        if len(found) != 1:
            raise InputError(f"No user {to!r:.80} has signed in yet: they must sign in once first." if not found
                             else f"{to!r:.80} names {len(found)} users: give a subject instead.")
        key = valid_id(partition_key) if partition_key is not None else None
        return found[0].subject, self._catalog.hand_over(from_owner, found[0].subject, key)
