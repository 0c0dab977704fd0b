"""chunk proof: upload_chunks.received marks chunks an upload session delivered itself

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('upload_chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('received', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('upload_chunks', schema=None) as batch_op:
        batch_op.drop_column('received')
