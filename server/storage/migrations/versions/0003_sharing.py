"""sharing: share members (mounts), link shares, role column on journal entries

Revision ID: 0003
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('share_members',
    sa.Column('ns_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('can_reshare', sa.Boolean(), nullable=False),
    sa.Column('mount_path', sa.String(length=4096), nullable=False),
    sa.Column('added_by', sa.Integer(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['ns_id'], ['namespaces.id'], name=op.f('fk_share_members_ns_id_namespaces'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_share_members_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('ns_id', 'user_id', name=op.f('pk_share_members'))
    )
    with op.batch_alter_table('share_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_share_members_user_id'), ['user_id'], unique=False)

    op.create_table('links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('ns_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Integer(), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('expires_ms', sa.BigInteger(), nullable=True),
    sa.Column('revoked_ms', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_links_created_by_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ns_id'], ['namespaces.id'], name=op.f('fk_links_ns_id_namespaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_links_token_hash'))
    )
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_links_created_by'), ['created_by'], unique=False)
        batch_op.create_index(batch_op.f('ix_links_ns_id'), ['ns_id'], unique=False)

    with op.batch_alter_table('journal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('journal', schema=None) as batch_op:
        batch_op.drop_column('role')
    op.drop_table('links')
    op.drop_table('share_members')
