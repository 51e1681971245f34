"""The `jobboard` task executor: each task's flow becomes a job on a TaskFlow jobboard.

glance-api only records the task (as with every executor) and posts a job; any number of
`rax-glance-conductor` processes on any hosts claim the jobs and run the flows. Flow state
lives in TaskFlow's SQL persistence (a logbook with one flow detail per task, by default in
the Glance database), and the flow factory is saved in that flow detail, so whichever
conductor claims a job rebuilds the same flow and resumes it from its persisted state.

The board is Redis by default (`[rax_jobboard] board = redis`); ZooKeeper (`zookeeper`,
needs the `kazoo` package) and etcd are a matter of configuration: the board type, hosts and
any backend option come from `[rax_jobboard]`.

Every flow runs wrapped between the two bookkeeping atoms of `lifecycle.wrap` (see
`flow_factory`), as in the in-process executor: the first one's revert records the task's
failure and message, the last one records success and `result`. So task status and
messages do not depend on the executor.
"""

import contextlib
import json
import random
import threading
import time

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import netutils
from oslo_utils import uuidutils
from taskflow.persistence.backends import impl_sqlalchemy

from rax_glance.tasks import executor as executor_mod
from rax_glance.tasks import lifecycle
from rax_glance.tasks import messages
from rax_glance.tasks import options as task_options

LOG = logging.getLogger(__name__)

GROUP = 'rax_jobboard'
JOB_PREFIX = 'rax-glance-task-'

OPTS = [
    cfg.StrOpt('board', default='redis',
               help='TaskFlow jobboard backend (a `taskflow.jobboards` entry point): '
                    '`redis` (the default), `zookeeper` (install `kazoo`) or `etcd`. '
                    'glance-api and every rax-glance-conductor must use the same board.'),
    cfg.ListOpt('hosts', default=['127.0.0.1:6379'],
                help='host:port of the board\'s servers. Redis uses the first one; '
                     'ZooKeeper gets all of them as its ensemble.'),
    cfg.StrOpt('password', secret=True,
               help='Password of the Redis server (AUTH), when it requires one.'),
    cfg.StrOpt('board_name', default='rax-glance',
               help='Name of the jobboard: the Redis key namespace, or the ZooKeeper '
                    'path `/<board_name>/jobs`. Deployments sharing a board server keep '
                    'apart by name.'),
    cfg.DictOpt('board_options', default={},
                help='Further backend options passed to the jobboard as they are, e.g. '
                     '`db:1,socket_timeout:5` for Redis or `timeout:20` for ZooKeeper.'),
    cfg.FloatOpt('claim_expiry', default=60.0, min=1.0,
                 help='Seconds a conductor\'s claim on a job lasts unless renewed (Redis '
                      'and etcd; ZooKeeper claims end with the conductor\'s session). A '
                      'running conductor renews its claims every third of this; when it '
                      'dies, another conductor takes the job over after at most this long.'),
    cfg.StrOpt('persistence_connection', secret=True,
               help='SQLAlchemy URL of TaskFlow\'s flow state (logbooks, flow and atom '
                    'details). Unset (the default): the Glance database of `[database] '
                    'connection`, in TaskFlow\'s own tables (`logbooks`, `flowdetails`, '
                    '`atomdetails`), created on first use.'),
    cfg.StrOpt('conductor_type', default='blocking', choices=['blocking', 'nonblocking'],
               help='`blocking` runs the jobs a conductor claims one after the other in '
                    'its main thread; `nonblocking` runs up to `max_simultaneous_jobs` at '
                    'once in a thread pool.'),
    cfg.IntOpt('max_simultaneous_jobs', default=2, min=1,
               help='Most jobs one nonblocking conductor works on at once (a blocking '
                      'conductor works on one).'),
    cfg.StrOpt('conductor_name',
               help='Name of this conductor on the board (claims are recorded under it, '
                    'with the host and pid). The host name when unset.'),
    cfg.IntOpt('orphan_grace_seconds', default=300, min=10,
               help='A pending or processing task older than this whose job is not on the '
                    'board (glance-api died between recording the task and posting its '
                    'job) is failed by the conductors with the "interrupted" message.'),
    cfg.FloatOpt('poll_interval', default=0.5, min=0.05,
                 help='Seconds an idle conductor waits before looking for jobs again.'),
    cfg.ListOpt('auth_keys', default=[], secret=True,
                help='Fernet keys (URL-safe base64 of 32 random bytes, e.g. from `python3 -c '
                     '"from cryptography.fernet import Fernet; print(Fernet.generate_key()'
                     '.decode())"`) that encrypt the Keystone token and catalog a keystone-'
                     'mode task carries on the board while its job waits: the first key '
                     'encrypts, every key decrypts (add a new key first, drop the old one '
                     'once no job made with it waits). glance-api and every conductor need '
                     'the same list. Required with [rax_swift] auth_mode = keystone: '
                     'without it keystone-mode tasks fail instead of leaving a token in '
                     'plain text on the board.'),
]


def register_opts(conf=None):
    conf = task_options.register(conf or cfg.CONF)
    conf.register_opts(OPTS, group=GROUP)
    return conf


def list_opts():
    return [(GROUP, OPTS)]


# -- board and persistence from configuration ------------------------------------------------
def board_conf(conf):
    """The `conf` dict of `taskflow.jobs.backends.fetch` for `[rax_jobboard]`."""
    opts = conf.rax_jobboard
    board = opts.board
    result = {'board': board}
    hosts = [h.strip() for h in opts.hosts if h.strip()]
    if board == 'zookeeper':
        result['hosts'] = ','.join(hosts)
        result['path'] = '/%s/jobs' % opts.board_name.strip('/')
    else:
        if hosts:
            host, port = netutils.parse_host_port(hosts[0])
            result['host'] = host
            if port:
                result['port'] = port
        if board == 'etcd':
            result['path'] = '/%s/jobs' % opts.board_name.strip('/')
        else:
            result['namespace'] = opts.board_name
    if opts.password:
        result['password'] = opts.password
    result.update(opts.board_options)
    return result


def persistence_url(conf):
    url = conf.rax_jobboard.persistence_connection or conf.database.connection
    if not url:
        raise RuntimeError('no database for the jobboard\'s flow state: set [database] '
                           'connection or [rax_jobboard] persistence_connection')
    return url


_SCHEMA_READY = set()
_SCHEMA_LOCK = threading.Lock()


def fetch_persistence(conf):
    """TaskFlow's SQL persistence, its tables made sure of (idempotent, once per process)."""
    from rax_glance.tasks.db import api as db_api

    url = persistence_url(conf)
    # The task records' engine: one pool per process, and sqlite waits for its lock.
    backend = SharedConnectionBackend({'connection': url}, engine=db_api.get_engine(url))
    with _SCHEMA_LOCK:
        if url not in _SCHEMA_READY:
            ensure_schema(backend, dedicated=bool(conf.rax_jobboard.persistence_connection))
            _SCHEMA_READY.add(url)
    return backend


class SharedConnectionBackend(impl_sqlalchemy.SQLAlchemyBackend):
    """TaskFlow's SQL persistence backend with one connection object per backend.

    TaskFlow's SQL backend builds a new connection object -- a MetaData with its three
    Table objects -- for every state change of every atom, which costs more CPU than the
    SQL itself. That object holds nothing else (each call opens its own transaction on the
    engine), so one per backend serves every thread: this overrides the public
    `get_connection` of the class `taskflow.persistence.backends.fetch` returns for a SQL
    URL."""

    def __init__(self, conf, engine=None):
        super().__init__(conf, engine=engine)
        self._shared = None
        self._shared_lock = threading.Lock()

    def get_connection(self):
        with self._shared_lock:
            if self._shared is None:
                self._shared = super().get_connection()
            return self._shared


def ensure_schema(backend, dedicated):
    """TaskFlow's tables. In a database of its own TaskFlow migrates them with alembic; in
    Glance's database its alembic would clash with Glance's `alembic_version`, so the
    tables are created from TaskFlow's own definitions instead (create if absent)."""
    import sqlalchemy as sa
    from taskflow.persistence.backends.sqlalchemy import tables as tf_tables

    if dedicated:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        return
    metadata = sa.MetaData()
    tf_tables.fetch(metadata)
    for attempt in range(5):
        try:
            metadata.create_all(backend.engine, checkfirst=True)
            return
        except Exception:  # sqlalchemy's or oslo.db's "already exists"
            # Two processes creating them at the same moment: the loser checks again.
            if attempt == 4:
                raise
            LOG.info('TaskFlow tables are being created elsewhere; checking again')
            time.sleep(0.2 + random.random())


def fetch_board(conf, persistence):
    from taskflow.jobs import backends as tf_jobs

    return tf_jobs.fetch(conf.rax_jobboard.board_name, board_conf(conf),
                         persistence=persistence)


# -- the flow a conductor rebuilds -------------------------------------------------------------
_RUNTIME = {}
_RUNTIME_LOCK = threading.Lock()


def task_repo(conf):
    """The task records (one repo per process and database)."""
    from rax_glance.tasks.db import api as db_api

    url = conf.rax_tasks.connection or conf.database.connection
    with _RUNTIME_LOCK:
        repo = _RUNTIME.get(url)
        if repo is None:
            repo = _RUNTIME[url] = db_api.TaskRepo(db_api.get_engine(url))
        return repo


def make_job(task, conf=None, repo=None):
    """The `lifecycle.Job` of a task for this process (a conductor)."""
    conf = conf or cfg.CONF
    return lifecycle.Job(task, None, conf, repo or task_repo(conf), lifecycle.worker_id(),
                         make_context=lifecycle.background_context)


def flow_factory(task_id, task_type):
    """Flow factory saved in each job's flow detail; runs in the conductor process.

    The task's own flow (the `rax_glance.flows` plugin) between the bookkeeping atoms of
    `lifecycle.wrap`. The conductor has taken the task record over before calling it, so
    the plugin's recorded work (what to remove on failure) is this process's to update.
    """
    conf = cfg.CONF
    task = lifecycle.load(task_repo(conf), task_id)
    if task is None:
        raise LookupError('task %s has no record (expired?)' % task_id)
    return lifecycle.wrap(make_job(task, conf))


# -- the job's Keystone auth, sealed -----------------------------------------------------------
class AuthKeysMissing(Exception):
    """A keystone-mode task would put a token on the board, and no key seals it."""


def _fernet(conf):
    from cryptography.fernet import Fernet
    from cryptography.fernet import MultiFernet

    keys = [k.strip() for k in register_opts(conf).rax_jobboard.auth_keys or () if k.strip()]
    if not keys:
        raise AuthKeysMissing('[%s] auth_keys is empty: a keystone-mode task cannot carry '
                              'its token on the board' % GROUP)
    return MultiFernet([Fernet(k.encode()) for k in keys])


def seal_auth(conf, auth):
    """`auth` ({'token', 'catalog'}) encrypted with the first of ``auth_keys``."""
    return {'sealed': _fernet(conf).encrypt(json.dumps(auth).encode()).decode()}


def open_auth(conf, sealed):
    """The {'token', 'catalog'} a job carries, or {} (logged) when it cannot be read."""
    from cryptography.fernet import InvalidToken

    if not sealed:
        return {}
    if not isinstance(sealed, dict) or not isinstance(sealed.get('sealed'), str):
        LOG.error('A job carries Keystone auth that is not sealed; ignoring it')
        return {}
    try:
        return json.loads(_fernet(conf).decrypt(sealed['sealed'].encode()))
    except (InvalidToken, AuthKeysMissing, ValueError) as exc:
        LOG.error('Cannot open the Keystone auth of a job (%s): check that [%s] auth_keys '
                  'is the same for glance-api and every conductor', exc.__class__.__name__,
                  GROUP)
        return {}


# -- the executor glance-api loads ----------------------------------------------------------
def post_task(board, persistence, task, auth=None, conf=None):
    """A logbook + flow detail (with the factory) for `task`, and its job on the board.

    `auth` ({'token', 'catalog'}: keystone-mode Swift access of the creating request) goes in
    the job posting only, never in the SQL flow state, like the in-process executor keeps it
    in memory only; and only encrypted with ``[rax_jobboard] auth_keys`` (AuthKeysMissing
    without them), so no token sits in plain text on the board while the job waits."""
    from taskflow import engines
    from taskflow.persistence import models

    book = models.LogBook('%s%s' % (JOB_PREFIX, task['id']))
    flow_detail = models.FlowDetail('rax-%s-%s' % (task['type'], task['id']),
                                    uuid=uuidutils.generate_uuid())
    book.add(flow_detail)
    engines.save_factory_details(flow_detail, flow_factory, (),
                                 {'task_id': task['id'], 'task_type': task['type']})
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.save_logbook(book)
    sealed = seal_auth(conf or cfg.CONF, auth) if auth else None
    details = {'task_id': task['id'], 'task_type': task['type'],
               'flow_uuid': flow_detail.uuid, 'store': {}}
    if sealed:
        details['auth'] = sealed
    return board.post('%s%s' % (JOB_PREFIX, task['id']), book=book, details=details)


class JobboardExecutor(executor_mod.TaskExecutor):
    """Posts each task as a job; rax-glance-conductor processes run them."""

    def __init__(self, conf, repo, make_context):
        super().__init__(register_opts(conf), repo, make_context)
        self._lock = threading.Lock()
        self._pid = None
        self._board = None
        self._persistence = None

    def start(self):
        """Connect the board (once per process: gunicorn forks its workers)."""
        import os

        with self._lock:
            if self._pid == os.getpid() and self._board is not None:
                return
            persistence = fetch_persistence(self.conf)
            board = fetch_board(self.conf, persistence)
            board.connect()
            self._persistence, self._board, self._pid = persistence, board, os.getpid()
            LOG.info('Posting tasks to the %s jobboard %r', self.conf.rax_jobboard.board,
                     self.conf.rax_jobboard.board_name)

    def submit(self, task_id):
        task = self.repo.get_any(task_id)
        # The credentials travel with the job from here.
        token, catalog = lifecycle.pop_request_auth(task_id)
        auth = {'token': token, 'catalog': catalog} if token else None
        try:
            self.start()
            job = post_task(self._board, self._persistence, task, auth, self.conf)
        except Exception:
            # The task must not wait forever for a job that does not exist.
            LOG.exception('Task %s: posting its job failed; failing the task', task_id)
            lifecycle.fail(lifecycle.Job(task, None, self.conf, self.repo, self.worker),
                           messages.UNEXPECTED)
            return None
        LOG.info('Task %s (%s) posted as job %s', task_id, task['type'], job.uuid)
        return job

    def stop(self, wait=True):
        with self._lock:
            if self._board is not None:
                with contextlib.suppress(Exception):
                    self._board.close()
            self._board = None
