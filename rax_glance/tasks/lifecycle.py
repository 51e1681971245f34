"""One task lifecycle, shared by every executor (in-process and jobboard conductors).

A task record goes `pending` -> `processing` -> `success` or `failure`. Whoever runs it
(an in-process pool thread, a conductor) and whoever takes an orphan over (recovery, the
orphan sweeper) uses this module for:

* the typed record of a task (`Task`) and what a flow gets about it (`Job`);
* the worker id of this process and whether another one is dead;
* the keystone credentials of the creating request, kept in memory only;
* the background request context flows act in;
* outcomes: `wrap` puts the flow of a task between two bookkeeping atoms, the first one's
  revert records the failure and the user message, the last one records success and the
  plugin's `result`; `fail` and `settle` do the same outside a flow;
* the user message of a failure, carried typed (`TaskFailed.message`, `ImageError.code`),
  also for failures loaded back from TaskFlow persistence.

Nothing here depends on the API side (the paste filter) or on one executor.
"""

import dataclasses
import datetime
import os
import socket
import threading
import uuid

import stevedore
from oslo_log import log as logging
from taskflow import task as tf_task

from rax_glance import errors as engine_errors
from rax_glance.tasks import messages

LOG = logging.getLogger(__name__)

FLOW_NAMESPACE = 'rax_glance.flows'
FINAL_STATUSES = ('success', 'failure')


# -- the task record ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Task:
    """What the executors need of a task record (`TaskRepo` rows are dicts)."""

    id: str
    type: str
    owner: str
    user_id: str
    roles: tuple = ()
    input: dict = dataclasses.field(default_factory=dict)
    status: str = 'pending'
    worker: str = None
    work: dict = dataclasses.field(default_factory=dict)
    created_at: datetime.datetime = None
    lease_until: datetime.datetime = None

    @classmethod
    def of(cls, value):
        """A `Task` from a repo row (dict); a `Task` as it is; None for None."""
        if value is None or isinstance(value, cls):
            return value
        return cls(id=value['id'], type=value['type'], owner=value.get('owner'),
                   user_id=value.get('user_id'), roles=tuple(value.get('roles') or ()),
                   input=dict(value.get('input') or {}),
                   status=value.get('status', 'pending'), worker=value.get('worker'),
                   work=dict(value.get('work') or {}), created_at=value.get('created_at'),
                   lease_until=value.get('lease_until'))

    @property
    def final(self):
        return self.status in FINAL_STATUSES

    def cas_key(self):
        """The fields `TaskRepo.take_over` compares and sets against."""
        return {'id': self.id, 'worker': self.worker, 'status': self.status}


def load(repo, task_id):
    """The record of `task_id` (whoever owns it), or None."""
    return Task.of(repo.get_any(task_id))


def active(repo):
    return [Task.of(row) for row in repo.active()]


def take_over(repo, task, worker, lease_seconds):
    """Compare-and-set the task's worker to `worker`; True when it is ours now."""
    return repo.take_over(task.cas_key(), worker, lease_seconds)


# -- this process ------------------------------------------------------------------------
_WORKER = {'pid': None, 'id': None}


def worker_id():
    """This process's id; regenerated after a fork (gunicorn forks its workers)."""
    pid = os.getpid()
    if _WORKER['pid'] != pid:
        _WORKER.update(pid=pid, id='%s:%d:%s' % (socket.gethostname(), pid,
                                                 uuid.uuid4().hex[:8]))
    return _WORKER['id']


def worker_is_dead(worker):
    """True only when we know for sure: a process of this host that no longer runs."""
    try:
        host, pid, _token = worker.rsplit(':', 2)
        pid = int(pid)
    except (AttributeError, ValueError):
        return False
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return worker != worker_id()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- credentials of the creating request ---------------------------------------------------
# Keystone credentials of the request that created a task, kept in this process's memory only
# (never in the database) while its flow runs: in keystone mode Swift is reached with them.
_REQUEST_AUTH = {}
_REQUEST_AUTH_LOCK = threading.Lock()


def stash_request_auth(task_id, auth_token, service_catalog):
    if auth_token:
        with _REQUEST_AUTH_LOCK:
            _REQUEST_AUTH[task_id] = (auth_token, service_catalog)


def request_auth(task_id):
    """(auth_token, service_catalog) of the creating request, or (None, None)."""
    with _REQUEST_AUTH_LOCK:
        return _REQUEST_AUTH.get(task_id, (None, None))


def drop_request_auth(task_id):
    with _REQUEST_AUTH_LOCK:
        _REQUEST_AUTH.pop(task_id, None)


def pop_request_auth(task_id):
    """The credentials, no longer kept here (they travel on with a job)."""
    with _REQUEST_AUTH_LOCK:
        return _REQUEST_AUTH.pop(task_id, (None, None))


# -- the context flows act in ------------------------------------------------------------
_ENFORCER = {}
_ENFORCER_LOCK = threading.Lock()


def _shared_enforcer():
    with _ENFORCER_LOCK:
        if 'enforcer' not in _ENFORCER:
            from glance.api import policy as glance_policy

            _ENFORCER['enforcer'] = glance_policy.Enforcer()
        return _ENFORCER['enforcer']


def background_context(task):
    """A Glance request context for the task's project and user, for flows."""
    from glance import context as glance_context

    task = Task.of(task)
    auth_token, service_catalog = request_auth(task.id)
    return glance_context.RequestContext(
        user_id=task.user_id, project_id=task.owner, roles=list(task.roles),
        auth_token=auth_token, service_catalog=service_catalog,
        policy_enforcer=_shared_enforcer())


# -- what a flow gets ----------------------------------------------------------------------
def load_flow_plugin(task_type):
    return stevedore.DriverManager(FLOW_NAMESPACE, task_type, invoke_on_load=True).driver


class Job:
    """What a flow needs about its task: record, context, config, and a work log.

    `context` may be given, or made on first use by `make_context(task)` (recovery and
    sweeping need none unless there is work to remove)."""

    def __init__(self, task, context, conf, repo, worker, make_context=None, plugin=None):
        self.task = Task.of(task)
        self.id = self.task.id
        self.type = self.task.type
        self.input = self.task.input
        self.conf = conf
        self.repo = repo
        self.worker = worker
        self.work = dict(self.task.work)
        self._context = context
        self._make_context = make_context
        self._plugin = plugin
        self.outcome = None  # 'success', 'failure' or 'lost' once recorded (or not) here
        self._lock = threading.Lock()

    @property
    def context(self):
        if self._context is None and self._make_context is not None:
            self._context = self._make_context(self.task)
        return self._context

    @property
    def plugin(self):
        if self._plugin is None:
            self._plugin = load_flow_plugin(self.type)
        return self._plugin

    def remember(self, key, value):
        """Record a created artefact before it exists, so recovery can remove it."""
        with self._lock:
            self.work[key] = value
            self.repo.record_work(self.id, self.worker, self.work)

    def forget(self, key):
        with self._lock:
            if self.work.pop(key, None) is not None:
                self.repo.record_work(self.id, self.worker, self.work)


# -- user messages -----------------------------------------------------------------------
def unwrap(exc):
    """TaskFlow re-raises a single failure as is; a WrappedFailure holds several."""
    from taskflow import exceptions as tf_exc

    if isinstance(exc, tf_exc.WrappedFailure):
        for failure in exc:
            if failure.exception is not None:
                return failure.exception
    return exc


def user_message(exc):
    """The task message for a failure; None for an unexpected error."""
    exc = unwrap(exc)
    if isinstance(exc, messages.TaskFailed):
        return exc.message
    if isinstance(exc, engine_errors.ImageError):
        return exc.message
    return None


def _class_name(cls):
    return '%s.%s' % (cls.__module__, cls.__qualname__)


def _image_error_classes():
    found, todo = {}, [engine_errors.ImageError]
    while todo:
        cls = todo.pop()
        found[_class_name(cls)] = cls
        todo.extend(cls.__subclasses__())
    return found


def persisted_message(failure):
    """The user message of a failure loaded back from TaskFlow persistence (its exception
    object is gone; its type names and arguments are kept); None when unexpected.

    Typed: an `ImageError` by its class (whose `code` names the message), a `TaskFailed` by
    its argument; nothing is parsed out of the exception's text."""
    if failure.check(messages.TaskFailed):
        args = failure.exception_args or ()
        if args and isinstance(args[0], str):
            return args[0]
        return failure.exception_str
    if failure.check(engine_errors.ImageError):
        classes = _image_error_classes()
        for name in failure:  # its type names, most specific first
            cls = classes.get(name)
            if cls is not None:
                return engine_errors.MESSAGES[cls.code]
        return engine_errors.MESSAGES[engine_errors.ImageError.code]
    return None


def failure_message(job, flow_failures):
    """The task message for the failures of a reverted flow (live or persisted)."""
    for failure in (flow_failures or {}).values():
        if failure.exception is not None:
            message = user_message(failure.exception)
        else:
            message = persisted_message(failure)
        if message is not None:
            LOG.info('Task %s (%s) failed: %s', job.id, job.type,
                     getattr(failure.exception, 'detail', message))
            return message
        LOG.error('Task %s (%s) failed unexpectedly: %s', job.id, job.type,
                  failure.pformat(traceback=True))
        return messages.UNEXPECTED
    return messages.UNEXPECTED


# -- outcomes ----------------------------------------------------------------------------
def cleanup(job, work=None):
    """Remove what the task recorded (`work`, by default the job's); never raises."""
    work = dict(job.work if work is None else work)
    if not work:
        return
    try:
        job.plugin.cleanup(job, work)
    except Exception:
        LOG.exception('Cleaning up after task %s failed; left: %s', job.id, work)


def fail(job, message):
    """Remove what is left of the task's work and record `failure` with `message` (one of
    `messages` or of the engine's): True when recorded, False when the task was not ours."""
    cleanup(job)
    finished = job.repo.finish(job.id, job.worker, 'failure',
                               job.conf.rax_tasks.task_time_to_live, message=message)
    job.outcome = 'failure'
    if not finished:
        LOG.warning('Task %s: not recording the failure, another worker holds it', job.id)
    return finished


def succeed(job, result):
    """Record `success` with `result`: True when recorded, False when the task was not
    ours any more (taken over and cleaned up elsewhere: the outcome is that worker's)."""
    finished = job.repo.finish(job.id, job.worker, 'success',
                               job.conf.rax_tasks.task_time_to_live, result=result)
    job.outcome = 'success' if finished else 'lost'
    if finished:
        LOG.info('Task %s (%s) succeeded: %s', job.id, job.type, result)
    else:
        LOG.warning('Task %s finished here but another worker had taken it over (and '
                    'cleaned it up); its outcome is that worker\'s', job.id)
    return finished


FINAL, FAILED_HERE, NOT_OURS = 'final', 'failed-here', 'not-ours'


def settle(job, message=messages.UNEXPECTED):
    """After a run: a task that did not record its outcome (its flow could not even be
    built, or could not revert) fails with `message`, its recorded work removed.

    Returns FINAL when the task was final already (or is gone), FAILED_HERE when it was
    failed now, NOT_OURS when another worker holds it (and its outcome)."""
    task = load(job.repo, job.id)
    if task is None or task.final:
        return FINAL
    if task.worker != job.worker:
        LOG.warning('Task %s was taken over by %s meanwhile', job.id, task.worker)
        return NOT_OURS
    LOG.error('Task %s did not record its outcome; failing it (left: %s)', job.id, task.work)
    job.work = dict(task.work)
    fail(job, message)
    return FAILED_HERE


class RecordFailure(tf_task.Task):
    """First atom. Its revert runs last, after every other atom undid its work: it removes
    whatever recorded work is left and records the failure and its message."""

    def __init__(self, job):
        super().__init__(name='rax_record_failure')
        self.job = job

    def execute(self):
        LOG.info('Task %s (%s) running in %s', self.job.id, self.job.type, self.job.worker)

    def revert(self, *args, **kwargs):
        fail(self.job, failure_message(self.job, kwargs.get('flow_failures')))


class _Values:
    """The storage-like `fetch` a plugin's `result()` expects, over the flow's values."""

    def __init__(self, values):
        self._values = values

    def fetch(self, name):
        return self._values[name]


class RecordSuccess(tf_task.Task):
    """Last atom: the task's `result` from the flow's values, status `success`."""

    def __init__(self, job, names):
        super().__init__(name='rax_record_success', requires=sorted(names))
        self.job = job

    def execute(self, **values):
        result = self.job.plugin.result(self.job, _Values(values))
        succeed(self.job, result)
        return result

    def revert(self, *args, **kwargs):
        pass  # it only records


def wrap(job, name=None):
    """The task's own flow (its plugin's) between the bookkeeping atoms."""
    from taskflow.patterns import linear_flow

    inner = job.plugin.build(job)
    return linear_flow.Flow(name or 'rax-task-%s' % job.id).add(
        RecordFailure(job), inner, RecordSuccess(job, inner.provides))
