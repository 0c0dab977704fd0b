"""coedit: coedit_docs holds each co-edited document's CRDT state and the revision it is based on

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
    op.create_table(
        'coedit_docs',
        sa.Column('file_id', sa.Integer(), nullable=False),
        sa.Column('ns_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.LargeBinary(), nullable=False),
        sa.Column('base_rev', sa.Integer(), nullable=True),
        sa.Column('base_state', sa.LargeBinary(), nullable=False),
        sa.Column('updated_ms', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['file_id'], ['nodes.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['ns_id'], ['namespaces.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('file_id'),
    )
    op.create_index('ix_coedit_docs_ns_id', 'coedit_docs', ['ns_id'])


def downgrade() -> None:
    op.drop_index('ix_coedit_docs_ns_id', table_name='coedit_docs')
    op.drop_table('coedit_docs')
