"""The task lifecycle shared by every executor: the typed record, outcomes, settlement and
the user message of a failure (also after TaskFlow persistence).

Real sqlite task records and real TaskFlow engines; plugins are fakes."""

import uuid

import pytest
from oslo_config import cfg
from taskflow import engines
from taskflow import task as tf_task
from taskflow.patterns import linear_flow
from taskflow.types import failure as tf_failure

from rax_glance import errors
from rax_glance.tasks import executor as executor_mod
from rax_glance.tasks import lifecycle
from rax_glance.tasks import messages
from rax_glance.tasks import options
from rax_glance.tasks.db import api as db_api
from rax_glance.tasks.db import migration

ME = 'host:1:me'


@pytest.fixture
def conf():
    conf = cfg.ConfigOpts()
    options.register(conf)
    conf([], project='test')
    return conf


@pytest.fixture
def repo(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 't.sqlite')
    migration.db_sync(url)
    return db_api.TaskRepo(db_api.get_engine(url))


class Plugin:
    def __init__(self, flow=None, build_error=None):
        self.flow, self.build_error, self.cleaned = flow, build_error, []

    def build(self, job):
        if self.build_error is not None:
            raise self.build_error
        return self.flow

    def result(self, job, storage):
        return {'image_id': 'img'}

    def cleanup(self, job, work):
        self.cleaned.append(work)


def _task(repo, worker=ME, status='processing', work=None):
    task = repo.create(str(uuid.uuid4()), 'import', 'p1', 'u1', ['member'], {'a': 1}, worker,
                       60)
    if status == 'processing':
        repo.claim(task['id'], worker, 60)
    if work:
        repo.record_work(task['id'], worker, work)
    return repo.get_any(task['id'])


def _job(repo, conf, task, plugin, worker=ME):
    return lifecycle.Job(task, 'ctx', conf, repo, worker, plugin=plugin)


# -- the record ------------------------------------------------------------------------------
def test_task_record_is_typed_and_immutable(repo):
    row = _task(repo, work={'image_id': 'i'})
    task = lifecycle.Task.of(row)
    assert (task.id, task.type, task.owner, task.user_id, task.roles, task.input) == (
        row['id'], 'import', 'p1', 'u1', ('member',), {'a': 1})
    assert (task.status, task.worker, task.work, task.final) == (
        'processing', ME, {'image_id': 'i'}, False)
    assert lifecycle.Task.of(task) is task and lifecycle.Task.of(None) is None
    with pytest.raises(AttributeError):
        task.status = 'success'
    assert lifecycle.load(repo, row['id']) == task
    assert lifecycle.load(repo, str(uuid.uuid4())) is None


def test_take_over_is_a_compare_and_set_on_the_record(repo):
    task = lifecycle.Task.of(_task(repo, worker='dead:1:x'))
    assert lifecycle.take_over(repo, task, ME, 60)
    assert not lifecycle.take_over(repo, task, 'other:2:y', 60)  # it changed meanwhile
    assert lifecycle.load(repo, task.id).worker == ME


# -- outcomes --------------------------------------------------------------------------------
def test_fail_removes_what_is_left_and_records_the_message(repo, conf):
    plugin = Plugin()
    job = _job(repo, conf, _task(repo, work={'image_id': 'i'}), plugin)
    assert lifecycle.fail(job, messages.INTERRUPTED) is True
    done = lifecycle.load(repo, job.id)
    assert (done.status, done.work) == ('failure', {})
    assert repo.get_any(job.id)['message'] == messages.INTERRUPTED
    assert plugin.cleaned == [{'image_id': 'i'}] and job.outcome == 'failure'


def test_fail_and_succeed_change_nothing_on_a_task_held_elsewhere(repo, conf):
    row = _task(repo, worker='other:2:y', work={'image_id': 'i'})
    job = _job(repo, conf, row, Plugin(), worker=ME)
    assert lifecycle.succeed(job, {'image_id': 'i'}) is False
    assert job.outcome == 'lost'
    assert lifecycle.fail(job, messages.UNEXPECTED) is False
    assert lifecycle.load(repo, job.id).status == 'processing'


def test_a_failing_cleanup_still_records_the_failure(repo, conf):
    class Broken(Plugin):
        def cleanup(self, job, work):
            raise RuntimeError('store down')

    job = _job(repo, conf, _task(repo, work={'image_id': 'i'}), Broken())
    assert lifecycle.fail(job, messages.UNEXPECTED)
    assert lifecycle.load(repo, job.id).status == 'failure'


def test_settle(repo, conf):
    plugin = Plugin()
    final = _task(repo)
    repo.finish(final['id'], ME, 'success', 48, result={})
    assert lifecycle.settle(_job(repo, conf, final, plugin)) == lifecycle.FINAL
    gone = dict(final, id=str(uuid.uuid4()))
    assert lifecycle.settle(_job(repo, conf, gone, plugin)) == lifecycle.FINAL
    elsewhere = _task(repo, worker='other:2:y')
    assert lifecycle.settle(_job(repo, conf, elsewhere, plugin)) == lifecycle.NOT_OURS
    assert lifecycle.load(repo, elsewhere['id']).status == 'processing'
    # Ours and unfinished: what the record (not the stale job) says is left is removed.
    stale = _task(repo)
    job = _job(repo, conf, stale, plugin)
    repo.record_work(stale['id'], ME, {'image_id': 'late'})
    assert lifecycle.settle(job, messages.INTERRUPTED) == lifecycle.FAILED_HERE
    assert plugin.cleaned == [{'image_id': 'late'}]
    assert repo.get_any(stale['id'])['message'] == messages.INTERRUPTED


class Step(tf_task.Task):
    def __init__(self, name, log, fail=None, job=None):
        super().__init__(name=name, provides='image_id' if job else None)
        self.log, self.fail, self.job = log, fail, job

    def execute(self):
        self.log.append('do ' + self.name)
        if self.job is not None:
            self.job.remember('image_id', 'img')
        if self.fail is not None:
            raise self.fail
        return 'img'

    def revert(self, *args, **kwargs):
        self.log.append('undo ' + self.name)


def test_wrap_records_success_last(repo, conf):
    log, plugin = [], Plugin()
    job = _job(repo, conf, _task(repo), plugin)
    plugin.flow = linear_flow.Flow('f').add(Step('a', log, job=job), Step('b', log))
    engines.run(lifecycle.wrap(job))
    done = repo.get_any(job.id)
    assert (done['status'], done['result'], done['work']) == ('success', {'image_id': 'img'},
                                                              {})
    assert job.outcome == 'success' and plugin.cleaned == []


def test_wrap_records_the_failure_after_every_revert(repo, conf):
    log, plugin = [], Plugin()
    job = _job(repo, conf, _task(repo), plugin)
    plugin.flow = linear_flow.Flow('f').add(
        Step('a', log, job=job), Step('b', log, fail=errors.HasParentError('x')))
    with pytest.raises(errors.HasParentError):
        engines.run(lifecycle.wrap(job))
    assert log == ['do a', 'do b', 'undo b', 'undo a']
    done = repo.get_any(job.id)
    assert (done['status'], done['message']) == ('failure', errors.MESSAGES[721])
    assert plugin.cleaned == [{'image_id': 'img'}]


# -- the in-process run ------------------------------------------------------------------------
def test_run_task_records_a_user_message_raised_while_building(repo, conf, monkeypatch):
    plugin = Plugin(build_error=messages.TaskFailed(messages.IMPORT_NOT_FOUND))
    monkeypatch.setattr(lifecycle, 'load_flow_plugin', lambda task_type: plugin)
    task = _task(repo)
    assert executor_mod.run_task(repo, conf, task, ME, lambda t: 'ctx') == 'failure'
    assert repo.get_any(task['id'])['message'] == messages.IMPORT_NOT_FOUND
    plugin.build_error = KeyError('internal')
    task = _task(repo)
    assert executor_mod.run_task(repo, conf, task, ME, lambda t: 'ctx') == 'failure'
    assert repo.get_any(task['id'])['message'] == messages.UNEXPECTED


def test_run_task_reports_a_task_taken_over_meanwhile_as_lost(repo, conf, monkeypatch):
    class Stolen(tf_task.Task):
        def execute(self):
            repo.take_over({'id': task['id'], 'worker': ME, 'status': 'processing'},
                           'other:2:y', 60)

    plugin = Plugin(flow=linear_flow.Flow('f').add(Stolen('stolen')))
    monkeypatch.setattr(lifecycle, 'load_flow_plugin', lambda task_type: plugin)
    task = _task(repo)
    assert executor_mod.run_task(repo, conf, task, ME, lambda t: 'ctx') == 'lost'
    assert repo.get_any(task['id'])['status'] == 'processing'  # the other worker's now


# -- user messages ---------------------------------------------------------------------------
def _reloaded(exc):
    return tf_failure.Failure.from_dict(tf_failure.Failure.from_exception(exc).to_dict())


def test_a_persisted_image_error_is_known_by_its_class_not_its_text():
    """The message of a failure loaded back from TaskFlow's persistence comes from the
    exception's class (its `code`), whatever its text says."""
    failure = _reloaded(errors.HasParentError('a parent'))
    assert failure.exception is None
    as_dict = failure.to_dict()
    for text in ('garbage', '396: not a VHD', '', None):
        as_dict['exception_str'] = text
        assert lifecycle.persisted_message(tf_failure.Failure.from_dict(as_dict)) == \
            errors.MESSAGES[721]


def test_a_persisted_task_failure_keeps_its_message_and_unknown_errors_stay_hidden():
    assert lifecycle.persisted_message(
        _reloaded(messages.TaskFailed(messages.NOT_OWNER))) == messages.NOT_OWNER
    assert lifecycle.persisted_message(_reloaded(RuntimeError('721: secret'))) is None
    assert lifecycle.persisted_message(_reloaded(ValueError('/etc/passwd'))) is None


def test_user_message_unwraps_taskflow_wrapped_failures():
    from taskflow import exceptions as tf_exc

    wrapped = tf_exc.WrappedFailure([
        tf_failure.Failure.from_exception(errors.NullUniqueIdError('zero')),
        tf_failure.Failure.from_exception(RuntimeError('x'))])
    assert lifecycle.user_message(wrapped) == errors.MESSAGES[614]
    assert lifecycle.user_message(RuntimeError('x')) is None
