"""SQLAlchemy engine plugin: an sqlite database that holds a handful of parallel clients.

Glance opens its database through oslo.db, which starts every transaction with a deferred
`BEGIN`. With several glance-api workers and threads on one sqlite file, a transaction that
read first and writes later cannot get the write lock while another writer commits: sqlite
then answers "database is locked" at once (its busy timeout does not apply to that upgrade),
and Glance answers 500 to image PATCH and tag PUT/DELETE.

Named in the connection URL, `sqlite:////path/glance.sqlite?plugin=rax_glance_sqlite`, this
plugin makes each transaction of such an engine start with `BEGIN IMMEDIATE` (it takes the
write lock first and waits for it), and gives each connection a 60 s busy timeout. Writers
then queue instead of failing. The dev stack also puts the file in WAL journal mode (readers
do not block the writer). It only acts on sqlite engines whose transactions oslo.db begins
itself (the driver's own transaction handling is off); other engines are left alone.

sqlite stays a single-host, few-clients database: production Glance runs on a server database.
"""

import sqlalchemy
from sqlalchemy.engine import CreateEnginePlugin

BUSY_TIMEOUT_MS = 60000


def _on_connect(dbapi_connection, _record):
    dbapi_connection.execute('PRAGMA busy_timeout = %d' % BUSY_TIMEOUT_MS)


def _on_begin(conn):
    dbapi_connection = conn.connection.dbapi_connection
    # oslo.db turns the driver's implicit BEGIN off (isolation_level None) and emits a plain
    # BEGIN itself unless `in_transaction` is already set: take its place with BEGIN IMMEDIATE.
    if getattr(dbapi_connection, 'isolation_level', '') is not None:
        return
    if 'in_transaction' not in conn.info:
        conn.exec_driver_sql('BEGIN IMMEDIATE')
        conn.info['in_transaction'] = True


class SqliteImmediate(CreateEnginePlugin):
    """Entry point `sqlalchemy.plugins: rax_glance_sqlite`."""

    def update_url(self, url):
        return url  # no options of its own (SQLAlchemy removes `plugin` itself)

    def engine_created(self, engine):
        if engine.dialect.name != 'sqlite':
            return
        # Registered before oslo.db's own listeners (it adds them after create_engine).
        sqlalchemy.event.listen(engine, 'connect', _on_connect)
        sqlalchemy.event.listen(engine, 'begin', _on_begin)


def enable_wal(path):
    """Put an sqlite database file in WAL journal mode (a property of the file)."""
    import sqlite3

    with sqlite3.connect(path, timeout=60) as db:
        mode = db.execute('PRAGMA journal_mode = WAL').fetchone()[0]
    if mode.lower() != 'wal':
        raise RuntimeError('cannot put %s in WAL mode (got %s)' % (path, mode))
