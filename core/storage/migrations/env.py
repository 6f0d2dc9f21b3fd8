"""Alembic's environment for Burrow, run by `core.storage.migrations` (there is no alembic.ini).

Online, the caller's connection arrives in `config.attributes["connection"]` with its transaction
already begun (and locked): every revision runs inside it, so an upgrade commits whole or not at
all. Offline (`as_sql`), the SQL is written out for review and nothing is connected to.
"""
from __future__ import annotations

from typing import Any

from alembic import context

config = context.config
VERSION_TABLE = config.attributes["version_table"]


def run_online() -> None:
    applied: list[str] = config.attributes.setdefault("applied", [])

    def record(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:  # noqa: ARG001 - Alembic's hook signature
        if not step.is_stamp:
            applied.append(step.up_revision_id)

    context.configure(connection=config.attributes["connection"], version_table=VERSION_TABLE,
                      transaction_per_migration=False, transactional_ddl=True, on_version_apply=record)
    with context.begin_transaction():  # a no-op here: the caller's transaction is the one that commits
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.attributes["url"], version_table=VERSION_TABLE, as_sql=True, literal_binds=True,
                      transaction_per_migration=False, transactional_ddl=True)
    with context.begin_transaction():  # one BEGIN ... COMMIT around the whole script
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
