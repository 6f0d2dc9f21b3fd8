"""Schema 0010: PostgreSQL's search index keys each word by the block of rows it is in (SQLite: unchanged).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Search ranks the newest matches of a query. A plain GIN index on `tsv` cannot read its matches newest
first: a short prefix ("kar" as it is typed) expands to tens of thousands of rows that were all read
and sorted to keep the newest 2,000. Here each lexeme is indexed as "<block>~<lexeme>", the block being
the row's id >> 16 (65,536 consecutive rows; ids only grow, so a row never changes block). A query for
the newest matches asks for the newest blocks first (core/storage/search.py) and stops when it has
enough, like a table partitioned by id, without partitions to maintain.
- `burrow_search_block(id)`: the block of a row (the width is stated here only: search.py asks for it).
- `burrow_search_terms(id, tsv)`: the keyed lexemes, no positions (the GIN index's expression). Its
  high COST keeps the planner from any plan that computes it row by row instead of using the index.
- `burrow_search_query(q, blocks)`: q rewritten for those blocks, OR-ed, phrases as AND (immutable, so
  a query of constants is folded to a constant tsquery before planning).
- The GIN index `ix_burrow_search_messages_terms` replaces `ix_burrow_search_messages_tsv`; the stored
  `tsv` column stays (ranking, headlines, rechecks).
A release at 0009 refuses this database (Alembic releases refuse newer revisions).
Frozen: every body is written out here.
"""
from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BITS = 16  # a block is 2 ** BITS consecutive ids

_BLOCK = f"""
CREATE FUNCTION burrow_search_block(id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT id >> {BITS} $$"""

# A tsvector holds words of at most 2,047 bytes and 1 MB of them in all: a word with no room left for
# its block is left out, and so are the last words of a message at the 1 MB mark, rather than fail the
# save. Only pg_catalog is named (maintenance commands run index expressions with search_path = pg_catalog).
_TERMS = f"""
CREATE FUNCTION burrow_search_terms(id bigint, tsv tsvector) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 10000 AS $$
  SELECT coalesce(pg_catalog.array_to_tsvector(pg_catalog.array_agg(k)), ''::pg_catalog.tsvector)
  FROM (SELECT (id >> {BITS})::text || '~' || l AS k,
               pg_catalog.sum(pg_catalog.octet_length(l) + 20) OVER (ORDER BY l) AS upto
        FROM pg_catalog.unnest(pg_catalog.tsvector_to_array(tsv)) AS l
        WHERE pg_catalog.octet_length(l) <= 2030) AS keyed
  WHERE upto < 1000000 $$"""

# Each quoted lexeme 'x' (quotes inside doubled) of q's text form becomes 'B~x', once per block. The
# keyed lexemes have no positions, so a phrase (<->, <N>) is asked of them as AND: search also matches
# the stored tsv, which checks the order. (Search's lexemes are words: none holds a '<'.)
_QUERY = r"""
CREATE FUNCTION burrow_search_query(q tsquery, blocks bigint[]) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN pg_catalog.numnode(q) = 0 THEN q ELSE (
    SELECT pg_catalog.string_agg('(' || pg_catalog.regexp_replace(
             pg_catalog.regexp_replace(q::text, '<(-|[0-9]+)>', '&', 'g'),
             '''((?:[^'']|'''')*)''', '''' || b || '~\1''', 'g') || ')', ' | ')::pg_catalog.tsquery
    FROM pg_catalog.unnest(blocks) AS b) END $$"""


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    for statement in (_BLOCK, _TERMS, _QUERY):
        op.execute(statement)
    op.execute("CREATE INDEX ix_burrow_search_messages_terms ON burrow_search_messages "
               "USING gin (burrow_search_terms(id, tsv))")
    op.execute("DROP INDEX ix_burrow_search_messages_tsv")


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")
