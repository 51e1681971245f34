"""Alembic environment for the bundle's tables (online mode only)."""

import sqlalchemy as sa
from alembic import context

from rax_glance.tasks.db import migration
from rax_glance.tasks.db import models


def run_migrations_online():
    url = context.config.get_main_option('sqlalchemy.url')
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=models.metadata,
                          version_table=migration.VERSION_TABLE,
                          # Only our tables: never autogenerate against Glance's.
                          include_name=lambda name, type_, parent: (
                              type_ != 'table' or name.startswith('rax_')))
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
