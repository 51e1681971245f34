"""The tasks filter as WSGI: routing, validation (400), policy (403), scoping (404), 405,
schemas and paging; the database is a real sqlite file, the executor and policy are fakes."""

import json
import uuid

import pytest
import webob
from oslo_config import cfg

from rax_glance.tasks import executor as executor_mod
from rax_glance.tasks import filter as tasks_filter
from rax_glance.tasks import options
from rax_glance.tasks import schemas
from rax_glance.tasks.db import api as db_api
from rax_glance.tasks.db import migration


class FakeExecutor(executor_mod.TaskExecutor):
    def __init__(self, conf, repo):
        super().__init__(conf, repo, None)
        self.submitted = []

    @property
    def worker(self):
        return 'test-worker'

    def start(self):
        pass

    def submit(self, task_id):
        self.submitted.append(task_id)

    def stop(self, wait=True):
        pass


class FakeContext:
    def __init__(self, project, roles=('admin',), user='u1'):
        self.project_id = project
        self.user_id = user
        self.roles = list(roles)


def downstream(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'glance']


@pytest.fixture
def api(tmp_path, monkeypatch):
    url = 'sqlite:///%s' % (tmp_path / 't.sqlite')
    migration.db_sync(url)
    conf = cfg.ConfigOpts()
    options.register(conf)
    conf([], project='test')
    repo = db_api.TaskRepo(db_api.get_engine(url))
    executor = FakeExecutor(conf, repo)
    # Customer-admins may do all three; observers only read.
    rules = {'rax_glance:add_task': {'admin'},
             'rax_glance:get_task': {'admin', 'observer'},
             'rax_glance:get_tasks': {'admin', 'observer'}}
    monkeypatch.setattr(tasks_filter.policies, 'authorize',
                        lambda ctx, rule, target, enforcer=None:
                        bool(rules[rule] & set(ctx.roles)))
    monkeypatch.setattr(tasks_filter.TasksFilter, '_may_create_image',
                        staticmethod(lambda ctx: True))
    app = tasks_filter.TasksFilter(downstream, conf=conf, repo=repo, executor=executor)

    def call(method, path, body=None, project='p1', roles=('admin',), raw=None):
        req = webob.Request.blank(path, method=method)
        if raw is not None:
            req.body = raw
        elif body is not None:
            req.body = json.dumps(body).encode()
        req.environ['webob.adhoc_attrs'] = {'context': FakeContext(project, roles)}
        return req.get_response(app)

    call.executor = executor
    call.repo = repo
    return call


IMPORT = {'type': 'import', 'input': {'import_from': 'exports/a.vhd',
                                      'import_from_format': 'vhd',
                                      'image_properties': {'name': 'An image'}}}
EXPORT = {'type': 'export', 'input': {'image_uuid': str(uuid.uuid4()),
                                      'receiving_swift_container': 'exports'}}


def test_other_paths_pass_through(api):
    for path in ('/v2/images', '/v2/schemas/image', '/versions', '/v2/taskss'):
        resp = api('GET', path)
        assert resp.body == b'glance', path


@pytest.mark.parametrize('body', [IMPORT, EXPORT])
def test_create_answers_201_pending_and_submits(api, body):
    resp = api('POST', '/v2/tasks', body)
    assert resp.status_int == 201, resp.text
    task = resp.json
    assert task['status'] == 'pending' and task['message'] == ''
    assert task['input'] == body['input'] and task['owner'] == 'p1'
    assert task['created_at'] and task['updated_at'] and 'expires_at' not in task
    assert task['self'] == '/v2/tasks/%s' % task['id']
    assert task['schema'] == '/v2/schemas/task'
    assert resp.headers['Location'].endswith(task['self'])
    assert api.executor.submitted == [task['id']]


def test_extra_image_properties_are_a_task_not_a_400(api):
    body = {'type': 'import', 'input': {'import_from': 'c/o', 'image_properties': {
        'name': 'x', 'os_type': 'windows'}}}
    assert api('POST', '/v2/tasks', body).status_int == 201


@pytest.mark.parametrize('task_input', [
    {'import_from': 'c/o', 'image_properties': {}},
    {'import_from': 'c/o'},
    {'import_from': 'c/o', 'import_from_format': 'vhd', 'image_properties': {}},
])
def test_empty_or_absent_image_properties_are_accepted(api, task_input):
    resp = api('POST', '/v2/tasks', {'type': 'import', 'input': task_input})
    assert resp.status_int == 201, resp.text
    assert resp.json['input'] == task_input
    assert api.executor.submitted == [resp.json['id']]


@pytest.mark.parametrize('raw', [
    b'', b'not json', b'[]', b'"import"',
    json.dumps({'type': 'import'}).encode(),
    json.dumps({'type': 'bogus', 'input': {}}).encode(),
    json.dumps({'type': 'export', 'input': []}).encode(),
    json.dumps({'type': 'import', 'input': IMPORT['input'], 'extra': 1}).encode(),
    json.dumps({'type': 'import', 'input': {'image_properties': {'name': 'x'}}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 7,
                                            'image_properties': {'name': 'x'}}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 'c/o',
                                            'image_properties': 'x'}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 'c/o',
                                            'image_properties': None}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 'c/o',
                                            'image_properties': []}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 'c/o',
                                            'image_properties': {'name': None}}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 'c/o',
                                            'image_properties': {'name': 'n' * 256}}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 'c/o',
                                            'image_properties': {'name': 5}}}).encode(),
    json.dumps({'type': 'import', 'input': {'import_from': 'c/o', 'import_from_format': 'qcow2',
                                            'image_properties': {'name': 'x'}}}).encode(),
    json.dumps({'type': 'import', 'input': dict(IMPORT['input'], foo=1)}).encode(),
    json.dumps({'type': 'export', 'input': {'image_uuid': 'x'}}).encode(),
    json.dumps({'type': 'export', 'input': {'image_uuid': '',
                                            'receiving_swift_container': 'c'}}).encode(),
    json.dumps({'type': 'export', 'input': {'image_uuid': 'x',
                                            'receiving_swift_container': None}}).encode(),
])
def test_malformed_requests_answer_400_and_create_nothing(api, raw):
    resp = api('POST', '/v2/tasks', raw=raw)
    assert resp.status_int == 400, resp.text
    assert resp.json['message'] and 'Traceback' not in resp.text
    assert api.executor.submitted == []
    assert api.repo.list('p1') == []


def test_policy_is_enforced_in_the_request(api):
    assert api('POST', '/v2/tasks', IMPORT, roles=('observer',)).status_int == 403
    assert api.repo.list('p1') == []
    task = api('POST', '/v2/tasks', IMPORT).json
    assert api('GET', '/v2/tasks', roles=('observer',)).status_int == 200
    assert api('GET', task['self'], roles=('observer',)).status_int == 200
    assert api('GET', '/v2/tasks', roles=('nobody',)).status_int == 403
    assert api('GET', task['self'], roles=('nobody',)).status_int == 403


def test_other_projects_task_is_404_and_not_listed(api):
    task = api('POST', '/v2/tasks', IMPORT).json
    assert api('GET', task['self'], project='p2').status_int == 404
    assert api('GET', '/v2/tasks', project='p2').json['tasks'] == []
    assert api('GET', '/v2/tasks/%s' % uuid.uuid4()).status_int == 404


def test_tasks_cannot_be_deleted_or_changed(api):
    task = api('POST', '/v2/tasks', IMPORT).json
    for method in ('DELETE', 'PUT', 'PATCH', 'POST'):
        resp = api(method, task['self'])
        assert resp.status_int == 405 and resp.headers['Allow'] == 'GET', method
    assert api('DELETE', '/v2/tasks').status_int == 405
    assert api('GET', task['self']).json['id'] == task['id']


def test_get_one_has_input_and_result_list_entries_do_not(api):
    task = api('POST', '/v2/tasks', IMPORT).json
    api.repo.claim(task['id'], 'test-worker', 60)
    api.repo.finish(task['id'], 'test-worker', 'success', 48, result={'image_id': 'i'})
    one = api('GET', task['self']).json
    assert one['result'] == {'image_id': 'i'} and one['input'] == IMPORT['input']
    assert one['status'] == 'success' and one['message'] == '' and one['expires_at']
    entry = api('GET', '/v2/tasks').json['tasks'][0]
    assert 'input' not in entry and 'result' not in entry
    assert entry['expires_at'] == one['expires_at']


def test_list_filters_and_bad_parameters(api):
    imp = api('POST', '/v2/tasks', IMPORT).json
    exp = api('POST', '/v2/tasks', EXPORT).json
    ids = lambda q: [t['id'] for t in api('GET', '/v2/tasks' + q).json['tasks']]  # noqa: E731
    assert ids('?type=import') == [imp['id']]
    assert ids('?type=export&status=pending') == [exp['id']]
    assert ids('?status=success') == []
    assert ids('?sort_dir=asc') == [imp['id'], exp['id']]
    for query in ('?type=snapshot', '?status=done', '?sort_key=owner', '?sort_dir=up',
                  '?limit=x', '?limit=-1', '?marker=%s' % uuid.uuid4(), '?colour=red',
                  '?type=import&type=export'):
        resp = api('GET', '/v2/tasks' + query)
        assert resp.status_int == 400, query


def test_paging_follows_next_links(api):
    made = {api('POST', '/v2/tasks', IMPORT).json['id'] for _ in range(5)}
    seen, url = [], '/v2/tasks?limit=2&sort_dir=asc'
    while url:
        page = api('GET', url).json
        assert len(page['tasks']) <= 2
        seen += [t['id'] for t in page['tasks']]
        url = page.get('next')
    assert len(seen) == 5 and set(seen) == made


def test_schemas_describe_the_views(api):
    task_schema = api('GET', '/v2/schemas/task').json
    tasks_schema = api('GET', '/v2/schemas/tasks').json
    assert task_schema == schemas.task_schema()
    assert api('POST', '/v2/schemas/task').status_int == 405
    task = api('POST', '/v2/tasks', IMPORT).json
    assert set(task) <= set(task_schema['properties'])
    # python-glanceclient validates its own bodies against this schema: no `required`.
    assert 'required' not in task_schema
    assert 'required' not in tasks_schema['properties']['tasks']['items']
    entry_props = tasks_schema['properties']['tasks']['items']['properties']
    entry = api('GET', '/v2/tasks').json['tasks'][0]
    assert set(entry) <= set(entry_props)
    assert 'input' not in entry_props and 'result' not in entry_props
