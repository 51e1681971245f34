"""Every Cloud Images role (and the operator, no role, multi-role users) x every operation.

The expectations below are doc/api.md section 1 written out as HTTP status codes; they are
not derived from the policy code. The whole matrix is computed once per module (one HTTP call
per cell) against the real glance-api; each operation is its own test, and any failure prints
the complete expected-vs-actual matrix.
"""

import uuid

import pytest

from tests.functional import clients

OPERATOR_ROLE = 'rax-glance-operator'

# (X-Roles header, the class whose permissions the user must get: the most permissive role).
PERSONAS = [
    ('identity:user-admin', 'admin'),
    ('admin', 'admin'),
    ('cloudImages:admin', 'admin'),
    ('cloudImages:creator', 'creator'),
    ('cloudImages:observer', 'observer'),
    ('observer', 'observer'),
    (OPERATOR_ROLE, 'operator'),
    ('', 'none'),
    ('member,reader', 'none'),  # Keystone's stock roles grant nothing in Cloud Images
    ('cloudImages:observer,cloudImages:creator', 'creator'),
    ('observer,cloudImages:admin', 'admin'),
    ('cloudImages:creator,member,reader', 'creator'),
]
CLASSES = ('admin', 'creator', 'observer', 'operator', 'none')

RAW = {'disk_format': 'raw', 'container_format': 'bare'}
DATA = b'cloud images rbac matrix\n'
IMPORT_TASK = {'type': 'import', 'input': {'import_from': 'absent/nothing.vhd',
                                           'image_properties': {'name': 'never'}}}


def _img(world, key):
    return '/v2/images/%s' % world[key]


# name -> (expected codes for CLASSES, call(world, client, persona index) -> response).
# "own" images belong to the customer project P (the operator works on them from its own
# project); "shared" is owned by project O and shared with P; "private-other" is O's.
OPERATIONS = [
    ('list images', (200, 200, 200, 200, 403),
     lambda w, c, i: c.get('/v2/images')),
    ('get own image', (200, 200, 200, 200, 404),
     lambda w, c, i: c.get(_img(w, 'own'))),
    ('get image shared with P', (200, 200, 200, 200, 404),
     lambda w, c, i: c.get(_img(w, 'shared'))),
    ('get private image of other project', (404, 404, 404, 200, 404),
     lambda w, c, i: c.get(_img(w, 'private_other'))),
    ('get image schema', (200, 200, 200, 200, 200),
     lambda w, c, i: c.get('/v2/schemas/image')),
    ('get image tasks', (200, 200, 200, 200, 404),
     lambda w, c, i: c.get(_img(w, 'own') + '/tasks')),
    ('create image', (201, 201, 403, 201, 403),
     lambda w, c, i: c.post('/v2/images', json=dict(RAW, name='m-%d' % i))),
    ('create image owned by other project', (403, 403, 403, 201, 403),
     lambda w, c, i: c.post('/v2/images', json=dict(RAW, owner=w['O']))),
    # Customer data enters only through the import task (VHD checks, no Windows disks).
    ('upload data to own queued image', (403, 403, 403, 204, 404),
     lambda w, c, i: c.put(_img(w, 'queued-%d' % i) + '/file', data=DATA,
                           headers={'Content-Type': 'application/octet-stream'})),
    ('PATCH name of own image', (200, 403, 403, 200, 404),
     lambda w, c, i: c.patch(_img(w, 'own'), [{'op': 'replace', 'path': '/name',
                                                'value': 'renamed-%d' % i}])),
    ('add tag', (204, 403, 403, 204, 404),
     lambda w, c, i: c.put(_img(w, 'own') + '/tags/added-%d' % i)),
    ('delete tag', (204, 403, 403, 204, 404),
     lambda w, c, i: c.delete(_img(w, 'own') + '/tags/del-%d' % i)),
    ('delete own image', (204, 403, 403, 204, 404),
     lambda w, c, i: c.delete(_img(w, 'doomed-%d' % i))),
    ('download own image', (200, 403, 403, 200, 404),
     lambda w, c, i: c.get(_img(w, 'own') + '/file')),
    ('download own licensed image (options=1)', (403, 403, 403, 200, 404),
     lambda w, c, i: c.get(_img(w, 'licensed') + '/file')),
    ('download image shared with P', (403, 403, 403, 200, 404),
     lambda w, c, i: c.get(_img(w, 'shared') + '/file')),
    ('list members', (200, 200, 200, 200, 404),
     lambda w, c, i: c.get(_img(w, 'own') + '/members')),
    ('get member', (200, 200, 200, 200, 404),
     lambda w, c, i: c.get(_img(w, 'own') + '/members/' + w['viewer'])),
    ('add member (share)', (200, 200, 403, 200, 404),
     lambda w, c, i: c.post(_img(w, 'own') + '/members',
                            json={'member': 'add-%d-%s' % (i, w['O'])})),
    ('delete member', (204, 403, 403, 204, 404),
     lambda w, c, i: c.delete(_img(w, 'own') + '/members/del-%d-%s' % (i, w['O']))),
    ('accept membership (consumer)', (200, 403, 403, 200, 404),
     lambda w, c, i: c.put(_img(w, 'shared') + '/members/' + w['P'],
                           json={'status': 'accepted'})),
    # Glance checks the visibility rule before modify_image and does not turn that 403 into a
    # 404, so a role-less user of the owning project gets 403 here.
    ('publicize', (403, 403, 403, 200, 403),
     lambda w, c, i: c.patch(_img(w, 'to_publicize'), [{'op': 'replace', 'path': '/visibility',
                                                        'value': 'public'}])),
    ('communitize', (403, 403, 403, 200, 403),
     lambda w, c, i: c.patch(_img(w, 'to_communitize'),
                             [{'op': 'replace', 'path': '/visibility', 'value': 'community'}])),
    ('deactivate', (403, 403, 403, 204, 404),
     lambda w, c, i: c.post(_img(w, 'to_deactivate') + '/actions/deactivate')),
    ('reactivate', (403, 403, 403, 204, 404),
     lambda w, c, i: c.post(_img(w, 'to_reactivate') + '/actions/reactivate')),
    ('list image locations', (403, 403, 403, 200, 404),
     lambda w, c, i: c.get(_img(w, 'own') + '/locations')),
    # Cloud Images tasks (the bundle's filter); the import names an object that does not
    # exist, so the tasks created here fail quietly and make no image.
    ('list tasks', (200, 200, 200, 200, 403),
     lambda w, c, i: c.get('/v2/tasks')),
    ('get task of own project', (200, 200, 200, 404, 403),  # tasks are project-scoped
     lambda w, c, i: c.get('/v2/tasks/%s' % w['task'])),
    ('create import task', (201, 403, 403, 201, 403),
     lambda w, c, i: c.post('/v2/tasks', json=IMPORT_TASK)),
    ('list metadef namespaces', (200, 200, 200, 200, 404),
     lambda w, c, i: c.get('/v2/metadefs/namespaces')),
    ('create metadef namespace', (403, 403, 403, 201, 404),
     lambda w, c, i: c.post('/v2/metadefs/namespaces',
                            json={'namespace': 'rbac-%d-%s' % (i, w['P'][:8])})),
    ('list cache', (403, 403, 403, 200, 403),
     lambda w, c, i: c.get('/v2/cache')),
    # GET /v2/info/stores/detail (stores_info_detail) is left to tests/unit/test_policies.py:
    # Glance 33 answers 500 to the operator there when a store type is not one of its
    # built-ins (the dev stack's swiftdlo store).
    ('list stores', (200, 200, 200, 200, 200),
     lambda w, c, i: c.get('/v2/info/stores')),
]


def _expected(op_codes, klass):
    return op_codes[CLASSES.index(klass)]


def _build_world(endpoint):
    """Images, tags and members every cell needs, made once (destructive cells get their own)."""
    made = []

    def client(project, roles):
        c = clients.GlanceClient(endpoint, project, roles)
        made.append(c)
        return c

    client.close_all = lambda: [c.close() for c in made]

    world = {'P': clients.new_project(), 'O': clients.new_project(),
             'OPS': 'ops-%s' % uuid.uuid4().hex[:12], 'viewer': clients.new_project()}
    p_admin = client(world['P'], 'cloudImages:admin')
    o_admin = client(world['O'], 'cloudImages:admin')
    operator = client(world['OPS'], OPERATOR_ROLE)

    own = p_admin.create_image(name='own')
    p_admin.upload_as_operator(own['id'], DATA)
    world['own'] = own['id']
    for i in range(len(PERSONAS)):
        assert p_admin.put('/v2/images/%s/tags/del-%d' % (own['id'], i)).status_code == 204
        resp = p_admin.post('/v2/images/%s/members' % own['id'],
                            json={'member': 'del-%d-%s' % (i, world['O'])})
        assert resp.status_code == 200, resp.text
        world['doomed-%d' % i] = p_admin.create_image(name='doomed')['id']
        world['queued-%d' % i] = p_admin.create_image(name='queued')['id']
    resp = p_admin.post('/v2/images/%s/members' % own['id'], json={'member': world['viewer']})
    assert resp.status_code == 200, resp.text

    licensed = operator.create_image(owner=world['P'], **{'com.rackspace__1__options': '1'})
    operator.upload(licensed['id'], DATA)
    world['licensed'] = licensed['id']

    shared = o_admin.create_image(name='shared', visibility='shared')
    o_admin.upload_as_operator(shared['id'], DATA)
    resp = o_admin.post('/v2/images/%s/members' % shared['id'], json={'member': world['P']})
    assert resp.status_code == 200, resp.text
    world['shared'] = shared['id']
    world['private_other'] = o_admin.create_image(name='private', visibility='private')['id']

    for key in ('to_publicize', 'to_communitize'):
        world[key] = p_admin.create_image(name=key)['id']
    for key in ('to_deactivate', 'to_reactivate'):
        image = p_admin.create_image(name=key)
        p_admin.upload_as_operator(image['id'], DATA)
        world[key] = image['id']
    resp = p_admin.post('/v2/tasks', json=IMPORT_TASK)
    assert resp.status_code == 201, resp.text
    world['task'] = resp.json()['id']
    resp = operator.post('/v2/images/%s/actions/deactivate' % world['to_reactivate'])
    assert resp.status_code == 204, resp.text
    return world, client


@pytest.fixture(scope='module')
def matrix(stack_info):
    """{operation: [actual status per persona]}, one HTTP call per cell."""
    endpoint = stack_info['glance']['endpoint']
    world, client = _build_world(endpoint)
    operator = client(world['OPS'], OPERATOR_ROLE)
    personas = []
    for roles, _ in PERSONAS:
        project = world['OPS'] if roles == OPERATOR_ROLE else world['P']
        personas.append(client(project, roles))
    actual = {}
    try:
        for name, _, call in OPERATIONS:
            actual[name] = [call(world, personas[i], i).status_code
                            for i in range(len(PERSONAS))]
        yield actual
    finally:
        # Public and community images show in every project's lists: do not leave them to
        # the other tests sharing this stack.
        for key in ('to_publicize', 'to_communitize'):
            operator.delete('/v2/images/%s' % world[key])
        client.close_all()


def _render(actual):
    width = max(len(name) for name, _, _ in OPERATIONS)
    heads = ['%d' % i for i in range(len(PERSONAS))]
    lines = ['personas: ' + '; '.join('%d=%r(%s)' % (i, roles, klass)
                                      for i, (roles, klass) in enumerate(PERSONAS)),
             '%-*s  %s' % (width, 'operation  (expected/actual, * = mismatch)',
                           ' '.join('%-8s' % h for h in heads))]
    for name, codes, _ in OPERATIONS:
        cells = []
        for i, (_, klass) in enumerate(PERSONAS):
            want, got = _expected(codes, klass), actual[name][i]
            cells.append('%-8s' % ('%d/%d%s' % (want, got, '' if want == got else '*')))
        lines.append('%-*s  %s' % (width, name, ' '.join(cells)))
    return '\n'.join(lines)


@pytest.mark.parametrize('operation', [name for name, _, _ in OPERATIONS])
def test_operation_matches_cloud_images_matrix(matrix, operation):
    codes = dict((name, codes) for name, codes, _ in OPERATIONS)[operation]
    expected = [_expected(codes, klass) for _, klass in PERSONAS]
    assert matrix[operation] == expected, (
        '%r differs from doc/api.md section 1; whole matrix:\n%s'
        % (operation, _render(matrix)))
