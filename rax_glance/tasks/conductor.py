"""TaskFlow conductors that run the jobs of the `jobboard` executor (`rax-glance-conductor`).

A stock TaskFlow conductor claims a job and runs the flow rebuilt from its flow detail. Ours
adds what the Cloud Images tasks need around that:

* claims that expire (Redis, etcd) and are renewed while the job runs, so a conductor that
  dies loses its jobs to the others after `[rax_jobboard] claim_expiry`;
* the task record is taken over (compare-and-set of its `worker`) before the flow runs, so a
  conductor that lost its claim but still runs cannot record anything any more;
* an atom left `RUNNING` by a dead conductor is not run a second time (its partial work, an
  image being written or segments being uploaded, cannot be continued): it is marked failed
  with the "interrupted" message and the flow reverts from there, removing what the flow
  recorded; a flow interrupted between atoms simply resumes;
* whatever happens, the task record ends `success` or `failure` before the job is consumed;
  a suspended flow (SIGTERM) is abandoned for another conductor to resume.
"""

import contextlib
import threading

from oslo_log import log as logging
from taskflow import exceptions as tf_exc
from taskflow import states
from taskflow.conductors.backends import impl_blocking
from taskflow.conductors.backends import impl_nonblocking
from taskflow.listeners import base as tf_listeners
from taskflow.types import failure as tf_failure

from rax_glance.tasks import jobboard
from rax_glance.tasks import lifecycle
from rax_glance.tasks import messages
from rax_glance.tasks.db import api as db_api

LOG = logging.getLogger(__name__)


class ClaimKeepingBoard:
    """A jobboard whose claims expire unless this process keeps renewing them.

    Redis claims never expire by default (a dead conductor would hold its jobs forever), so
    claims are made with `expiry` and a thread extends those in progress every third of it.
    Boards without claim expiry (ZooKeeper: claims die with the session) are used as is.
    """

    def __init__(self, board, expiry):
        self._board = board
        self.expiry = expiry
        self._held = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        import inspect

        self.expiring = 'expiry' in inspect.signature(board.claim).parameters

    def __getattr__(self, name):
        return getattr(self._board, name)

    @property
    def board(self):
        return self._board

    def claim(self, job, who):
        if self.expiring:
            self._board.claim(job, who, expiry=self.expiry)
            with self._lock:
                self._held[job.uuid] = job
        else:
            self._board.claim(job, who)

    def _release(self, job):
        with self._lock:
            self._held.pop(job.uuid, None)

    def consume(self, job, who):
        self._release(job)
        return self._board.consume(job, who)

    def abandon(self, job, who):
        self._release(job)
        return self._board.abandon(job, who)

    def trash(self, job, who):
        self._release(job)
        return self._board.trash(job, who)

    def start_keeping(self):
        if self.expiring and self._thread is None:
            self._thread = threading.Thread(target=self._keep, name='rax-claim-keeper',
                                            daemon=True)
            self._thread.start()

    def stop_keeping(self):
        self._stop.set()

    def _keep(self):
        period = max(0.2, self.expiry / 3.0)
        while not self._stop.wait(period):
            with self._lock:
                held = list(self._held.values())
            for job in held:
                try:
                    if not job.extend_expiry(self.expiry):
                        LOG.warning('Claim on job %s could not be extended (lost?)', job)
                except Exception:
                    LOG.exception('Extending the claim on job %s failed', job)


class _TaskDispatch:
    """The Cloud Images task around TaskFlow's own dispatch of a job.

    TaskFlow's executor conductor runs the job (engine from the job's flow detail,
    listeners, notifier events, suspension when stopping); around it this takes the task
    record over first and settles it after. Two handlers on the conductor's notifier do
    the rest: after `preparation`, atoms a dead conductor left running are failed as
    interrupted; after a job is consumed, its flow state is removed.
    """

    def __init__(self, name, jobboard, tasks_conf=None, task_repo=None, **kwargs):
        super().__init__(name, jobboard, **kwargs)
        if tasks_conf is not None:
            self._setup_tasks(tasks_conf, task_repo)

    def _setup_tasks(self, conf, repo):
        self._conf = conf
        self._repo = repo
        self.notifier.register('preparation_end', self._on_prepared)
        self.notifier.register('job_consumed', _forget_book)

    @property
    def worker(self):
        return lifecycle.worker_id()

    def _dispatch_job(self, job):
        """Run one claimed job; True consumes it, False abandons it to another conductor."""
        details = job.details or {}
        task_id = details.get('task_id')
        if not task_id:
            LOG.error('Job %s carries no task id; dropping it', job)
            return True
        try:
            task = lifecycle.load(self._repo, task_id)
            if task is None or task.final:
                LOG.info('Task %s of job %s is %s; nothing to run', task_id, job.uuid,
                         task.status if task else 'gone')
                return True
            if not self._take(task):
                return False
        except Exception:
            LOG.exception('Job %s: cannot read or take task %s; leaving it to others',
                          job.uuid, task_id)
            return False
        auth = jobboard.open_auth(self._conf, details.get('auth'))
        if auth.get('token'):
            # Keystone-mode Swift access of the creating request, for this run only.
            lifecycle.stash_request_auth(task_id, auth['token'], auth.get('catalog'))
        try:
            job_context = self._task_context(task)
            if hasattr(job_context, 'update_store'):
                job_context.update_store()  # pool threads are reused: this task's context
            LOG.info('Job %s: running task %s (%s) as %s', job.uuid, task.id, task.type,
                     self.worker)
            try:
                # TaskFlow's dispatch: False when the engine was suspended (we are
                # stopping) or the flow state was unavailable.
                consume = super()._dispatch_job(job)
            except self.NO_CONSUME_EXCEPTIONS:
                LOG.exception('Job %s: flow state unavailable; leaving the task to another '
                              'attempt', job.uuid)
                return False
            except Exception:
                # The flow could not even be rebuilt (its factory failed).
                LOG.exception('Job %s: the flow of task %s could not be loaded', job.uuid,
                              task_id)
                consume = True
            return self._settle(job, task_id, consume)
        finally:
            lifecycle.drop_request_auth(task_id)

    def _take(self, task):
        """Make the task record ours: its worker (fencing others) and `processing`."""
        lease = self._conf.rax_tasks.lease_seconds
        if task.worker != self.worker:
            if not lifecycle.take_over(self._repo, task, self.worker, lease):
                LOG.warning('Task %s changed hands meanwhile; leaving it', task.id)
                return False
        if task.status == 'pending':
            self._repo.claim(task.id, self.worker, lease)
        return True

    def _listeners_from_job(self, job, engine):
        """TaskFlow's extension point for listeners on each job's engine."""
        return super()._listeners_from_job(job, engine) + [SuspensionLog(engine, job)]

    def _on_prepared(self, _event, details):
        """Atoms a dead conductor left RUNNING fail as interrupted, before the run."""
        engine, job = details['engine'], details['job']
        if not fail_interrupted_atoms(engine.storage, atom_names(engine)):
            return
        task = lifecycle.load(self._repo, (job.details or {}).get('task_id'))
        if task is not None:
            # What the dead conductor recorded (an image half written into the store, an
            # export's segments) is removed first, the way recovery does it; the reverts
            # that follow find nothing left and the failure is recorded last.
            lifecycle.cleanup(jobboard.make_job(task, self._conf, self._repo))

    def _task_context(self, task):
        return jobboard.make_job(task, self._conf, self._repo).context

    def _settle(self, job, task_id, consume):
        """The task must be final before its job goes; True consumes the job."""
        try:
            task = lifecycle.load(self._repo, task_id)
            if task is not None and not task.final:
                if not consume:
                    return False  # stopping: another conductor resumes it
                # The flow could not even revert properly (or could not be loaded).
                if lifecycle.settle(jobboard.make_job(task, self._conf, self._repo)) == \
                        lifecycle.NOT_OURS:
                    return False
        except Exception:
            LOG.exception('Job %s: cannot settle task %s; leaving the job', job.uuid, task_id)
            return False
        return True


class SuspensionLog(tf_listeners.Listener):
    """Says which job a stopping conductor suspends (and so gives back to the board)."""

    def __init__(self, engine, job):
        super().__init__(engine, task_listen_for=(), retry_listen_for=(),
                         flow_listen_for=(states.SUSPENDING,))
        self.job = job

    def _flow_receiver(self, state, details):
        LOG.info('Conductor stopping: suspending job %s after its current step',
                 self.job.uuid)


def _forget_book(_event, details):
    """A consumed job's task is final: its flow state is of no further use."""
    job, persistence = details['job'], details.get('persistence')
    if persistence is None or not getattr(job, 'book_uuid', None):
        return
    try:
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.destroy_logbook(job.book_uuid)
    except tf_exc.NotFound:
        pass
    except Exception:
        LOG.warning('Could not remove the logbook of job %s', job.uuid, exc_info=True)


def atom_names(engine):
    """Names of the atoms of a compiled engine's flow (tasks and retries)."""
    graph = engine.compilation.execution_graph
    return [node.name for node, data in graph.nodes(data=True)
            if data.get('kind') in ('task', 'retry')]


class OrphanSweeper:
    """Fails tasks that wait for a job the board does not have.

    glance-api records a task, then posts its job: a glance-api that dies in between (or a
    board that lost its data) leaves a task no conductor will ever see. Every `period` a
    conductor looks for active tasks older than `grace` seconds without a job and fails
    them with the "interrupted" message (compare-and-set on the record, so several
    conductors sweeping at once fail a task once).
    """

    def __init__(self, board, repo, conf, grace, period):
        self.board, self.repo, self.conf = board, repo, conf
        self.grace, self.period = grace, period
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._loop, name='rax-orphan-sweeper',
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()

    def _loop(self):
        while not self._stop.wait(self.period):
            try:
                self.sweep()
            except Exception:
                LOG.warning('Looking for tasks without a job failed; retrying later',
                            exc_info=True)

    def sweep(self, now=None):
        """Fail the orphans; returns their ids."""
        import datetime

        now = now or db_api.utcnow()
        old = [t for t in lifecycle.active(self.repo)
               if now - t.created_at > datetime.timedelta(seconds=self.grace)]
        if not old:
            return []
        # Listed after the tasks were read: a job posted meanwhile is seen.
        posted = {(job.details or {}).get('task_id') for job in self.board.iterjobs()}
        failed = []
        worker = lifecycle.worker_id()
        for task in old:
            if task.id in posted:
                continue
            if not lifecycle.take_over(self.repo, task, worker,
                                       self.conf.rax_tasks.lease_seconds):
                continue
            lifecycle.fail(jobboard.make_job(task, self.conf, self.repo), messages.INTERRUPTED)
            LOG.warning('Task %s (%s) had no job on the board; failed it', task.id, task.type)
            failed.append(task.id)
        return failed


def fail_interrupted_atoms(storage, names):
    """Atoms (of `names`) a dead conductor left RUNNING fail as interrupted, so the flow
    reverts instead of running them again over their partial work."""
    failed = []
    for name, (state, _intention) in storage.get_atoms_states(names).items():
        if state == states.RUNNING:
            failure = tf_failure.Failure.from_exception(
                messages.TaskFailed(messages.INTERRUPTED))
            storage.save(name, failure, states.FAILURE)
            failed.append(name)
    if failed:
        LOG.warning('Flow %s was interrupted in %s; reverting it', storage.flow_name,
                    ', '.join(failed))
    return failed


class BlockingConductor(_TaskDispatch, impl_blocking.BlockingConductor):
    """One job at a time, in the calling thread."""


class NonBlockingConductor(_TaskDispatch, impl_nonblocking.NonBlockingConductor):
    """Up to `max_simultaneous_jobs` jobs at once, in a thread pool."""


CONDUCTOR_KINDS = {'blocking': 'rax-glance-blocking', 'nonblocking': 'rax-glance-nonblocking'}


def make_conductor(conf, board, persistence, repo, name):
    """The conductor `[rax_jobboard]` asks for, around a claim-keeping `board`, fetched from
    TaskFlow's `taskflow.conductors` entry points (this bundle declares its two there)."""
    from taskflow.conductors import backends as tf_conductors

    opts = conf.rax_jobboard
    max_jobs = opts.max_simultaneous_jobs if opts.conductor_type == 'nonblocking' else 1
    return tf_conductors.fetch(CONDUCTOR_KINDS[opts.conductor_type], name, board,
                               persistence=persistence, engine='serial',
                               wait_timeout=opts.poll_interval,
                               max_simultaneous_jobs=max_jobs, tasks_conf=conf,
                               task_repo=repo)
