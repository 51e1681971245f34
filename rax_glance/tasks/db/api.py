"""Queries on task records. Every read a user can cause is scoped to the owner."""

import datetime
import hashlib
import json
import threading

import sqlalchemy as sa
from oslo_db.sqlalchemy import engines

from rax_glance.tasks.db import models

T = models.tasks

ACTIVE_STATUSES = ('pending', 'processing')
FINAL_STATUSES = ('success', 'failure')
STATUSES = ACTIVE_STATUSES + FINAL_STATUSES
TYPES = ('import', 'export')
SORT_KEYS = ('created_at', 'updated_at', 'id', 'type', 'status')

_ENGINES = {}
_ENGINES_LOCK = threading.Lock()


class InvalidMarker(ValueError):
    """The paging marker names no task visible to the caller."""


class TooManyTasks(Exception):
    """The project already has its limit of unfinished (pending + processing) tasks, or of
    tasks not yet expired (`which` says which)."""

    def __init__(self, max_unfinished, max_visible=0, which='unfinished'):
        super().__init__(max_unfinished, max_visible, which)
        self.max_unfinished = max_unfinished
        self.max_visible = max_visible
        self.which = which


def _owner_lock_key(owner):
    """A signed 64-bit key per project for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(b'rax_tasks:' + owner.encode('utf-8')).digest()[:8],
                          'big', signed=True)


def _lock_name(owner):
    return 'rax_tasks:%x' % (_owner_lock_key(owner) & 0xFFFFFFFFFFFFFFFF)


def _lock_owner(conn, owner):
    """Serialize task creation of one project inside the current transaction.

    sqlite needs nothing: the single INSERT ... SELECT takes the database's write lock
    before it counts. PostgreSQL takes a transaction-scoped advisory lock per project."""
    if conn.dialect.name == 'postgresql':
        conn.execute(sa.text('SELECT pg_advisory_xact_lock(:key)'),
                     {'key': _owner_lock_key(owner)})


def utcnow():
    """Naive UTC, the way the columns store it."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def get_engine(url):
    """One engine (connection pool) per URL and process."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = engines.create_engine(url, sqlite_fk=False, max_retries=3,
                                           retry_interval=1)
            if url.startswith('sqlite'):
                # Several processes share the file: wait for the lock instead of failing.
                @sa.event.listens_for(engine, 'connect')
                def _busy_timeout(dbapi_conn, _record):
                    dbapi_conn.execute('PRAGMA busy_timeout = 30000')
            _ENGINES[url] = engine
        return engine


def _loads(text, default=None):
    return default if text is None else json.loads(text)


def _row_to_task(row):
    task = dict(row._mapping)
    task['input'] = _loads(task['input'], {})
    task['result'] = _loads(task['result'])
    task['roles'] = _loads(task['roles'], [])
    task['work'] = _loads(task['work'], {})
    return task


class TaskRepo:
    """Task records in one database (by default Glance's own)."""

    def __init__(self, engine):
        self.engine = engine

    # -- writes -------------------------------------------------------------------------
    def create(self, task_id, task_type, owner, user_id, roles, task_input, worker,
               lease_seconds, status='pending', message='', max_unfinished=0, max_visible=0):
        """Insert a task. With `max_unfinished` (pending + processing) or `max_visible`
        (every task not yet expired) > 0, the project's tasks are counted in the same
        statement as the insert, under a per-project lock where the database needs one,
        and TooManyTasks is raised when a limit is reached."""
        now = utcnow()
        values = {'id': task_id, 'type': task_type, 'status': status, 'owner': owner,
                  'user_id': user_id, 'roles': json.dumps(list(roles)),
                  'input': json.dumps(task_input), 'result': None, 'message': message,
                  'created_at': now, 'updated_at': now, 'expires_at': None,
                  'worker': worker,
                  'lease_until': now + datetime.timedelta(seconds=lease_seconds),
                  'work': '{}'}
        if not max_unfinished and not max_visible:
            with self.engine.begin() as conn:
                conn.execute(T.insert().values(**values))
            return self.get_any(task_id)
        room = []
        if max_unfinished:
            room.append(self._count(owner, T.c.status.in_(ACTIVE_STATUSES)) < max_unfinished)
        if max_visible:
            room.append(self._count(owner, self._visible(now)) < max_visible)
        cols = list(values)
        insert = T.insert().from_select(
            cols, sa.select(*[sa.literal(values[c], T.c[c].type) for c in cols]).where(*room))
        with self.engine.connect() as conn:
            mysql = conn.dialect.name == 'mysql'
            if mysql:  # a session-scoped named lock, held until after the commit
                got = conn.execute(sa.text('SELECT GET_LOCK(:name, 30)'),
                                   {'name': _lock_name(owner)}).scalar()
                conn.commit()
                if got != 1:
                    raise TooManyTasks(max_unfinished)
            try:
                with conn.begin():
                    _lock_owner(conn, owner)
                    inserted = conn.execute(insert).rowcount
            finally:
                if mysql:
                    conn.execute(sa.text('SELECT RELEASE_LOCK(:name)'),
                                 {'name': _lock_name(owner)})
                    conn.commit()
        if inserted != 1:
            raise TooManyTasks(max_unfinished, max_visible, self._which_limit(
                owner, now, max_unfinished, max_visible))
        return self.get_any(task_id)

    @staticmethod
    def _count(owner, condition):
        return sa.select(sa.func.count()).select_from(T).where(
            T.c.owner == owner, condition).scalar_subquery()

    def _which_limit(self, owner, now, max_unfinished, max_visible):
        """'unfinished' or 'visible': which limit refused (for the message only)."""
        if not max_visible:
            return 'unfinished'
        if not max_unfinished:
            return 'visible'
        with self.engine.connect() as conn:
            unfinished = conn.execute(sa.select(self._count(
                owner, T.c.status.in_(ACTIVE_STATUSES)))).scalar()
        return 'unfinished' if unfinished >= max_unfinished else 'visible'

    def claim(self, task_id, worker, lease_seconds):
        """pending -> processing, only for the worker that holds the task."""
        now = utcnow()
        with self.engine.begin() as conn:
            res = conn.execute(T.update().where(
                T.c.id == task_id, T.c.status == 'pending', T.c.worker == worker).values(
                status='processing', updated_at=now,
                lease_until=now + datetime.timedelta(seconds=lease_seconds)))
        return res.rowcount == 1

    def renew_leases(self, worker, lease_seconds):
        now = utcnow()
        with self.engine.begin() as conn:
            res = conn.execute(T.update().where(
                T.c.worker == worker, T.c.status.in_(ACTIVE_STATUSES)).values(
                lease_until=now + datetime.timedelta(seconds=lease_seconds)))
        return res.rowcount

    def record_work(self, task_id, worker, work):
        """Remember what the flow created so far (replaces the previous record)."""
        with self.engine.begin() as conn:
            conn.execute(T.update().where(T.c.id == task_id, T.c.worker == worker).values(
                work=json.dumps(work), updated_at=utcnow()))

    def finish(self, task_id, worker, status, ttl_hours, result=None, message=''):
        """Final state; a worker that lost its claim (fenced) changes nothing."""
        assert status in FINAL_STATUSES
        now = utcnow()
        with self.engine.begin() as conn:
            res = conn.execute(T.update().where(
                T.c.id == task_id, T.c.worker == worker,
                T.c.status.in_(ACTIVE_STATUSES)).values(
                status=status, message=message,
                result=None if result is None else json.dumps(result),
                updated_at=now, expires_at=now + datetime.timedelta(hours=ttl_hours),
                lease_until=None, work='{}'))
        return res.rowcount == 1

    def take_over(self, task, worker, lease_seconds):
        """Compare-and-set the claim of an orphaned task; True when this worker won it."""
        now = utcnow()
        with self.engine.begin() as conn:
            res = conn.execute(T.update().where(
                T.c.id == task['id'], T.c.worker == task['worker'],
                T.c.status == task['status']).values(
                worker=worker, lease_until=now + datetime.timedelta(seconds=lease_seconds)))
        return res.rowcount == 1

    def purge_expired(self, now=None):
        now = now or utcnow()
        expired = sa.and_(T.c.expires_at.is_not(None), T.c.expires_at <= now)
        # Look before writing: glance-api calls this periodically, and on sqlite even a
        # DELETE of nothing takes the write lock a concurrent Glance request may need.
        with self.engine.connect() as conn:
            if conn.execute(sa.select(T.c.id).where(expired).limit(1)).first() is None:
                return 0
        with self.engine.begin() as conn:
            res = conn.execute(T.delete().where(expired))
        return res.rowcount

    # -- reads --------------------------------------------------------------------------
    def _visible(self, now):
        return sa.or_(T.c.expires_at.is_(None), T.c.expires_at > now)

    def get(self, task_id, owner):
        """The owner's task, or None (also for another project's or an expired task)."""
        query = sa.select(T).where(T.c.id == task_id, T.c.owner == owner,
                                   self._visible(utcnow()))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _row_to_task(row) if row else None

    def get_any(self, task_id):
        """Internal: a task by id whoever owns it (executor and recovery only)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(T).where(T.c.id == task_id)).first()
        return _row_to_task(row) if row else None

    def list(self, owner, filters=None, sort_key='created_at', sort_dir='desc', limit=25,
             marker=None):
        """One page of the owner's tasks, sorted with `id` as the tie breaker."""
        if sort_key not in SORT_KEYS or sort_dir not in ('asc', 'desc'):
            raise ValueError('bad sort %s %s' % (sort_key, sort_dir))
        now = utcnow()
        conds = [T.c.owner == owner, self._visible(now)]
        for key, value in (filters or {}).items():
            conds.append(T.c[key] == value)
        key_col = T.c[sort_key]
        order = sa.desc if sort_dir == 'desc' else sa.asc
        query = sa.select(T).where(*conds)
        with self.engine.connect() as conn:
            if marker is not None:
                mrow = conn.execute(sa.select(T).where(
                    T.c.id == marker, T.c.owner == owner, self._visible(now))).first()
                if mrow is None:
                    raise InvalidMarker(marker)
                mkey = mrow._mapping[sort_key]
                if sort_dir == 'desc':
                    after = sa.or_(key_col < mkey, sa.and_(key_col == mkey, T.c.id < marker))
                else:
                    after = sa.or_(key_col > mkey, sa.and_(key_col == mkey, T.c.id > marker))
                query = query.where(after)
            query = query.order_by(order(key_col), order(T.c.id)).limit(limit)
            rows = conn.execute(query).all()
        return [_row_to_task(r) for r in rows]

    def active(self):
        """Internal: every task still pending or processing (for recovery)."""
        query = sa.select(T).where(T.c.status.in_(ACTIVE_STATUSES))
        with self.engine.connect() as conn:
            return [_row_to_task(r) for r in conn.execute(query).all()]
