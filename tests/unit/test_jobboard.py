"""The jobboard executor and conductor pieces without servers: board configuration, job
details, outcome recording, resumption after a dead conductor, claim keeping, dispatching.

Real sqlite task records and TaskFlow persistence, real TaskFlow engines; boards are fakes
(the real Redis board runs in tests/functional/test_jobboard.py)."""

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from oslo_config import cfg
from taskflow import engines
from taskflow import task as tf_task
from taskflow.patterns import linear_flow
from taskflow.persistence import backends as tf_backends
from taskflow.persistence import models
from taskflow.types import failure as tf_failure

from rax_glance import errors
from rax_glance.tasks import conductor as conductor_mod
from rax_glance.tasks import executor as executor_mod
from rax_glance.tasks import jobboard
from rax_glance.tasks import lifecycle
from rax_glance.tasks import messages
from rax_glance.tasks.db import api as db_api
from rax_glance.tasks.db import migration


@pytest.fixture
def conf(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 'glance.sqlite')
    migration.db_sync(url)
    conf = cfg.ConfigOpts()
    jobboard.register_opts(conf)
    conf([], project='test')
    conf.set_override('connection', url, group='database')
    return conf


@pytest.fixture
def repo(conf):
    return db_api.TaskRepo(db_api.get_engine(conf.database.connection))


def _task(repo, worker='glance-api:1:x', task_type='import'):
    return repo.create(str(uuid.uuid4()), task_type, 'project-a', 'user-a', ['member'],
                       {'import_from': 'c/o'}, worker, 60)


# -- configuration -------------------------------------------------------------------------
def test_redis_board_conf(conf):
    conf.set_override('hosts', ['redis.example:6380', 'ignored:1'], group='rax_jobboard')
    conf.set_override('password', 's3cret', group='rax_jobboard')
    conf.set_override('board_options', {'db': '2', 'socket_timeout': '5'}, group='rax_jobboard')
    assert jobboard.board_conf(conf) == {
        'board': 'redis', 'host': 'redis.example', 'port': 6380, 'namespace': 'rax-glance',
        'password': 's3cret', 'db': '2', 'socket_timeout': '5'}


def test_zookeeper_board_by_configuration_alone(conf):
    conf.set_override('board', 'zookeeper', group='rax_jobboard')
    conf.set_override('hosts', ['zk1:2181', 'zk2:2181', 'zk3:2181'], group='rax_jobboard')
    conf.set_override('board_name', 'region-1', group='rax_jobboard')
    assert jobboard.board_conf(conf) == {'board': 'zookeeper',
                                         'hosts': 'zk1:2181,zk2:2181,zk3:2181',
                                         'path': '/region-1/jobs'}
    try:
        import kazoo  # noqa: F401
    except ImportError:
        return  # the board class itself needs kazoo; its configuration is checked above
    board = jobboard.fetch_board(conf, None)
    assert type(board).__name__ == 'ZookeeperJobBoard' and board.path == '/region-1/jobs'


def test_redis_board_is_fetched_from_configuration(conf):
    conf.set_override('hosts', ['127.0.0.1:6390'], group='rax_jobboard')
    board = jobboard.fetch_board(conf, None)
    assert type(board).__name__ == 'RedisJobBoard'
    assert board.namespace == 'rax-glance' and not board.connected


def test_persistence_defaults_to_the_glance_database(conf, tmp_path):
    assert jobboard.persistence_url(conf) == conf.database.connection
    other = 'sqlite:///%s' % (tmp_path / 'flows.sqlite')
    conf.set_override('persistence_connection', other, group='rax_jobboard')
    assert jobboard.persistence_url(conf) == other
    backend = jobboard.fetch_persistence(conf)  # dedicated: TaskFlow's own migrations
    with contextlib.closing(backend.get_connection()) as conn:
        assert conn.get_logbooks() is not None


def test_bad_board_name_is_a_clear_error(conf):
    conf.set_override('board', 'no-such-board', group='rax_jobboard')
    with pytest.raises(Exception, match='no-such-board'):
        jobboard.fetch_board(conf, None)


# -- posting -------------------------------------------------------------------------------
class FakeBoard:
    def __init__(self, fail=None):
        self.posted, self.fail = [], fail
        self.claims, self.consumed = [], []

    def post(self, name, book=None, details=None):
        if self.fail:
            raise self.fail
        job = FakeJob(details, book)
        self.posted.append((name, book, details, job))
        return job

    def iterjobs(self):
        return [job for _name, _book, _details, job in self.posted]

    def claim(self, job, who, expiry=None):
        self.claims.append((job, who, expiry))

    def consume(self, job, who):
        self.consumed.append(job)


class FakeJob:
    def __init__(self, details, book=None):
        self.uuid = str(uuid.uuid4())
        self.details = details
        self.book_uuid = book.uuid if book is not None else None
        self.extended = 0

    def extend_expiry(self, expiry):
        self.extended += 1
        return True


def test_post_task_saves_the_factory_and_the_task_id(conf, repo):
    task = _task(repo)
    persistence = jobboard.fetch_persistence(conf)
    board = FakeBoard()
    jobboard.post_task(board, persistence, task)
    name, book, details, _job = board.posted[0]
    assert name == 'rax-glance-task-%s' % task['id']
    assert details['task_id'] == task['id'] and details['task_type'] == 'import'
    with contextlib.closing(persistence.get_connection()) as conn:
        saved = conn.get_logbook(book.uuid)
    flow_detail = saved.find(details['flow_uuid'])
    assert flow_detail.name == 'rax-import-%s' % task['id']
    assert flow_detail.meta['factory'] == {
        'name': 'rax_glance.tasks.jobboard.flow_factory', 'args': [],
        'kwargs': {'task_id': task['id'], 'task_type': 'import'}}


def test_a_task_whose_job_cannot_be_posted_fails_at_once(conf, repo):
    conf.set_override('hosts', ['127.0.0.1:1'], group='rax_jobboard')  # nothing listens
    executor = jobboard.JobboardExecutor(conf, repo, lambda task: None)
    task = _task(repo, worker=executor.worker)
    assert executor.submit(task['id']) is None
    done = repo.get_any(task['id'])
    assert (done['status'], done['message']) == ('failure', messages.UNEXPECTED)


# -- recording the outcome -------------------------------------------------------------------
class Step(tf_task.Task):
    def __init__(self, name, log, provides=None, fail=None, job=None):
        super().__init__(name=name, provides=provides)
        self.log, self.fail, self.job = log, fail, job

    def execute(self):
        self.log.append(('do', self.name))
        if self.job is not None:
            self.job.remember('image_id', 'img-1')
        if self.fail is not None:
            raise self.fail
        return 'img-1'

    def revert(self, *args, **kwargs):
        self.log.append(('undo', self.name))


class FakePlugin:
    def __init__(self):
        self.cleaned = []

    def build(self, job):
        return self.inner

    def result(self, job, storage):
        return {'image_id': storage.fetch('image_id')}

    def cleanup(self, job, work):
        self.cleaned.append(work)


def _wrapped(conf, repo, fail=None):
    task = _task(repo, worker=executor_mod.worker_id())
    repo.claim(task['id'], executor_mod.worker_id(), 60)
    plugin, log = FakePlugin(), []
    job = lifecycle.Job(repo.get_any(task['id']), None, conf, repo, lifecycle.worker_id(),
                        plugin=plugin)
    plugin.inner = linear_flow.Flow('inner').add(
        Step('make', log, provides='image_id', job=job), Step('use', log, fail=fail))
    return task, plugin, log, lifecycle.wrap(job, 'outer')


def test_success_is_recorded_with_the_plugin_result(conf, repo):
    task, plugin, log, flow = _wrapped(conf, repo)
    engines.run(flow)
    done = repo.get_any(task['id'])
    assert (done['status'], done['message'], done['result']) == (
        'success', '', {'image_id': 'img-1'})
    assert plugin.cleaned == [] and done['expires_at'] is not None


@pytest.mark.parametrize('exc, message', [
    (messages.TaskFailed(messages.IMPORT_NOT_FOUND), messages.IMPORT_NOT_FOUND),
    (errors.HasParentError('has a parent'), errors.MESSAGES[721]),
    (RuntimeError('secret internals /etc/passwd'), messages.UNEXPECTED),
])
def test_failure_is_recorded_after_every_revert(conf, repo, exc, message):
    task, plugin, log, flow = _wrapped(conf, repo, fail=exc)
    with pytest.raises(type(exc)):
        engines.run(flow)
    assert log == [('do', 'make'), ('do', 'use'), ('undo', 'use'), ('undo', 'make')]
    done = repo.get_any(task['id'])
    assert (done['status'], done['message'], done['result']) == ('failure', message, None)
    # The fake steps do not undo their recorded work: the bookkeeping atom removes it.
    assert plugin.cleaned == [{'image_id': 'img-1'}]


def test_messages_survive_persistence():
    def reloaded(exc):
        return tf_failure.Failure.from_dict(tf_failure.Failure.from_exception(exc).to_dict())

    job = lifecycle.Job({'id': 't', 'input': {}, 'type': 'import', 'owner': 'p',
                         'user_id': 'u'}, None, None, None, 'w')
    restored = reloaded(messages.TaskFailed(messages.UNSUPPORTED_PROPERTY))
    assert restored.exception is None
    assert lifecycle.failure_message(job, {'a': restored}) == messages.UNSUPPORTED_PROPERTY
    assert lifecycle.failure_message(
        job, {'a': reloaded(errors.NullUniqueIdError('zero'))}) == errors.MESSAGES[614]
    assert lifecycle.failure_message(job, {'a': reloaded(KeyError('x'))}) == messages.UNEXPECTED
    assert lifecycle.failure_message(job, {}) == messages.UNEXPECTED


# -- a conductor dying mid-flow --------------------------------------------------------------
class Journal(tf_task.Task):
    def __init__(self, name, path, die_in):
        super().__init__(name=name)
        self.path, self.die_in = path, die_in

    def execute(self):
        with open(self.path, 'a') as fh:
            fh.write('do %s\n' % self.name)
        if self.name == self.die_in:
            os._exit(3)  # the conductor process dies in the middle of this step

    def revert(self, *args, **kwargs):
        with open(self.path, 'a') as fh:
            fh.write('undo %s\n' % self.name)


def journal_flow(path, die_in=None):
    return linear_flow.Flow('journal').add(*(Journal(n, path, die_in)
                                             for n in ('one', 'two', 'three')))


_CHILD = '''
import contextlib, sys
from taskflow import engines
from taskflow.persistence import backends, models
from tests.unit import test_jobboard as t
backend = backends.fetch({"connection": sys.argv[1]})
with contextlib.closing(backend.get_connection()) as conn:
    conn.upgrade()
book = models.LogBook("b")
fd = models.FlowDetail("journal", uuid="11111111-1111-1111-1111-111111111111")
book.add(fd)
engines.save_factory_details(fd, t.journal_flow, [sys.argv[2]], {"die_in": sys.argv[3]})
with contextlib.closing(backend.get_connection()) as conn:
    conn.save_logbook(book)
print(book.uuid, flush=True)
engines.load_from_detail(fd, backend=backend, engine="serial").run()
'''


def _die_in(tmp_path, atom):
    db = 'sqlite:///%s' % (tmp_path / 'flows.sqlite')
    journal = tmp_path / 'journal'
    child = subprocess.run([sys.executable, '-c', _CHILD, db, str(journal), atom],
                           capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert child.returncode == 3, child.stderr
    backend = tf_backends.fetch({'connection': db})
    with contextlib.closing(backend.get_connection()) as conn:
        book = conn.get_logbook(child.stdout.split()[0])
    return backend, book.find('11111111-1111-1111-1111-111111111111'), journal


def test_an_atom_left_running_is_reverted_not_run_again(tmp_path):
    backend, flow_detail, journal = _die_in(tmp_path, 'two')
    names = [detail.name for detail in flow_detail]
    engine = engines.load_from_detail(flow_detail, backend=backend, engine='serial')
    engine.compile()
    engine.prepare()
    assert conductor_mod.fail_interrupted_atoms(engine.storage, names) == ['two']
    with pytest.raises(messages.TaskFailed) as caught:
        engine.run()
    assert caught.value.message == messages.INTERRUPTED
    assert journal.read_text().split('\n')[:-1] == ['do one', 'do two', 'undo two',
                                                    'undo one']


def test_a_flow_without_running_atoms_resumes(tmp_path):
    backend, flow_detail, journal = _die_in(tmp_path, 'two')
    names = [detail.name for detail in flow_detail]
    engine = engines.load_from_detail(flow_detail, backend=backend, engine='serial')
    engine.compile()
    engine.prepare()
    # As if the conductor had died right after `two` finished: nothing is running.
    engine.storage.save('two', None)
    assert conductor_mod.fail_interrupted_atoms(engine.storage, names) == []
    engine.run()
    assert journal.read_text().split('\n')[:-1] == ['do one', 'do two', 'do three']


# -- claims ----------------------------------------------------------------------------------
def test_claims_expire_and_are_kept_alive_while_held():
    board = FakeBoard()
    keeper = conductor_mod.ClaimKeepingBoard(board, expiry=0.6)
    job = FakeJob({})
    keeper.claim(job, 'me')
    assert board.claims == [(job, 'me', 0.6)]
    keeper.start_keeping()
    try:
        deadline = time.monotonic() + 10
        while job.extended < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.extended >= 2
        keeper.consume(job, 'me')
        seen = job.extended
        time.sleep(0.5)
        assert job.extended <= seen + 1 and board.consumed == [job]
    finally:
        keeper.stop_keeping()


def test_boards_without_claim_expiry_are_used_as_they_are():
    class SessionBoard:
        def __init__(self):
            self.claims = []

        def claim(self, job, who):
            self.claims.append((job, who))

    board = SessionBoard()
    keeper = conductor_mod.ClaimKeepingBoard(board, expiry=5)
    keeper.claim('job', 'me')
    assert not keeper.expiring and board.claims == [('job', 'me')]


# -- dispatching -------------------------------------------------------------------------------
class FakeEngine:
    """What TaskFlow's dispatch uses of an engine; `run()` stands for the flow's run and
    returns True when it was suspended."""

    def __init__(self, run):
        from taskflow.types import notifier

        self._run, self.state = run, 'SUCCESS'
        self.storage, self.notifier, self.atom_notifier = self, notifier.Notifier(), \
            notifier.Notifier()
        self.compilation = self
        self.execution_graph = self

    def nodes(self, data=False):
        return []

    def compile(self):
        pass

    prepare = validate = suspend = compile

    def run_iter(self):
        if self._run():
            self.state = 'SUSPENDED'
        return iter(())

    def get_flow_state(self):
        return self.state

    def get_atoms_states(self, names):
        return {}


def _runs(dispatcher, repo, run):
    """The job's flow is `run(job, task)`."""
    dispatcher._engine_from_job = lambda job: FakeEngine(
        lambda: run(job, lifecycle.load(repo, job.details['task_id'])))


@pytest.fixture
def dispatcher(conf, repo):
    conductor = conductor_mod.BlockingConductor('test', FakeBoard())
    conductor._setup_tasks(conf, repo)
    conductor._task_context = lambda task: None  # no Glance policy here
    return conductor


def test_jobs_of_finished_or_unknown_tasks_are_consumed_without_running(dispatcher, repo):
    task = _task(repo)
    repo.finish(task['id'], task['worker'], 'success', 48, result={'image_id': 'x'})
    _runs(dispatcher, repo, lambda job, task: pytest.fail('must not run'))
    assert dispatcher._dispatch_job(FakeJob({'task_id': task['id']})) is True
    assert dispatcher._dispatch_job(FakeJob({'task_id': str(uuid.uuid4())})) is True
    assert dispatcher._dispatch_job(FakeJob({})) is True


def test_the_conductor_takes_the_task_over_before_running(dispatcher, repo):
    task = _task(repo, worker='glance-api:1:x')
    seen = {}

    def run(job, task):
        seen.update(repo.get_any(task.id))
        repo.finish(task.id, dispatcher.worker, 'success', 48, result={'image_id': 'i'})
        return False

    _runs(dispatcher, repo, run)
    assert dispatcher._dispatch_job(FakeJob({'task_id': task['id']})) is True
    assert (seen['status'], seen['worker']) == ('processing', dispatcher.worker)


def test_a_task_held_by_someone_else_meanwhile_is_left_alone(dispatcher, repo, monkeypatch):
    task = _task(repo)
    monkeypatch.setattr(repo, 'take_over', lambda *args: False)
    _runs(dispatcher, repo, lambda job, task: pytest.fail('must not run'))
    assert dispatcher._dispatch_job(FakeJob({'task_id': task['id']})) is False


def test_a_flow_that_could_not_record_its_outcome_fails_the_task(dispatcher, repo):
    task = _task(repo)

    def run(job, task):
        raise RuntimeError('the flow factory blew up')

    _runs(dispatcher, repo, run)
    assert dispatcher._dispatch_job(FakeJob({'task_id': task['id']})) is True
    done = repo.get_any(task['id'])
    assert (done['status'], done['message']) == ('failure', messages.UNEXPECTED)


def test_storage_trouble_and_suspension_leave_the_job_to_another_conductor(dispatcher, repo):
    from taskflow import exceptions as tf_exc

    task = _task(repo)

    def run(job, task):
        raise tf_exc.StorageFailure('database went away')

    _runs(dispatcher, repo, run)
    assert dispatcher._dispatch_job(FakeJob({'task_id': task['id']})) is False
    assert repo.get_any(task['id'])['status'] == 'processing'
    _runs(dispatcher, repo, lambda job, task: True)  # suspended on SIGTERM
    assert dispatcher._dispatch_job(FakeJob({'task_id': task['id']})) is False
    assert repo.get_any(task['id'])['status'] == 'processing'


STEP_STARTED = threading.Event()
STEP_RELEASE = threading.Event()


class Slow(tf_task.Task):
    def execute(self):
        STEP_STARTED.set()
        STEP_RELEASE.wait(10)


class Never(tf_task.Task):
    def execute(self):
        raise AssertionError('ran after the conductor was stopped')


def slow_flow():
    return linear_flow.Flow('slow').add(Slow('slow'), Never('never'))


def test_sigterm_suspends_the_running_flow_after_its_current_step(conf, repo, tmp_path,
                                                                   caplog):
    """The conductor's own run loop on a real engine: stop() during the first step ->
    the flow is suspended before the second and the job is left for another conductor."""
    persistence = tf_backends.fetch({'connection': 'sqlite:///%s' % (tmp_path / 'f.sqlite')})
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.upgrade()
    book = models.LogBook('b')
    flow_detail = models.FlowDetail('slow', uuid=str(uuid.uuid4()))
    book.add(flow_detail)
    engines.save_factory_details(flow_detail, slow_flow, [], {})
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.save_logbook(book)
    job = FakeJob({'task_id': _task(repo)['id'], 'flow_uuid': flow_detail.uuid}, book)
    job.book = book
    conductor = conductor_mod.BlockingConductor('test', FakeBoard(), persistence=persistence)
    conductor._setup_tasks(conf, repo)
    conductor._task_context = lambda task: None
    caplog.set_level('INFO', logger='rax_glance.tasks.conductor')
    STEP_STARTED.clear()
    STEP_RELEASE.clear()
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(consume=conductor._dispatch_job(job)))
    thread.start()
    try:
        assert STEP_STARTED.wait(10)
        conductor.stop()
    finally:
        STEP_RELEASE.set()
        thread.join(10)
    assert result == {'consume': False}
    assert 'suspending job %s after its current step' % job.uuid in caplog.text
    assert repo.get_any(job.details['task_id'])['status'] == 'processing'
    with contextlib.closing(persistence.get_connection()) as conn:
        saved = conn.get_logbook(book.uuid).find(flow_detail.uuid)
    assert saved.state == 'SUSPENDED'
    assert {d.name: d.state for d in saved} == {'slow': 'SUCCESS', 'never': 'PENDING'}


def test_tasks_whose_job_never_reached_the_board_are_failed(conf, repo):
    import datetime

    board = FakeBoard()
    posted = _task(repo)
    board.post('job', details={'task_id': posted['id']})
    orphan = _task(repo)
    young = _task(repo)
    done = _task(repo)
    repo.finish(done['id'], done['worker'], 'success', 48, result={})
    sweeper = conductor_mod.OrphanSweeper(board, repo, conf, grace=60, period=30)
    later = db_api.utcnow() + datetime.timedelta(seconds=61)
    with db_api.get_engine(conf.database.connection).begin() as conn:
        conn.execute(db_api.T.update().where(db_api.T.c.id == young['id']).values(
            created_at=later))
    assert sweeper.sweep(now=later) == [orphan['id']]
    failed = repo.get_any(orphan['id'])
    assert (failed['status'], failed['message']) == ('failure', messages.INTERRUPTED)
    for task in (posted, young):
        assert repo.get_any(task['id'])['status'] == 'pending'
    assert sweeper.sweep(now=later) == []  # once
    assert sweeper.sweep() == []  # nothing is old yet


KEY_A = 'rOe5GJRHkbkCawL8Z_Fw2eTmHhweHCaFDqlkdF3tvK0='
KEY_B = '42jS5e6uj2AZLEgMj0lpWlCXT8KqovzfGn9Cbp3aF0I='


def test_keystone_credentials_travel_in_the_job_only(conf, repo, dispatcher):
    conf.set_override('auth_keys', [KEY_A], group='rax_jobboard')
    task = _task(repo)
    executor_mod.stash_request_auth(task['id'], 'user-token', [{'type': 'object-store'}])
    executor = jobboard.JobboardExecutor(conf, repo, lambda task: None)
    board = FakeBoard()
    executor._board, executor._persistence = board, jobboard.fetch_persistence(conf)
    executor._pid = os.getpid()
    executor.submit(task['id'])
    _name, book, details, job = board.posted[0]
    # Sealed on the board: neither the token nor the catalog in plain text.
    assert set(details['auth']) == {'sealed'}
    assert 'user-token' not in repr(details) and 'object-store' not in repr(details)
    assert jobboard.open_auth(conf, details['auth']) == {
        'token': 'user-token', 'catalog': [{'type': 'object-store'}]}
    assert executor_mod.request_auth(task['id']) == (None, None)  # not kept in glance-api
    with contextlib.closing(executor._persistence.get_connection()) as conn:
        assert 'user-token' not in repr(conn.get_logbook(book.uuid).find(
            details['flow_uuid']).meta)
    seen = {}

    def run(job, task):
        seen['auth'] = executor_mod.request_auth(task.id)
        repo.finish(task.id, dispatcher.worker, 'success', 48, result={})
        return False

    _runs(dispatcher, repo, run)
    assert dispatcher._dispatch_job(job) is True
    assert seen['auth'] == ('user-token', [{'type': 'object-store'}])
    assert executor_mod.request_auth(task['id']) == (None, None)  # dropped after the run


def test_keystone_task_without_auth_keys_fails_and_posts_nothing(conf, repo):
    executor = jobboard.JobboardExecutor(conf, repo, lambda task: None)
    task = _task(repo, worker=executor.worker)
    executor_mod.stash_request_auth(task['id'], 'user-token', [{'type': 'object-store'}])
    board = FakeBoard()
    executor._board, executor._persistence = board, jobboard.fetch_persistence(conf)
    executor._pid = os.getpid()
    assert executor.submit(task['id']) is None
    assert board.posted == []
    done = repo.get_any(task['id'])
    assert (done['status'], done['message']) == ('failure', messages.UNEXPECTED)
    assert executor_mod.request_auth(task['id']) == (None, None)


def test_service_mode_tasks_need_no_auth_keys(conf, repo):
    task = _task(repo)
    board = FakeBoard()
    jobboard.post_task(board, jobboard.fetch_persistence(conf), task, None, conf)
    assert 'auth' not in board.posted[0][2]


def test_sealed_auth_opens_with_any_listed_key_and_never_with_another(conf):
    auth = {'token': 't', 'catalog': []}
    conf.set_override('auth_keys', [KEY_A], group='rax_jobboard')
    sealed = jobboard.seal_auth(conf, auth)
    conf.set_override('auth_keys', [KEY_B, KEY_A], group='rax_jobboard')  # rotation
    assert jobboard.open_auth(conf, sealed) == auth
    conf.set_override('auth_keys', [KEY_B], group='rax_jobboard')
    assert jobboard.open_auth(conf, sealed) == {}
    conf.set_override('auth_keys', [], group='rax_jobboard')
    assert jobboard.open_auth(conf, sealed) == {}
    # A plain-text token (a hostile or old job) is never used.
    assert jobboard.open_auth(conf, {'token': 't', 'catalog': []}) == {}
    assert jobboard.open_auth(conf, None) == {}


def test_conductor_cli_without_a_board_says_so_without_a_traceback(tmp_path):
    conf_file = tmp_path / 'glance-api.conf'
    conf_file.write_text('[database]\nconnection = sqlite:///%s\n[rax_jobboard]\n'
                         'hosts = 127.0.0.1:1\n' % (tmp_path / 'g.sqlite'))
    cli = os.path.join(os.path.dirname(sys.executable), 'rax-glance-conductor')
    result = subprocess.run([cli, '--config-file', str(conf_file)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert ('rax-glance-conductor: error: cannot connect to the redis jobboard at '
            '127.0.0.1:1') in result.stderr
    assert 'Traceback' not in result.stderr
    missing = subprocess.run([cli, '--config-file', str(tmp_path / 'absent.conf')],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and 'absent.conf' in missing.stderr
    assert 'Traceback' not in missing.stderr


# -- TaskFlow's own dispatch, events and listeners ---------------------------------------------
def quick_flow():
    return linear_flow.Flow('quick').add(Quick('quick'))


class Quick(tf_task.Task):
    def execute(self):
        return 'done'


def _persisted_job(repo, persistence, factory, args=()):
    book = models.LogBook('b')
    flow_detail = models.FlowDetail('f', uuid=str(uuid.uuid4()))
    book.add(flow_detail)
    engines.save_factory_details(flow_detail, factory, list(args), {})
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.save_logbook(book)
    job = FakeJob({'task_id': _task(repo)['id'], 'flow_uuid': flow_detail.uuid}, book)
    job.book = book
    return job


@pytest.fixture
def flow_db(tmp_path):
    persistence = tf_backends.fetch({'connection': 'sqlite:///%s' % (tmp_path / 'f.sqlite')})
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.upgrade()
    return persistence


def test_conductor_events_and_engine_listeners_fire(conf, repo, flow_db):
    """The conductor runs jobs with TaskFlow's own dispatch: its notifier events reach
    registered callbacks and the listeners of `_listeners_from_job` see the engine."""
    conductor = conductor_mod.BlockingConductor('test', FakeBoard(), persistence=flow_db)
    conductor._setup_tasks(conf, repo)
    conductor._task_context = lambda task: None
    events, transitions = [], []
    conductor.notifier.register(conductor.notifier.ANY,
                                lambda event, details: events.append(event))
    conductor._listeners_from_job = lambda job, engine: [Recorder(engine, transitions)]
    job = _persisted_job(repo, flow_db, quick_flow)
    # The flow does not record an outcome: the task is settled as failed, then consumed.
    assert conductor._dispatch_job(job) is True
    assert events == ['compilation_start', 'compilation_end', 'preparation_start',
                      'preparation_end', 'validation_start', 'validation_end',
                      'running_start', 'running_end']
    assert 'SUCCESS' in transitions
    assert repo.get_any(job.details['task_id'])['message'] == messages.UNEXPECTED


class Recorder:
    def __init__(self, engine, seen):
        self.engine, self.seen = engine, seen

    def __enter__(self):
        self.engine.notifier.register(
            self.engine.notifier.ANY, lambda state, details: self.seen.append(state))
        return self

    def __exit__(self, *exc):
        return False


def test_an_atom_left_running_is_failed_by_the_dispatch_before_the_run(conf, repo, tmp_path):
    """The conductor's `preparation_end` handler: a flow a dead conductor left in `two`
    reverts (two, then one) instead of running `two` again, and the task fails."""
    backend, flow_detail, journal = _die_in(tmp_path, 'two')
    with contextlib.closing(backend.get_connection()) as conn:
        book = next(iter(conn.get_logbooks()))
    job = FakeJob({'task_id': _task(repo)['id'], 'flow_uuid': flow_detail.uuid}, book)
    conductor = conductor_mod.BlockingConductor('test', FakeBoard(), persistence=backend)
    conductor._setup_tasks(conf, repo)
    conductor._task_context = lambda task: None
    conductor._engine_from_job = lambda job: engines.load_from_detail(
        flow_detail, backend=backend, engine='serial')
    assert conductor._dispatch_job(job) is True
    assert journal.read_text().split('\n')[:-1] == ['do one', 'do two', 'undo two',
                                                    'undo one']
    assert repo.get_any(job.details['task_id'])['status'] == 'failure'


def test_taskflow_private_api_this_bundle_relies_on():
    """Fails loudly when TaskFlow changes what the conductor builds on (the taskflow
    version is pinned in constraints.txt): `ExecutorConductor._dispatch_job(job)` returns
    whether to consume, its notifier emits the events handled here with the details
    used, and a compiled engine's execution graph tags atoms with their `kind`."""
    import inspect

    import taskflow.version
    from taskflow.conductors.backends import impl_executor

    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    with open(os.path.join(root, 'constraints.txt')) as fh:
        pinned = [line.strip().split('==')[1] for line in fh
                  if line.lower().startswith('taskflow==')]
    assert pinned == [taskflow.version.version_string()]
    dispatch = impl_executor.ExecutorConductor._dispatch_job
    assert list(inspect.signature(dispatch).parameters) == ['self', 'job']
    source = inspect.getsource(dispatch)
    assert "'engine': engine" in source and "'job': job" in source
    assert {'preparation_end', 'job_consumed'} <= set(
        impl_executor.ExecutorConductor.EVENTS_EMITTED)
    assert "'persistence': self._persistence" in inspect.getsource(
        impl_executor.ExecutorConductor._try_finish_job)
    engine = engines.load(journal_flow('/nonexistent'), engine='serial')
    engine.compile()
    assert sorted(conductor_mod.atom_names(engine)) == ['one', 'three', 'two']


def test_the_flow_state_backend_shares_one_connection_object_without_patching(conf):
    """One connection object per backend (building one costs more than the SQL), by a
    subclass of TaskFlow's SQL backend: no instance attribute is monkeypatched."""
    from taskflow.persistence.backends import impl_sqlalchemy

    backend = jobboard.fetch_persistence(conf)
    assert isinstance(backend, impl_sqlalchemy.SQLAlchemyBackend)
    assert 'get_connection' not in vars(backend)
    first = backend.get_connection()
    assert backend.get_connection() is first
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(models.LogBook('shared'))
    with contextlib.closing(backend.get_connection()) as conn:
        assert [book.name for book in conn.get_logbooks()] == ['shared']


@pytest.mark.parametrize('kind, cls, most', [
    ('blocking', conductor_mod.BlockingConductor, 1),
    ('nonblocking', conductor_mod.NonBlockingConductor, 3),
])
def test_conductors_come_from_taskflows_entry_points(conf, repo, kind, cls, most):
    conf.set_override('conductor_type', kind, group='rax_jobboard')
    conf.set_override('max_simultaneous_jobs', 3, group='rax_jobboard')
    conductor = conductor_mod.make_conductor(conf, FakeBoard(), None, repo, 'c1')
    assert type(conductor) is cls
    assert conductor._max_simultaneous_jobs == most
    assert conductor._repo is repo and conductor._conf is conf
