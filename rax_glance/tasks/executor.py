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

The task record, the outcome bookkeeping and the user messages are `lifecycle`'s, shared with
the jobboard executor and its conductors.
"""

import abc
import concurrent.futures
import os
import threading

import stevedore
import taskflow.engines
from oslo_log import log as logging

from rax_glance.tasks import lifecycle
from rax_glance.tasks import messages
from rax_glance.tasks.db import api as db_api

LOG = logging.getLogger(__name__)

EXECUTOR_NAMESPACE = 'rax_glance.task_executors'

# The lifecycle's pieces under their historical names here (deployed plugins import them).
FLOW_NAMESPACE = lifecycle.FLOW_NAMESPACE
Job = lifecycle.Job
worker_id = lifecycle.worker_id
worker_is_dead = lifecycle.worker_is_dead
stash_request_auth = lifecycle.stash_request_auth
request_auth = lifecycle.request_auth
user_message = lifecycle.user_message
load_flow_plugin = lifecycle.load_flow_plugin


def run_task(repo, conf, task, worker, make_context):
    """Run one claimed task's flow to its end and record the outcome; never raises.

    Returns 'success', 'failure', or 'lost' (succeeded here, but another worker had taken
    the task over meanwhile)."""
    task = lifecycle.Task.of(task)
    job = lifecycle.Job(task, None, conf, repo, worker, make_context=make_context)
    try:
        context = job.context
        if hasattr(context, 'update_store'):
            # Pool threads are reused: make this task's context the current one for logs.
            context.update_store()
        taskflow.engines.load(lifecycle.wrap(job), engine='serial').run()
    except Exception as exc:
        # The flow reverted and recorded its failure already, unless it could not even be
        # built: then it is recorded here.
        message = lifecycle.user_message(exc)
        settled = lifecycle.settle(job, message or messages.UNEXPECTED)
        if settled == lifecycle.FAILED_HERE and message is None:
            LOG.exception('Task %s (%s) failed unexpectedly', task.id, task.type)
        return 'failure'
    finally:
        lifecycle.drop_request_auth(task.id)
    return 'success' if job.outcome == 'success' else 'lost'


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
            run_task(self.repo, self.conf, self.repo.get_any(task_id), worker,
                     self.make_context)
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
        for task in lifecycle.active(self.repo):
            if task.worker == self.worker:
                continue
            expired = task.lease_until is None or task.lease_until < now
            if not (expired or worker_is_dead(task.worker)):
                continue
            if not lifecycle.take_over(self.repo, task, self.worker, self.lease):
                continue  # another live process took it
            handled.append(task.id)
            self._hold(task.id)
            if task.status == 'pending':
                LOG.warning('Task %s was waiting in dead worker %s; running it here',
                            task.id, task.worker)
                self.pool.submit(self._run, task.id)
            else:
                LOG.warning('Task %s was interrupted in dead worker %s; failing it and '
                            'removing %s', task.id, task.worker, task.work)
                self.pool.submit(self._fail_interrupted, task)
        return handled

    def _fail_interrupted(self, task):
        try:
            lifecycle.fail(lifecycle.Job(task, None, self.conf, self.repo, self.worker,
                                         make_context=self.make_context),
                           messages.INTERRUPTED)
        except Exception:
            LOG.exception('Failing interrupted task %s failed', task.id)
        finally:
            self._release(task.id)


def load_executor(conf, repo, make_context):
    return stevedore.DriverManager(
        EXECUTOR_NAMESPACE, conf.rax_tasks.executor, invoke_on_load=True,
        invoke_args=(conf, repo, make_context)).driver
