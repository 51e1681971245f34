"""Revert and cleanup paths of the import and export flows, without Glance or Swift.

The flows' atoms run in real TaskFlow engines between the lifecycle's bookkeeping atoms; the
Glance domain and Swift calls they make on revert are fakes that record what was removed.
(tests/functional/test_tasks_import.py and test_tasks_export.py reach the same paths over
HTTP against the real services.)"""

import os

import pytest
from oslo_config import cfg
from taskflow import engines
from taskflow import task as tf_task
from taskflow.patterns import linear_flow

from rax_glance.swift import errors as swift_errors
from rax_glance.tasks import lifecycle
from rax_glance.tasks import messages
from rax_glance.tasks import options
from rax_glance.tasks.flows import base
from rax_glance.tasks.flows import export_flow
from rax_glance.tasks.flows import import_flow
from rax_glance.vhd import content as vhd_content


class FakeRepo:
    """The part of TaskRepo a Job and the lifecycle use, in memory."""

    def __init__(self):
        self.work, self.finished = {}, None

    def record_work(self, task_id, worker, work):
        self.work = dict(work)

    def finish(self, task_id, worker, status, ttl, result=None, message=''):
        self.finished = (status, message, result)
        return True


@pytest.fixture
def conf(tmp_path):
    conf = cfg.ConfigOpts()
    options.register(conf)
    conf([], project='test')
    conf.set_override('work_dir', str(tmp_path), group='rax_tasks')
    return conf


@pytest.fixture
def removed(monkeypatch):
    gone = []
    monkeypatch.setattr(base, 'delete_image',
                        lambda ctx, image_id: gone.append(('image', image_id)) or True)
    monkeypatch.setattr(base, 'remove_partial_data',
                        lambda image_id: gone.append(('data', image_id)) or False)

    def delete_project_object(ctx, container, obj, conf=None, writer_id=None):
        gone.append(('object', container, obj, writer_id))
        if obj == 'already-gone':
            raise swift_errors.ObjectNotFound(container, obj)

    monkeypatch.setattr(export_flow.swiftdlo, 'delete_project_object', delete_project_object)
    return gone


def _job(conf, plugin, task_type, task_input=None):
    task = {'id': 'task-1', 'type': task_type, 'owner': 'p1', 'user_id': 'u1',
            'input': task_input or {}}
    return lifecycle.Job(task, 'ctx', conf, FakeRepo(), 'me', plugin=plugin)


class Boom(tf_task.Task):
    def execute(self):
        raise RuntimeError('the next step failed')


class Made(tf_task.Task):
    """Stands in for an atom whose execute recorded `work` (as CreateImage does)."""

    def __init__(self, job, key, value, provides=None):
        super().__init__(name='made-%s' % key, provides=provides)
        self.job, self.key, self.value = job, key, value

    def execute(self):
        self.job.remember(self.key, self.value)
        return self.value


# -- import ----------------------------------------------------------------------------------
def test_create_image_revert_deletes_the_recorded_image(conf, removed):
    job = _job(conf, import_flow.ImportFlow(), 'import')
    atom = import_flow.CreateImage(job)
    atom.revert()
    assert removed == []  # nothing recorded: nothing to delete
    job.remember('image_id', 'img-1')
    atom.revert()
    assert removed == [('image', 'img-1')] and job.work == {} and job.repo.work == {}


def test_import_failure_after_the_image_exists_removes_it_once(conf, removed, monkeypatch):
    """CreateImage runs for real (on a fake Glance domain); the step after it fails: its
    revert deletes the image, and the bookkeeping finds nothing left to clean up."""
    gateway = FakeGateway()
    monkeypatch.setattr(base, 'gateway', lambda: gateway)
    monkeypatch.setattr(base, 'operator_context', lambda ctx: ctx)
    plugin = import_flow.ImportFlow()
    job = _job(conf, plugin, 'import')
    job._context = Context()
    plugin.build = lambda job: linear_flow.Flow('f').add(
        Given(), import_flow.CreateImage(job), Boom('boom'))
    with pytest.raises(RuntimeError):
        engines.run(lifecycle.wrap(job))
    assert gateway.added == ['img-new']
    assert removed == [('image', 'img-new')]  # by the revert; no cleanup needed after it
    assert job.repo.finished == ('failure', messages.UNEXPECTED, None)
    assert job.work == {} and job.repo.work == {}


def test_import_cleanup_removes_record_and_partial_data(conf, removed):
    job = _job(conf, import_flow.ImportFlow(), 'import')
    import_flow.ImportFlow().cleanup(job, {'image_id': 'img-3'})
    assert removed == [('image', 'img-3'), ('data', 'img-3')]
    import_flow.ImportFlow().cleanup(job, {})
    assert len(removed) == 2


# -- export ----------------------------------------------------------------------------------
def test_upload_revert_deletes_only_what_carries_this_task_as_writer(conf, removed):
    job = _job(conf, export_flow.ExportFlow(), 'export')
    atom = export_flow.UploadVHD(job)
    atom.revert()
    assert removed == []
    job.remember('export', {'container': 'c', 'object': 'o', 'writer': 'task-1'})
    atom.revert()
    assert removed == [('object', 'c', 'o', 'task-1')] and 'export' not in job.work
    # An export recorded before writer ids existed: the task id, never "anyone's".
    job.remember('export', {'container': 'c', 'object': 'old'})
    atom.revert()
    assert removed[-1] == ('object', 'c', 'old', 'task-1')
    # Already gone (the writer removed what it wrote): nothing to do, no error.
    job.remember('export', {'container': 'c', 'object': 'already-gone', 'writer': 'task-1'})
    atom.revert()
    assert job.work == {}


@pytest.mark.parametrize('refusal, message', [
    (swift_errors.ObjectExists('c', 'o'), messages.OBJECT_EXISTS),
    (swift_errors.SegmentPrefixInUse('c', 'o', ['o-000']), messages.SEGMENTS_EXIST),
])
def test_someone_elses_object_is_never_removed_on_revert(conf, removed, monkeypatch,
                                                         refusal, message):
    job = _job(conf, export_flow.ExportFlow(), 'export')
    monkeypatch.setattr(base, 'gateway', lambda: FakeGateway())
    monkeypatch.setattr(export_flow.UploadVHD, '_vhd_stream',
                        lambda self, image, d: vhd_content.IterStream(iter(()), 0))

    def refuse(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(export_flow.swiftdlo, 'write_project_object', refuse)
    atom = export_flow.UploadVHD(job)
    target = {'image_id': 'img', 'container': 'c', 'object': 'o'}
    with pytest.raises(messages.TaskFailed) as caught:
        atom.execute(target, 'vhd')
    assert caught.value.message == message % dict(target, image='img')
    atom.revert()
    assert removed == [] and job.work == {}
    # The spool directory is gone too.
    assert not any(name.startswith('rax-glance-task-') for name in os.listdir(
        conf.rax_tasks.work_dir))


def test_export_failure_removes_the_export_and_the_spool(conf, removed, tmp_path):
    plugin = export_flow.ExportFlow()
    job = _job(conf, plugin, 'export')
    spool = tmp_path / 'rax-glance-task-task-1'
    spool.mkdir()
    (spool / 'chain.vhd').write_bytes(b'x')
    plugin.build = lambda job: linear_flow.Flow('f').add(
        Made(job, 'export', {'container': 'c', 'object': 'o', 'writer': 'task-1'}),
        Made(job, 'spool_dir', str(spool)), Boom('boom'))
    with pytest.raises(RuntimeError):
        engines.run(lifecycle.wrap(job))
    assert removed == [('object', 'c', 'o', 'task-1')]
    assert not spool.exists()
    assert job.repo.finished == ('failure', messages.UNEXPECTED, None)


class Context:
    project_id, user_id = 'p1', 'u1'


class Given(tf_task.Task):
    default_provides = 'source'

    def execute(self):
        return {'name': 'my image', 'container': 'c', 'object': 'o'}


class FakeGateway:
    def __init__(self):
        self.added = []

    def get_repo(self, ctx):
        return self

    def get_image_factory(self, ctx):
        return self

    def new_image(self, **kwargs):
        image = Context()
        image.image_id = 'img-new'
        return image

    def add(self, image):
        self.added.append(image.image_id)

    def get(self, image_id):
        return object()
