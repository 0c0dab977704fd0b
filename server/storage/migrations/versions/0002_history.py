"""history: trash roots, quota reservations, search index

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# PostgreSQL: one weighted tsvector per node (A name, B folder path, C text content), kept by the
# database from the three word columns; SQLite: an FTS5 table with the same three columns.
PG_TSV = ("setweight(to_tsvector('simple', name), 'A') || setweight(to_tsvector('simple', path), 'B')"
          " || setweight(to_tsvector('simple', body), 'C')")


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trash_root_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_nodes_trash_root_id'), ['trash_root_id'], unique=False)
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reserved_bytes', sa.BigInteger(), server_default='0', nullable=False))
    # Trashed before this version: each entry is its own trash item.
    op.execute("UPDATE nodes SET trash_root_id = id WHERE deleted_ms IS NOT NULL")

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "CREATE TABLE search_docs (node_id integer PRIMARY KEY, ns_id integer NOT NULL, "
            "name text NOT NULL DEFAULT '', path text NOT NULL DEFAULT '', body text NOT NULL DEFAULT '', "
            f"tsv tsvector GENERATED ALWAYS AS ({PG_TSV}) STORED)")
        op.execute("CREATE INDEX ix_search_docs_tsv ON search_docs USING gin (tsv)")
        op.execute("CREATE INDEX ix_search_docs_ns_id ON search_docs (ns_id)")
        op.execute(
            "INSERT INTO search_docs (node_id, ns_id, name, path) SELECT id, ns_id, "
            "lower(regexp_replace(regexp_replace(path, '^.*/', ''), '[^[:alnum:]]+', ' ', 'g')), "
            "lower(regexp_replace(parent_path, '[^[:alnum:]]+', ' ', 'g')) FROM nodes WHERE deleted_ms IS NULL")
    else:
        op.execute("CREATE VIRTUAL TABLE search_fts USING fts5(ns UNINDEXED, name, path, body, "
                   "tokenize = 'unicode61 remove_diacritics 2')")
        op.execute(
            "INSERT INTO search_fts (rowid, ns, name, path, body) SELECT id, ns_id, "
            "replace(path, rtrim(path, replace(path, '/', '')), ''), parent_path, '' "
            "FROM nodes WHERE deleted_ms IS NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TABLE search_docs")
    else:
        op.execute("DROP TABLE search_fts")
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_column('reserved_bytes')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_trash_root_id'))
        batch_op.drop_column('trash_root_id')
