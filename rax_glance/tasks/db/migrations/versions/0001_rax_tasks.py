"""Task records of the Cloud Images tasks API.

Revision ID: 0001_rax_tasks
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0001_rax_tasks'
down_revision = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    op.create_table(
        'rax_tasks',
        sa.Column('id', sa.String(36), primary_key=True),
        sa.Column('type', sa.String(30), nullable=False),
        sa.Column('status', sa.String(30), nullable=False),
        sa.Column('owner', sa.String(255), nullable=False),
        sa.Column('user_id', sa.String(255), nullable=True),
        sa.Column('roles', sa.Text(), nullable=False),
        sa.Column('input', sa.Text(), nullable=False),
        sa.Column('result', sa.Text(), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('created_at', Timestamp, nullable=False),
        sa.Column('updated_at', Timestamp, nullable=False),
        sa.Column('expires_at', Timestamp, nullable=True),
        sa.Column('worker', sa.String(255), nullable=True),
        sa.Column('lease_until', Timestamp, nullable=True),
        sa.Column('work', sa.Text(), nullable=False),
        mysql_engine='InnoDB', mysql_charset='utf8mb4',
    )
    op.create_index('rax_tasks_owner_created_idx', 'rax_tasks', ['owner', 'created_at'])
    op.create_index('rax_tasks_status_lease_idx', 'rax_tasks', ['status', 'lease_until'])
    op.create_index('rax_tasks_expires_idx', 'rax_tasks', ['expires_at'])


def downgrade():
    op.drop_table('rax_tasks')
