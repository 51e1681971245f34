"""The bundle's own tables. They live next to Glance's (prefix `rax_`), never inside them."""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

metadata = sa.MetaData()

# Microseconds matter for sorting and paging; MySQL's DATETIME drops them unless asked.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')

tasks = sa.Table(
    'rax_tasks', metadata,
    sa.Column('id', sa.String(36), primary_key=True),
    sa.Column('type', sa.String(30), nullable=False),
    sa.Column('status', sa.String(30), nullable=False),
    sa.Column('owner', sa.String(255), nullable=False),
    # Who asked, as the background context needs it (user id and roles).
    sa.Column('user_id', sa.String(255), nullable=True),
    sa.Column('roles', sa.Text(), nullable=False),
    sa.Column('input', sa.Text(), nullable=False),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_at', Timestamp, nullable=False),
    sa.Column('updated_at', Timestamp, nullable=False),
    sa.Column('expires_at', Timestamp, nullable=True),
    # Which glance-api process runs the task and until when its claim holds.
    sa.Column('worker', sa.String(255), nullable=True),
    sa.Column('lease_until', Timestamp, nullable=True),
    # JSON: what the running flow has created so far (image id, Swift objects), so a task
    # interrupted by a dead process can be cleaned up by another one.
    sa.Column('work', sa.Text(), nullable=False),
    sa.Index('rax_tasks_owner_created_idx', 'owner', 'created_at'),
    sa.Index('rax_tasks_status_lease_idx', 'status', 'lease_until'),
    sa.Index('rax_tasks_expires_idx', 'expires_at'),
)
