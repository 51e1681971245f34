"""Running tasks: the executor interface and the embedded in-process executor.

An executor receives task ids that are recorded `pending` and owned (`worker`) by this
process, and must bring each to `success` or `failure`. The in-process executor runs the
TaskFlow flows of the `rax_glance.flows` namespace in a bounded thread pool inside glance-api;
a distributed executor (TaskFlow jobboard and conductors) can replace it through the
`rax_glance.task_executors` namespace and `[rax_tasks] executor`.

Every glance-api process has a worker id (`host:pid:token`) recorded on the tasks it runs and
a lease it renews. A task whose worker is gone (its pid on this host is dead, or its lease ran
out) is taken over by any live process: a `pending` task runs again, a `processing` one is
failed with a clear message after its partial work (recorded in the row as the flow goes) is
removed.
"""

import abc
import concurrent.futures
import os
import socket
import threading
import uuid

import stevedore
import taskflow.engines
from oslo_log import log as logging

from rax_glance import errors as engine_errors
from rax_glance.tasks import messages
from rax_glance.tasks.db import api as db_api

LOG = logging.getLogger(__name__)

FLOW_NAMESPACE = 'rax_glance.flows'
EXECUTOR_NAMESPACE = 'rax_glance.task_executors'

_WORKER = {'pid': None, 'id': None}

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


def _drop_request_auth(task_id):
    with _REQUEST_AUTH_LOCK:
        _REQUEST_AUTH.pop(task_id, None)


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


def load_flow_plugin(task_type):
    return stevedore.DriverManager(FLOW_NAMESPACE, task_type, invoke_on_load=True).driver


class Job:
    """What a flow needs about its task: record, context, config, and a work log."""

    def __init__(self, task, context, conf, repo, worker):
        self.task = task
        self.id = task['id']
        self.input = task['input']
        self.context = context
        self.conf = conf
        self.repo = repo
        self.worker = worker
        self.work = dict(task.get('work') or {})
        self._lock = threading.Lock()

    def remember(self, key, value):
        """Record a created artefact before it exists, so recovery can remove it."""
        with self._lock:
            self.work[key] = value
            self.repo.record_work(self.id, self.worker, self.work)

    def forget(self, key):
        with self._lock:
            if self.work.pop(key, None) is not None:
                self.repo.record_work(self.id, self.worker, self.work)


def user_message(exc):
    """The task message for a failure; None for an unexpected error."""
    if isinstance(exc, messages.TaskFailed):
        return exc.message
    if isinstance(exc, engine_errors.ImageError):
        return exc.message
    return None


def run_task(repo, conf, task, worker, make_context):
    """Run one claimed task's flow to its end and record the outcome; never raises."""
    job = None
    try:
        context = make_context(task)
        if hasattr(context, 'update_store'):
            # Pool threads are reused: make this task's context the current one for logs.
            context.update_store()
        job = Job(task, context, conf, repo, worker)
        plugin = load_flow_plugin(task['type'])
        flow = plugin.build(job)
        engine = taskflow.engines.load(flow, engine='serial')
        engine.run()
        result = plugin.result(job, engine.storage)
    except Exception as exc:  # the flow reverted already; record why it failed
        cause = _unwrap(exc)
        message = user_message(cause)
        if message is None:
            LOG.exception('Task %s (%s) failed unexpectedly', task['id'], task['type'])
            message = messages.UNEXPECTED
        else:
            LOG.info('Task %s (%s) failed: %s', task['id'], task['type'],
                     getattr(cause, 'detail', message))
        if job is not None and job.work:
            # Reverts should have removed everything; anything left is retried here.
            _cleanup(repo, conf, task, job.work, job.context)
        repo.finish(task['id'], worker, 'failure', conf.rax_tasks.task_time_to_live,
                    message=message)
        return 'failure'
    finally:
        _drop_request_auth(task['id'])
    if not repo.finish(task['id'], worker, 'success', conf.rax_tasks.task_time_to_live,
                       result=result):
        LOG.warning('Task %s finished here but another process had taken it over (and '
                    'cleaned it up); its outcome is that process\'s', task['id'])
        return 'lost'
    LOG.info('Task %s (%s) succeeded: %s', task['id'], task['type'], result)
    return 'success'


def _unwrap(exc):
    """TaskFlow re-raises a single failure as is; a WrappedFailure holds several."""
    from taskflow import exceptions as tf_exc

    if isinstance(exc, tf_exc.WrappedFailure):
        for failure in exc:
            if failure.exception is not None:
                return failure.exception
    return exc


def _cleanup(repo, conf, task, work, context):
    try:
        plugin = load_flow_plugin(task['type'])
        plugin.cleanup(Job(dict(task, work=work), context, conf, repo, task.get('worker')),
                       work)
    except Exception:
        LOG.exception('Cleaning up after task %s failed; left: %s', task['id'], work)


class TaskExecutor(abc.ABC):
    """Runs recorded tasks. Implementations: in-process (here), jobboard (later)."""

    def __init__(self, conf, repo, make_context):
        self.conf = conf
        self.repo = repo
        self.make_context = make_context

    @property
    def worker(self):
        """The id recorded as `worker` on tasks this executor takes."""
        return worker_id()

    @abc.abstractmethod
    def start(self):
        """Begin work (threads, recovery of orphaned tasks)."""

    @abc.abstractmethod
    def submit(self, task_id):
        """Run the pending task `task_id`, recorded with `worker == self.worker`."""

    @abc.abstractmethod
    def stop(self, wait=True):
        """Stop taking work."""


class InProcessExecutor(TaskExecutor):
    """A bounded thread pool in this glance-api process, plus a lease keeper."""

    def __init__(self, conf, repo, make_context):
        super().__init__(conf, repo, make_context)
        opts = conf.rax_tasks
        self.lease = opts.lease_seconds
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=opts.workers, thread_name_prefix='rax-task')
        self._stop = threading.Event()
        # Tasks this process has taken on and not finished: only their leases need renewing.
        self._held = set()
        self._held_lock = threading.Lock()
        self._keeper = None
        self._started_pid = None
        self._start_lock = threading.Lock()

    def start(self):
        with self._start_lock:
            if self._started_pid == os.getpid():
                return
            self._started_pid = os.getpid()
            self._keeper = threading.Thread(target=self._keep, name='rax-task-lease',
                                            daemon=True)
            self._keeper.start()

    def submit(self, task_id):
        self.start()
        self._hold(task_id)
        self.pool.submit(self._run, task_id)

    def _hold(self, task_id):
        with self._held_lock:
            self._held.add(task_id)

    def _release(self, task_id):
        with self._held_lock:
            self._held.discard(task_id)

    def _run(self, task_id):
        worker = self.worker
        try:
            if not self.repo.claim(task_id, worker, self.lease):
                LOG.info('Task %s is no longer ours to run', task_id)
                return
            task = self.repo.get_any(task_id)
            run_task(self.repo, self.conf, task, worker, self.make_context)
        except Exception:
            LOG.exception('Task %s: executor error', task_id)
        finally:
            self._release(task_id)

    def stop(self, wait=True):
        self._stop.set()
        self.pool.shutdown(wait=wait)

    # -- lease keeping and recovery -----------------------------------------------------
    def _keep(self):
        period = max(1.0, self.lease / 3.0)
        while not self._stop.is_set():
            try:
                # No write when there is nothing to renew: on sqlite (the embedded default)
                # any write can make a concurrent Glance request fail "database is locked".
                with self._held_lock:
                    holding = bool(self._held)
                if holding:
                    self.repo.renew_leases(self.worker, self.lease)
                self.recover()
                self.repo.purge_expired()
            except Exception:
                LOG.exception('Task lease keeping failed; retrying in %.0f s', period)
            self._stop.wait(period)

    def recover(self):
        """Take over tasks whose process is gone; returns the ids handled."""
        handled = []
        now = db_api.utcnow()
        for task in self.repo.active():
            if task['worker'] == self.worker:
                continue
            lease = task['lease_until']
            expired = lease is None or lease < now
            if not (expired or worker_is_dead(task['worker'])):
                continue
            if not self.repo.take_over(task, self.worker, self.lease):
                continue  # another live process took it
            handled.append(task['id'])
            self._hold(task['id'])
            if task['status'] == 'pending':
                LOG.warning('Task %s was waiting in dead worker %s; running it here',
                            task['id'], task['worker'])
                self.pool.submit(self._run, task['id'])
            else:
                LOG.warning('Task %s was interrupted in dead worker %s; failing it and '
                            'removing %s', task['id'], task['worker'], task['work'])
                self.pool.submit(self._fail_interrupted, task)
        return handled

    def _fail_interrupted(self, task):
        try:
            if task['work']:
                _cleanup(self.repo, self.conf, task, task['work'], self.make_context(task))
            self.repo.finish(task['id'], self.worker, 'failure',
                             self.conf.rax_tasks.task_time_to_live,
                             message=messages.INTERRUPTED)
        except Exception:
            LOG.exception('Failing interrupted task %s failed', task['id'])
        finally:
            self._release(task['id'])


def load_executor(conf, repo, make_context):
    return stevedore.DriverManager(
        EXECUTOR_NAMESPACE, conf.rax_tasks.executor, invoke_on_load=True,
        invoke_args=(conf, repo, make_context)).driver
