"""Alembic migrations of the bundle's tables, with their own version table.

Glance keeps its schema version in `alembic_version`; the bundle uses `rax_alembic_version` so
the two never step on each other in the same database.
"""

import os

from alembic import command
from alembic.config import Config

VERSION_TABLE = 'rax_alembic_version'
SCRIPT_LOCATION = os.path.join(os.path.dirname(__file__), 'migrations')


def alembic_config(url):
    config = Config()
    config.set_main_option('script_location', SCRIPT_LOCATION)
    # `%` is alembic's interpolation character; URLs may carry it (escaped passwords).
    config.set_main_option('sqlalchemy.url', url.replace('%', '%%'))
    return config


def db_sync(url, revision='head'):
    command.upgrade(alembic_config(url), revision)


def current_revision(url):
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={'version_table': VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        engine.dispose()
