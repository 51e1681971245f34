"""The in-process executor: outcomes, messages, leases and recovery of orphaned tasks.

Real sqlite records and real TaskFlow engines; the flows are small fakes."""

import datetime
import os
import subprocess
import sys
import threading
import uuid

import pytest
from oslo_config import cfg
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rax_glance import errors
from rax_glance.tasks import executor as executor_mod
from rax_glance.tasks import lifecycle
from rax_glance.tasks import messages
from rax_glance.tasks import options
from rax_glance.tasks.db import api as db_api
from rax_glance.tasks.db import migration


class Step(tf_task.Task):
    def __init__(self, name, log, fail=None):
        super().__init__(name=name)
        self.log, self.fail = log, fail

    def execute(self):
        self.log.append(('do', self.name))
        if self.fail is not None:
            raise self.fail

    def revert(self, *args, **kwargs):
        self.log.append(('undo', self.name))


class FakePlugin:
    def __init__(self, fail=None):
        self.log, self.fail, self.cleaned = [], fail, []

    def build(self, job):
        job.remember('thing', 'made-by-%s' % job.id)
        return linear_flow.Flow('f').add(Step('a', self.log), Step('b', self.log, self.fail))

    def result(self, job, storage):
        return {'image_id': 'img-%s' % job.id}

    def cleanup(self, job, work):
        self.cleaned.append(work)


@pytest.fixture
def env(tmp_path, monkeypatch):
    url = 'sqlite:///%s' % (tmp_path / 't.sqlite')
    migration.db_sync(url)
    conf = cfg.ConfigOpts()
    options.register(conf)
    conf([], project='test')
    conf.set_override('workers', 2, group='rax_tasks')
    repo = db_api.TaskRepo(db_api.get_engine(url))
    plugin = FakePlugin()
    monkeypatch.setattr(lifecycle, 'load_flow_plugin', lambda task_type: plugin)
    ex = executor_mod.InProcessExecutor(conf, repo, make_context=lambda task: 'ctx')
    yield repo, ex, plugin
    ex.stop()


def _new(repo, worker, status='pending'):
    task = repo.create(str(uuid.uuid4()), 'import', 'p1', 'u1', ['admin'], {}, worker, 60)
    if status == 'processing':
        repo.claim(task['id'], worker, 60)
    return task


def _run(ex, repo, task):
    assert repo.claim(task['id'], ex.worker, 60)
    return executor_mod.run_task(repo, ex.conf, repo.get_any(task['id']), ex.worker,
                                 ex.make_context)


def test_success_records_result_and_clears_work(env):
    repo, ex, plugin = env
    task = _new(repo, ex.worker)
    assert _run(ex, repo, task) == 'success'
    done = repo.get(task['id'], 'p1')
    assert done['result'] == {'image_id': 'img-%s' % task['id']} and done['work'] == {}
    assert plugin.log == [('do', 'a'), ('do', 'b')] and plugin.cleaned == []


@pytest.mark.parametrize('exc,message', [
    (messages.TaskFailed(messages.IMPORT_NOT_FOUND), messages.IMPORT_NOT_FOUND),
    (errors.ImageError('bad footer'), errors.MESSAGES[111]),
    (RuntimeError('secret internal detail /etc/passwd'), messages.UNEXPECTED),
])
def test_failure_reverts_and_shows_only_user_messages(env, exc, message, caplog):
    repo, ex, plugin = env
    plugin.fail = exc
    task = _new(repo, ex.worker)
    assert _run(ex, repo, task) == 'failure'
    done = repo.get(task['id'], 'p1')
    assert done['message'] == message and done['result'] is None
    assert 'secret' not in done['message']
    assert ('undo', 'a') in plugin.log
    # Anything a flow recorded is handed to cleanup after a failure.
    assert plugin.cleaned == [{'thing': 'made-by-%s' % task['id']}]


def test_submit_runs_in_the_pool(env):
    repo, ex, plugin = env
    done = threading.Event()
    original = repo.finish

    def finish(*args, **kwargs):
        result = original(*args, **kwargs)
        done.set()
        return result

    repo.finish = finish
    task = _new(repo, ex.worker)
    ex.submit(task['id'])
    assert done.wait(30)
    assert repo.get(task['id'], 'p1')['status'] == 'success'


def _dead_worker():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return '%s:%d:deadbeef' % (os.uname().nodename, proc.pid)


def test_recovery_fails_processing_and_reruns_pending_of_dead_workers(env):
    repo, ex, plugin = env
    dead = _dead_worker()
    interrupted = _new(repo, dead, status='processing')
    repo.record_work(interrupted['id'], dead, {'image_id': 'half-made'})
    waiting = _new(repo, dead)
    # Our own pid with another token: a previous process that had our pid, so dead too.
    reused = _new(repo, executor_mod.worker_id().rsplit(':', 1)[0] + ':othertoken',
                  status='processing')
    mine = _new(repo, ex.worker, status='processing')
    handled = ex.recover()
    assert set(handled) == {interrupted['id'], waiting['id'], reused['id']}
    ex.pool.shutdown(wait=True)
    failed = repo.get(interrupted['id'], 'p1')
    assert failed['status'] == 'failure' and failed['message'] == messages.INTERRUPTED
    assert plugin.cleaned == [{'image_id': 'half-made'}]
    assert repo.get(waiting['id'], 'p1')['status'] == 'success'
    assert repo.get(reused['id'], 'p1')['message'] == messages.INTERRUPTED
    assert repo.get(mine['id'], 'p1')['status'] == 'processing'


def test_live_remote_worker_is_left_alone_until_its_lease_runs_out(env):
    repo, ex, plugin = env
    remote = 'some-other-host:1234:cafe'
    task = _new(repo, remote, status='processing')
    assert ex.recover() == []
    with repo.engine.begin() as conn:
        conn.execute(db_api.T.update().values(
            lease_until=db_api.utcnow() - datetime.timedelta(seconds=1)))
    assert ex.recover() == [task['id']]
    ex.pool.shutdown(wait=True)
    assert repo.get(task['id'], 'p1')['message'] == messages.INTERRUPTED


def test_worker_liveness():
    me = executor_mod.worker_id()
    assert not executor_mod.worker_is_dead(me)
    assert executor_mod.worker_is_dead(_dead_worker())
    assert not executor_mod.worker_is_dead('other-host:1:x')
    assert not executor_mod.worker_is_dead(None)


def test_request_credentials_live_only_while_the_task_runs(env):
    repo, ex, plugin = env
    task = _new(repo, ex.worker)
    executor_mod.stash_request_auth(task['id'], 'token-1', [{'type': 'object-store'}])
    seen = []
    ex.make_context = lambda t: seen.append(executor_mod.request_auth(t.id)) or 'ctx'
    assert _run(ex, repo, task) == 'success'
    assert seen == [('token-1', [{'type': 'object-store'}])]
    assert executor_mod.request_auth(task['id']) == (None, None)
    # Never written to the database.
    assert 'token-1' not in repr(repo.get_any(task['id']))


def test_idle_lease_keeper_does_not_write(env, monkeypatch):
    """On sqlite any write can fail a concurrent Glance request: an idle keeper only reads."""
    repo, ex, _plugin = env
    writes = []
    monkeypatch.setattr(repo, 'renew_leases', lambda *a: writes.append('renew') or 0)
    real_begin = repo.engine.begin

    def begin():
        writes.append('transaction')
        return real_begin()

    monkeypatch.setattr(repo.engine, 'begin', begin)
    # One round of the keeper loop: its wait stops it.
    rounds = []
    monkeypatch.setattr(ex._stop, 'wait', lambda period: rounds.append(period) or ex._stop.set())
    ex._keep()
    assert rounds and writes == []

    # A task this process holds has its lease renewed.
    ex._hold('some-task')
    ex._stop.clear()
    ex._keep()
    assert writes == ['renew']
