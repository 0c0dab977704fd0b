"""share files: an index on trashed nodes by namespace and path

A shared file's namespace is named by its one node's path (``access.load_mounts``, on every
request): the live one through ``uq_nodes_live_path``, a trashed one through this index. The
trash listing of a namespace uses it too.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.create_index('ix_nodes_trashed_path', ['ns_id', 'path'], unique=False,
                              sqlite_where=sa.text('deleted_ms IS NOT NULL'),
                              postgresql_where=sa.text('deleted_ms IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index('ix_nodes_trashed_path',
                            sqlite_where=sa.text('deleted_ms IS NOT NULL'),
                            postgresql_where=sa.text('deleted_ms IS NOT NULL'))
