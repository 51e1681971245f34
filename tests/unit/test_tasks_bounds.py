"""Issue 10 class 4, bounded inputs of the tasks API (unit level; the functional twins are in
tests/functional/test_tasks_bounds.py): body size (413, never read whole), per-project
limit of unfinished tasks (429, race-safe in the database), invalid UTF-8 in the URL, deep
JSON and lone surrogates (400)."""

import datetime
import io
import json
import threading
import uuid

import pytest
import sqlalchemy as sa
import webob
from oslo_config import cfg
from oslo_db.sqlalchemy import engines

from rax_glance.tasks import filter as tasks_filter
from rax_glance.tasks import options
from rax_glance.tasks import validation
from rax_glance.tasks.db import api as db_api
from rax_glance.tasks.db import migration
from tests.unit.test_tasks_api import EXPORT
from tests.unit.test_tasks_api import IMPORT
from tests.unit.test_tasks_api import FakeContext
from tests.unit.test_tasks_api import FakeExecutor
from tests.unit.test_tasks_api import downstream

LIMIT = 4096


class CountingInput(io.BytesIO):
    """A wsgi.input that counts what the application read."""

    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


@pytest.fixture
def bounded(tmp_path, monkeypatch):
    url = 'sqlite:///%s' % (tmp_path / 't.sqlite')
    migration.db_sync(url)
    conf = cfg.ConfigOpts()
    options.register(conf)
    conf([], project='test')
    for name, value in (('max_request_body_bytes', LIMIT),
                        ('max_unfinished_tasks_per_project', 3)):
        try:
            conf.set_override(name, value, group='rax_tasks')
        except cfg.NoSuchOptError:  # lets this file run against the code before the fix
            pass
    repo = db_api.TaskRepo(db_api.get_engine(url))
    executor = FakeExecutor(conf, repo)
    monkeypatch.setattr(tasks_filter.policies, 'authorize',
                        lambda ctx, rule, target, enforcer=None: True)
    monkeypatch.setattr(tasks_filter.TasksFilter, '_may_create_image',
                        staticmethod(lambda ctx: True))
    app = tasks_filter.TasksFilter(downstream, conf=conf, repo=repo, executor=executor)

    def call(method, path, raw=b'', project='p1', chunked=False, headers=None):
        req = webob.Request.blank(path, method=method)
        stream = CountingInput(raw)
        req.environ['wsgi.input'] = stream
        if chunked:
            req.environ.pop('CONTENT_LENGTH', None)
            req.environ['HTTP_TRANSFER_ENCODING'] = 'chunked'
        else:
            req.environ['CONTENT_LENGTH'] = str(len(raw))
        req.environ.update(headers or {})
        req.environ['webob.adhoc_attrs'] = {'context': FakeContext(project)}
        resp = req.get_response(app)
        resp.bytes_read = stream.bytes_read
        return resp

    call.repo = repo
    call.executor = executor
    call.app_conf = conf
    return call


def _padded(size):
    """An import body of exactly `size` bytes (an extra image property as padding)."""
    body = {'type': 'import', 'input': {'import_from': 'c/o', 'image_properties': {
        'name': 'x', 'pad': ''}}}
    base = len(json.dumps(body).encode())
    body['input']['image_properties']['pad'] = 'p' * (size - base)
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


@pytest.mark.parametrize('chunked', [False, True])
def test_body_at_the_limit_is_accepted(bounded, chunked):
    resp = bounded('POST', '/v2/tasks', _padded(LIMIT), chunked=chunked)
    assert resp.status_int == 201, resp.text


@pytest.mark.parametrize('chunked', [False, True])
@pytest.mark.parametrize('size', [LIMIT + 1, 32 * 1024 * 1024])
def test_larger_body_is_413_json_unread_and_unstored(bounded, chunked, size):
    resp = bounded('POST', '/v2/tasks', _padded(size), chunked=chunked)
    assert resp.status_int == 413, resp.text
    assert resp.content_type == 'application/json'
    assert str(LIMIT) in resp.json['message'] and resp.json['code'] == 413
    # Never more than the limit + one read piece; with Content-Length not even that.
    assert resp.bytes_read <= (LIMIT + 64 * 1024 if chunked else 0)
    assert bounded.repo.list('p1') == [] and bounded.executor.submitted == []


def test_declared_length_is_honoured_not_the_stream(bounded):
    """A client that declares fewer bytes than it sends: only the declared bytes count."""
    raw = json.dumps(IMPORT).encode()
    resp = bounded('POST', '/v2/tasks', raw + b' ' * (10 * LIMIT),
                   headers={'CONTENT_LENGTH': str(len(raw))})
    assert resp.status_int == 201, resp.text
    assert resp.bytes_read == len(raw)


def test_unfinished_tasks_per_project_are_limited_429(bounded):
    made = [bounded('POST', '/v2/tasks', json.dumps(IMPORT).encode()) for _ in range(3)]
    assert [r.status_int for r in made] == [201] * 3
    resp = bounded('POST', '/v2/tasks', json.dumps(EXPORT).encode())
    assert resp.status_int == 429, resp.text
    assert resp.content_type == 'application/json'
    assert '3 unfinished' in resp.json['message'] and resp.headers['Retry-After']
    assert len(bounded.repo.list('p1')) == 3
    # Another project is not affected; a finished task frees a place.
    assert bounded('POST', '/v2/tasks', json.dumps(IMPORT).encode(),
                   project='p2').status_int == 201
    first = made[0].json['id']
    bounded.repo.finish(first, 'test-worker', 'failure', 48, message='x')
    assert bounded('POST', '/v2/tasks', json.dumps(IMPORT).encode()).status_int == 201
    assert bounded('POST', '/v2/tasks', json.dumps(IMPORT).encode()).status_int == 429


def test_limit_is_race_safe_on_one_database_from_many_threads(tmp_path):
    """40 creates at once from separate engines (as separate glance-api processes would):
    exactly the limit is accepted."""
    url = 'sqlite:///%s' % (tmp_path / 'race.sqlite')
    migration.db_sync(url)
    barrier = threading.Barrier(40)
    outcome = []

    def post():
        engine = engines.create_engine(url, sqlite_fk=False)

        @sa.event.listens_for(engine, 'connect')
        def _busy(dbapi_conn, _record):
            dbapi_conn.execute('PRAGMA busy_timeout = 30000')

        repo = db_api.TaskRepo(engine)
        barrier.wait()
        try:
            repo.create(str(uuid.uuid4()), 'import', 'p1', 'u', [], {}, 'w', 60,
                        max_unfinished=5)
            outcome.append('created')
        except db_api.TooManyTasks:
            outcome.append('refused')
        finally:
            engine.dispose()

    threads = [threading.Thread(target=post) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcome.count('created') == 5 and outcome.count('refused') == 35


def test_zero_means_no_limit(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 'z.sqlite')
    migration.db_sync(url)
    repo = db_api.TaskRepo(db_api.get_engine(url))
    for _ in range(30):
        repo.create(str(uuid.uuid4()), 'import', 'p1', 'u', [], {}, 'w', 60,
                    max_unfinished=0)
    assert len(repo.list('p1', limit=100)) == 30


@pytest.mark.parametrize('query', ['type=%ff', 'status=%c3%28', '%ff=1', 'marker=%ed%a0%80',
                                   'type=\xff', 'limit=1&sort_key=\xc3'])
def test_invalid_utf8_in_the_query_is_400(bounded, query):
    resp = bounded('GET', '/v2/tasks', headers={'QUERY_STRING': query})
    assert resp.status_int == 400, resp.text
    assert resp.content_type == 'application/json' and resp.json['message']


@pytest.mark.parametrize('path', ['/v2/tasks/\xff\xfe', '/v2/tasks/%ff'])
def test_invalid_utf8_in_the_task_path_is_a_json_4xx(bounded, path):
    resp = bounded('GET', '/v2/tasks/x', headers={'PATH_INFO': path})
    assert resp.status_int in (400, 404), resp.text
    assert resp.content_type == 'application/json'


@pytest.mark.parametrize('raw', [
    b'[' * 100000 + b']' * 100000,
    b'{"type": "import", "input": ' + b'{"a":' * 3000 + b'1' + b'}' * 3000 + b'}',
    (b'{"type": "import", "input": {"import_from": "c/o", "image_properties": {"name": "x", '
     b'"deep": ' + b'[' * 40 + b']' * 40 + b'}}}'),
])
def test_deep_json_is_400(bounded, raw):
    if len(raw) > LIMIT:
        # The body limit answers first; the parser must cope on its own too.
        with pytest.raises(validation.BadRequest, match='nested too deeply'):
            validation.parse_json(raw)
        return
    resp = bounded('POST', '/v2/tasks', raw)
    assert resp.status_int == 400, resp.text
    assert 'nested too deeply' in resp.json['message']


@pytest.mark.parametrize('raw', [
    b'{"type": "export", "input": {"image_uuid": "%s", '
    b'"receiving_swift_container": "ex\\ud800ports"}}' % str(uuid.uuid4()).encode(),
    b'{"type": "export", "input": {"image_uuid": "\\udfff", '
    b'"receiving_swift_container": "exports"}}',
    b'{"type": "import", "input": {"import_from": "c/\\ud83d", '
    b'"image_properties": {"name": "x"}}}',
    b'{"type": "import", "input": {"import_from": "c/o", '
    b'"image_properties": {"name": "x", "\\ud800": "y"}}}',
    b'{"type": "import", "input": {"import_from": "c/o", "image_properties": {"name": "\xff"}}}',
])
def test_lone_surrogates_and_invalid_utf8_bodies_are_400(bounded, raw):
    resp = bounded('POST', '/v2/tasks', raw)
    assert resp.status_int == 400, resp.text
    assert resp.json['message'] and bounded.repo.list('p1') == []


def test_valid_surrogate_pairs_and_unicode_still_work(bounded):
    raw = (b'{"type": "import", "input": {"import_from": "c/\\ud83d\\ude00.vhd", '
           b'"image_properties": {"name": "caf\\u00e9 \xe2\x9c\x93"}}}')
    resp = bounded('POST', '/v2/tasks', raw)
    assert resp.status_int == 201, resp.text
    assert resp.json['input']['import_from'] == 'c/\U0001F600.vhd'


@pytest.mark.parametrize('value', [b'NaN', b'Infinity', b'-Infinity', b'1e999', b'-1e400'])
def test_non_json_numbers_are_400_not_stored(bounded, value):
    """json.loads takes them, but a stored NaN would make GET /v2/tasks/{id} invalid JSON."""
    raw = (b'{"type": "import", "input": {"import_from": "c/o", '
           b'"image_properties": {"name": "x", "n": %s}}}' % value)
    resp = bounded('POST', '/v2/tasks', raw)
    assert resp.status_int == 400, resp.text
    assert resp.json['message'] and bounded.repo.list('p1') == []


def test_ordinary_numbers_still_work(bounded):
    raw = (b'{"type": "import", "input": {"import_from": "c/o", '
           b'"image_properties": {"name": "x", "n": 1.5e3, "m": -2}}}')
    assert bounded('POST', '/v2/tasks', raw).status_int == 201


def test_tasks_held_per_project_are_limited_finished_ones_too(tmp_path, monkeypatch):
    """Tasks that fail at once never count as unfinished; the records they leave (each up
    to the body limit, kept until they expire) are bounded by max_tasks_per_project."""
    url = 'sqlite:///%s' % (tmp_path / 'v.sqlite')
    migration.db_sync(url)
    repo = db_api.TaskRepo(db_api.get_engine(url))

    def make(owner='p1'):
        return repo.create(str(uuid.uuid4()), 'import', owner, 'u', [], {}, 'w', 60,
                           max_unfinished=2, max_visible=3)

    for _ in range(3):
        task = make()
        repo.finish(task['id'], 'w', 'failure', 48, message='x')
    with pytest.raises(db_api.TooManyTasks) as exc:
        make()
    assert exc.value.which == 'visible'
    assert make('p2')['owner'] == 'p2'
    # Once they expire, there is room again.
    future = db_api.utcnow() + datetime.timedelta(hours=49)
    monkeypatch.setattr(db_api, 'utcnow', lambda: future)
    make()


def test_unfinished_limit_is_named_when_both_apply(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 'w.sqlite')
    migration.db_sync(url)
    repo = db_api.TaskRepo(db_api.get_engine(url))
    for _ in range(2):
        repo.create(str(uuid.uuid4()), 'import', 'p1', 'u', [], {}, 'w', 60,
                    max_unfinished=2, max_visible=10)
    with pytest.raises(db_api.TooManyTasks) as exc:
        repo.create(str(uuid.uuid4()), 'import', 'p1', 'u', [], {}, 'w', 60,
                    max_unfinished=2, max_visible=10)
    assert exc.value.which == 'unfinished'


def test_held_tasks_limit_answers_429_json(bounded):
    bounded.app_conf.set_override('max_tasks_per_project', 4, group='rax_tasks')
    for _ in range(4):
        resp = bounded('POST', '/v2/tasks', json.dumps(IMPORT).encode())
        assert resp.status_int == 201, resp.text
        bounded.repo.finish(resp.json['id'], 'test-worker', 'failure', 48, message='x')
    resp = bounded('POST', '/v2/tasks', json.dumps(IMPORT).encode())
    assert resp.status_int == 429 and resp.content_type == 'application/json'
    assert 'holds 4 tasks' in resp.json['message'] and resp.headers['Retry-After']
