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
from taskflow import engines
from taskflow import exceptions as tf_exc
from taskflow import states
from taskflow.conductors.backends import impl_blocking
from taskflow.conductors.backends import impl_nonblocking
from taskflow.types import failure as tf_failure

from rax_glance.tasks import executor as executor_mod
from rax_glance.tasks import jobboard
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
    """`_dispatch_job` for Cloud Images tasks; mixed into TaskFlow's executor conductors."""

    def _setup_tasks(self, conf, repo):
        self._conf = conf
        self._repo = repo

    @property
    def worker(self):
        return executor_mod.worker_id()

    def _dispatch_job(self, job):
        """Run one claimed job; True consumes it, False abandons it to another conductor."""
        details = job.details or {}
        task_id = details.get('task_id')
        if not task_id:
            LOG.error('Job %s carries no task id; dropping it', job)
            return True
        try:
            task = self._repo.get_any(task_id)
            if task is None or task['status'] in db_api.FINAL_STATUSES:
                LOG.info('Task %s of job %s is %s; nothing to run', task_id, job.uuid,
                         task['status'] if task else 'gone')
                self._forget_book(job)
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
            executor_mod.stash_request_auth(task_id, auth['token'], auth.get('catalog'))
        try:
            return self._run_and_settle(job, task)
        finally:
            executor_mod._drop_request_auth(task_id)

    def _run_and_settle(self, job, task):
        task_id = task['id']
        suspended = False
        try:
            suspended = self._run(job, task)
        except (tf_exc.StorageFailure, tf_exc.ExecutionFailure):
            LOG.exception('Job %s: flow state unavailable; leaving the task to another '
                          'attempt', job.uuid)
            return False
        except Exception as exc:
            # The flow has reverted; RecordFailure recorded the message (logged there).
            LOG.debug('Job %s ended with %r', job.uuid, exc)
        return self._settle(job, task_id, suspended)

    def _take(self, task):
        """Make the task record ours: its worker (fencing others) and `processing`."""
        lease = self._conf.rax_tasks.lease_seconds
        if task['worker'] != self.worker:
            if not self._repo.take_over(task, self.worker, lease):
                LOG.warning('Task %s changed hands meanwhile; leaving it', task['id'])
                return False
        if task['status'] == 'pending':
            self._repo.claim(task['id'], self.worker, lease)
        return True

    def _run(self, job, task):
        """Compile, resume, run; True when the engine was suspended (we are stopping)."""
        job_context = self._task_context(task)
        if hasattr(job_context, 'update_store'):
            job_context.update_store()  # pool threads are reused: this task's context
        LOG.info('Job %s: running task %s (%s) as %s', job.uuid, task['id'], task['type'],
                 self.worker)
        flow_detail = self._flow_detail_from_job(job)
        persisted = [atom_detail.name for atom_detail in flow_detail]
        store = dict((flow_detail.meta or {}).get('store') or {})
        store.update((job.details or {}).get('store') or {})
        # Rebuilds the flow with the factory saved in the flow detail (jobboard.flow_factory).
        engine = engines.load_from_detail(flow_detail, store=store, engine=self._engine,
                                          backend=self._persistence, **self._engine_options)
        engine.compile()
        engine.prepare()
        if fail_interrupted_atoms(engine.storage, persisted) and task['work']:
            # What the dead conductor recorded (an image half written into the store, an
            # export's segments) is removed first, the way recovery does it; the reverts
            # that follow find nothing left and the failure is recorded last.
            plugin = executor_mod.load_flow_plugin(task['type'])
            plugin.cleanup(jobboard.make_job(task, self._conf), dict(task['work']))
        engine.validate()
        suspended = False
        for _state in engine.run_iter():
            if not suspended and self._wait_timeout.is_stopped():
                LOG.info('Conductor stopping: suspending job %s after its current step',
                         job.uuid)
                engine.suspend()
                suspended = True
        return engine.storage.get_flow_state() == states.SUSPENDED

    def _task_context(self, task):
        return jobboard.make_job(task, self._conf).context

    def _settle(self, job, task_id, suspended):
        """The task must be final before its job goes; True consumes the job."""
        try:
            task = self._repo.get_any(task_id)
        except Exception:
            LOG.exception('Job %s: cannot read task %s; leaving the job', job.uuid, task_id)
            return False
        if task is None or task['status'] in db_api.FINAL_STATUSES:
            self._forget_book(job)
            return True
        if task['worker'] != self.worker:
            LOG.warning('Task %s was taken over by %s meanwhile', task_id, task['worker'])
            return False
        if suspended:
            return False
        # The flow could not even revert properly (or the factory failed): what the flow
        # recorded is removed here and the task fails, as the in-process executor does.
        LOG.error('Task %s did not record its outcome; failing it (left: %s)', task_id,
                  task['work'])
        if task['work']:
            try:
                plugin = executor_mod.load_flow_plugin(task['type'])
                plugin.cleanup(jobboard.make_job(task, self._conf), dict(task['work']))
            except Exception:
                LOG.exception('Cleaning up after task %s failed; left: %s', task_id,
                              task['work'])
        self._repo.finish(task_id, self.worker, 'failure',
                          self._conf.rax_tasks.task_time_to_live, message=messages.UNEXPECTED)
        self._forget_book(job)
        return True

    def _forget_book(self, job):
        """A finished task's flow state is of no further use."""
        if self._persistence is None or not getattr(job, 'book_uuid', None):
            return
        try:
            with contextlib.closing(self._persistence.get_connection()) as conn:
                conn.destroy_logbook(job.book_uuid)
        except tf_exc.NotFound:
            pass
        except Exception:
            LOG.warning('Could not remove the logbook of job %s', job.uuid, exc_info=True)


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
        old = [t for t in self.repo.active()
               if now - t['created_at'] > datetime.timedelta(seconds=self.grace)]
        if not old:
            return []
        # Listed after the tasks were read: a job posted meanwhile is seen.
        posted = {(job.details or {}).get('task_id') for job in self.board.iterjobs()}
        failed = []
        worker = executor_mod.worker_id()
        for task in old:
            if task['id'] in posted:
                continue
            if not self.repo.take_over(task, worker, self.conf.rax_tasks.lease_seconds):
                continue
            if task['work']:
                try:
                    plugin = executor_mod.load_flow_plugin(task['type'])
                    plugin.cleanup(jobboard.make_job(task, self.conf), dict(task['work']))
                except Exception:
                    LOG.exception('Cleaning up after orphaned task %s failed', task['id'])
            self.repo.finish(task['id'], worker, 'failure',
                             self.conf.rax_tasks.task_time_to_live,
                             message=messages.INTERRUPTED)
            LOG.warning('Task %s (%s) had no job on the board; failed it', task['id'],
                        task['type'])
            failed.append(task['id'])
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


def make_conductor(conf, board, persistence, repo, name):
    """The conductor `[rax_jobboard]` asks for, around a claim-keeping `board`."""
    opts = conf.rax_jobboard
    cls = NonBlockingConductor if opts.conductor_type == 'nonblocking' else BlockingConductor
    max_jobs = opts.max_simultaneous_jobs if opts.conductor_type == 'nonblocking' else 1
    conductor = cls(name, board, persistence=persistence, engine='serial',
                    wait_timeout=opts.poll_interval, max_simultaneous_jobs=max_jobs)
    conductor._setup_tasks(conf, repo)
    return conductor

