"""The tasks API over HTTP on the real glance-api (paste filter after `context`)."""

import uuid

from tests.functional import clients

IMPORT = {'type': 'import', 'input': {'import_from': 'nowhere/missing.vhd',
                                      'image_properties': {'name': 'x'}}}


def test_schemas_are_served(glance_factory):
    glance = glance_factory()
    task = glance.get('/v2/schemas/task')
    tasks = glance.get('/v2/schemas/tasks')
    assert task.status_code == 200 and task.json()['name'] == 'task'
    assert tasks.status_code == 200 and tasks.json()['name'] == 'tasks'
    assert set(task.json()['properties']['type']['enum']) == {'import', 'export'}
    # Glance's own schemas still come from Glance.
    assert glance.get('/v2/schemas/image').json()['name'] == 'image'


def test_task_lifecycle_scoping_and_405(glance_factory):
    glance = glance_factory()
    resp = glance.post('/v2/tasks', json=IMPORT)
    assert resp.status_code == 201, resp.text
    task = resp.json()
    assert task['owner'] == glance.project and task['status'] == 'pending'
    assert task['created_at'] and task['updated_at']
    assert glance.get(task['self']).json()['input'] == IMPORT['input']
    other = glance_factory()
    assert other.get(task['self']).status_code == 404
    assert task['id'] not in [t['id'] for t in other.get('/v2/tasks').json()['tasks']]
    assert glance.delete(task['self']).status_code == 405
    listed = glance.get('/v2/tasks?type=import').json()['tasks']
    assert [t['id'] for t in listed] == [task['id']]
    assert 'input' not in listed[0] and 'result' not in listed[0]
    assert glance.get('/v2/tasks?type=export').json()['tasks'] == []


def test_malformed_requests_are_400_json(glance_factory):
    glance = glance_factory()
    for body in ({'type': 'import'}, {'type': 'copy', 'input': {}},
                 {'type': 'export', 'input': {'image_uuid': 3,
                                              'receiving_swift_container': 'c'}}):
        resp = glance.post('/v2/tasks', json=body)
        assert resp.status_code == 400, body
        assert resp.headers['Content-Type'].startswith('application/json')
        assert resp.json()['error']['message']  # rax_glance.api.json_errors' shape
    resp = glance.post('/v2/tasks', data=b'{not json', headers={'Content-Type':
                                                                'application/json'})
    assert resp.status_code == 400
    assert glance.get('/v2/tasks').json()['tasks'] == []
    assert glance.get('/v2/tasks?limit=x').status_code == 400
    assert glance.get('/v2/tasks?marker=%s' % uuid.uuid4()).status_code == 400


def test_task_rbac(glance_factory):
    owner = clients.new_project()
    admin = glance_factory(owner)
    task = admin.post('/v2/tasks', json=IMPORT).json()
    for roles in ('cloudImages:observer,reader', 'observer,reader',
                  'cloudImages:creator,member,reader'):
        reader = glance_factory(owner, roles=roles)
        assert reader.post('/v2/tasks', json=IMPORT).status_code == 403, roles
        assert reader.get('/v2/tasks').status_code == 200, roles
        assert reader.get(task['self']).status_code == 200, roles
    for roles in ('identity:user-admin,member,reader', 'admin,member,reader'):
        assert glance_factory(owner, roles=roles).post(
            '/v2/tasks', json=IMPORT).status_code == 201, roles
    assert len(admin.get('/v2/tasks').json()['tasks']) == 3


def test_paging_and_sorting_over_http(glance_factory):
    glance = glance_factory()
    made = [glance.post('/v2/tasks', json=IMPORT).json()['id'] for _ in range(3)]
    seen, url = [], '/v2/tasks?limit=2&sort_key=created_at&sort_dir=asc'
    while url:
        page = glance.get(url)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body['tasks']) <= 2 and body['schema'] == '/v2/schemas/tasks'
        seen += [t['id'] for t in body['tasks']]
        url = body.get('next')
    assert seen == made
    newest_first = [t['id'] for t in glance.get('/v2/tasks').json()['tasks']]
    assert newest_first == list(reversed(made))
