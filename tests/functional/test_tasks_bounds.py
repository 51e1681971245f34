"""Issue 10 class 4 over HTTP on a real glance-api: task bodies are bounded (413), a
project's unfinished tasks are limited (429), invalid UTF-8 in the URL, deep JSON and lone
surrogates answer 400 at once, always with a JSON message. This module runs its own stack
with a small per-project limit and one flow worker per process, so accepted imports stay
unfinished while the burst is posted."""

import concurrent.futures
import http.client
import json
import threading
import urllib.parse
import uuid

import pytest

from rax_glance.devstack import demo
from rax_glance.devstack.stack import DevStack
from tests.functional import clients
from tests.functional import conftest
from tests.functional import tasks_helpers as th

LIMIT = 3
BODY_LIMIT = 256 * 1024   # the default
IMPORT = {'type': 'import', 'input': {'import_from': 'nowhere/missing.vhd',
                                      'image_properties': {'name': 'x'}}}


@pytest.fixture(scope='module')
def bounded_stack(tmp_path_factory):
    config = {section: dict(values) for section, values in conftest.TEST_GLANCE_CONFIG.items()}
    config.setdefault('rax_tasks', {}).update(
        {'max_unfinished_tasks_per_project': str(LIMIT), 'workers': '1'})
    dev = DevStack(tmp_path_factory.mktemp('bounds-stack'))
    try:
        info = dev.up(db='sqlite', glance_config=config)
    except Exception:
        dev.down()
        raise
    yield info
    dev.down()


@pytest.fixture
def client(bounded_stack):
    made = []

    def make(project=None):
        glance = clients.GlanceClient(bounded_stack['glance']['endpoint'],
                                      project or clients.new_project(),
                                      clients.CUSTOMER_ADMIN_ROLES, None)
        made.append(glance)
        return glance

    yield make
    for glance in made:
        glance.close()


def _raw(stack_info, glance, method, target, body=None, headers=None, chunks=None):
    """One request on a fresh connection, bytes exactly as given (no client quoting)."""
    url = urllib.parse.urlsplit(stack_info['glance']['endpoint'])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    all_headers = dict(demo.identity_headers(glance.project, glance.user,
                                             clients.CUSTOMER_ADMIN_ROLES))
    all_headers['Content-Type'] = 'application/json'
    all_headers.update(headers or {})
    try:
        if chunks is not None:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for key, value in all_headers.items():
                conn.putheader(key, value)
            conn.putheader('Transfer-Encoding', 'chunked')
            conn.endheaders()
            try:
                for chunk in chunks:
                    conn.send(b'%x\r\n%s\r\n' % (len(chunk), chunk))
                conn.send(b'0\r\n\r\n')
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered and closed before the whole body was sent
        else:
            try:
                conn.request(method, target, body=body, headers=all_headers)
            except (BrokenPipeError, ConnectionResetError):
                pass
        resp = conn.getresponse()
        return resp.status, resp.getheader('Content-Type', ''), resp.read()
    finally:
        conn.close()


def _json_error(status, ctype, data, want):
    assert status == want, (status, data[:300])
    assert ctype.startswith('application/json'), ctype
    body = json.loads(data)['error']  # rax_glance.api.json_errors' one shape
    assert body['message'] and b'Traceback' not in data
    return body


def test_oversized_bodies_are_413_and_nothing_is_stored(client, bounded_stack):
    glance = client()
    pad = 'p' * (32 * 1024 * 1024)
    big = json.dumps({'type': 'import', 'input': {
        'import_from': 'c/o', 'image_properties': {'name': 'x', 'extra': pad}}}).encode()
    body = _json_error(*_raw(bounded_stack, glance, 'POST', '/v2/tasks', body=big), 413)
    assert str(BODY_LIMIT) in body['message']
    # Chunked, no Content-Length: refused while reading.
    piece = b' ' * (64 * 1024)
    _json_error(*_raw(bounded_stack, glance, 'POST', '/v2/tasks',
                      chunks=[piece] * 64), 413)
    assert glance.get('/v2/tasks').json()['tasks'] == []
    # Just under the limit is still a normal request.
    small = dict(IMPORT)
    small['input'] = dict(IMPORT['input'], image_properties={'name': 'x',
                                                             'extra': 'p' * 1000})
    resp = glance.post('/v2/tasks', json=small)
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize('query', ['type=%ff', 'status=%c3%28', '%ff=1', 'marker=%ed%a0%80',
                                   'limit=2&sort_key=%fe'])
def test_invalid_utf8_in_the_task_list_query_is_400(client, bounded_stack, query):
    glance = client()
    _json_error(*_raw(bounded_stack, glance, 'GET', '/v2/tasks?' + query), 400)


def test_json_nested_100000_deep_is_400(client, bounded_stack):
    glance = client()
    for raw in (b'[' * 100000 + b']' * 100000,
                b'{"type": "import", "input": ' + b'[' * 50000 + b']' * 50000 + b'}'):
        body = _json_error(*_raw(bounded_stack, glance, 'POST', '/v2/tasks', body=raw), 400)
        assert 'nested too deeply' in body['message']
    assert glance.get('/v2/tasks').json()['tasks'] == []


@pytest.mark.parametrize('raw', [
    b'{"type": "export", "input": {"image_uuid": "%s", '
    b'"receiving_swift_container": "exports\\ud800"}}' % str(uuid.uuid4()).encode(),
    b'{"type": "export", "input": {"image_uuid": "\\udc00", '
    b'"receiving_swift_container": "exports"}}',
    b'{"type": "import", "input": {"import_from": "c/\\ud800.vhd", '
    b'"image_properties": {"name": "x"}}}',
])
def test_lone_surrogates_are_refused_at_once(client, bounded_stack, raw):
    glance = client()
    body = _json_error(*_raw(bounded_stack, glance, 'POST', '/v2/tasks', body=raw), 400)
    assert 'surrogate' in body['message']
    assert glance.get('/v2/tasks').json()['tasks'] == []


def test_unfinished_tasks_per_project_are_limited(client, bounded_stack, tmp_path):
    glance = client()
    swift = clients.project_swift(bounded_stack, glance.project)
    swift.put_container('exports')
    _, vhd = th.sample_disk(size=16 * th.MIB, seed=5)
    th.upload(swift, 'exports', 'slow.vhd', vhd)
    body = {'type': 'import', 'input': {'import_from': 'exports/slow.vhd',
                                        'image_properties': {'name': 'limited'}}}

    def post(_):
        return glance.post('/v2/tasks', json=body)

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(post, range(40)))
    finished = sum(1 for t in glance.get('/v2/tasks?limit=100').json()['tasks']
                   if t['status'] in th.FINAL)
    accepted = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code != 201]
    for resp in refused:
        assert resp.status_code == 429, resp.text
        assert resp.headers['Content-Type'].startswith('application/json')
        assert 'unfinished' in resp.json()['error']['message']
    # A place frees up only when a task finishes: never more than the limit plus the tasks
    # that had already finished once the burst was answered.
    assert 1 <= len(accepted) <= LIMIT + finished, (len(accepted), finished)
    assert refused
    # Another project is not affected.
    other = client()
    assert other.post('/v2/tasks', json=IMPORT).status_code == 201
    for resp in accepted:
        th.wait_task(glance, resp.json()['id'], timeout=600)
    # Once they finished, the project may post again.
    assert glance.post('/v2/tasks', json=IMPORT).status_code == 201


def test_limit_is_race_safe_on_postgresql(pg_devstack):
    """The per-project count and the insert under PostgreSQL's advisory lock: 40 creates at
    once from 40 connections of the real stack's database accept exactly the limit (READ
    COMMITTED alone would let concurrent transactions all see room)."""
    from rax_glance.tasks.db import api as db_api

    _, info = pg_devstack
    engine = db_api.engines.create_engine(info['db']['url'], max_pool_size=40,
                                          max_overflow=0)
    repo = db_api.TaskRepo(engine)
    owner = clients.new_project()
    barrier = threading.Barrier(40)

    def create(_):
        barrier.wait()
        try:
            repo.create(str(uuid.uuid4()), 'import', owner, 'u', [], {}, 'test-no-worker',
                        3600, max_unfinished=5)
            return 'created'
        except db_api.TooManyTasks:
            return 'refused'

    try:
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            outcome = list(pool.map(create, range(40)))
        assert outcome.count('created') == 5 and outcome.count('refused') == 35
    finally:
        # Finish them so no executor of the stack picks them up later.
        for task in repo.list(owner, limit=100):
            repo.finish(task['id'], 'test-no-worker', 'failure', 1, message='test')
        engine.dispose()
