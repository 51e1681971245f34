"""Cross-project isolation: a customer's `admin`, `identity:user-admin` and `cloudImages:admin`
are customer roles, not the cloud operator. None of them may list, get, modify, delete, share,
tag or download another project's private images (doc/api.md section 1, security trap)."""

import pytest

from tests.functional import clients

ATTACKERS = ('admin', 'identity:user-admin', 'cloudImages:admin',
             'admin,identity:user-admin,cloudImages:admin,member,reader')
DATA = b'victim data\n'


@pytest.fixture(scope='module')
def victim(stack_info):
    endpoint = stack_info['glance']['endpoint']
    owner = clients.GlanceClient(endpoint, clients.new_project(), 'cloudImages:admin')
    images = {}
    for visibility in ('private', 'shared'):
        image = owner.create_image(name='victim-' + visibility, visibility=visibility,
                                   tags=['keep'])
        owner.upload_as_operator(image['id'], DATA)
        images[visibility] = image['id']
    images['queued'] = owner.create_image(name='victim-queued', visibility='private')['id']
    yield endpoint, owner, images
    owner.close()


def _probes(owner_project, attacker_project, image_id):
    base = '/v2/images/%s' % image_id
    json_patch = [{'op': 'replace', 'path': '/name', 'value': 'pwned'}]
    return [
        ('get', 'GET', base, {}),
        ('patch name', 'PATCH', base, {'json': json_patch}),
        ('delete', 'DELETE', base, {}),
        ('share with self', 'POST', base + '/members', {'json': {'member': attacker_project}}),
        ('accept for self', 'PUT', base + '/members/' + attacker_project,
         {'json': {'status': 'accepted'}}),
        ('list members', 'GET', base + '/members', {}),
        ('remove a member', 'DELETE', base + '/members/' + owner_project, {}),
        ('add tag', 'PUT', base + '/tags/pwned', {}),
        ('delete tag', 'DELETE', base + '/tags/keep', {}),
        ('download', 'GET', base + '/file', {}),
        ('deactivate', 'POST', base + '/actions/deactivate', {}),
        ('image tasks', 'GET', base + '/tasks', {}),
    ]


@pytest.mark.parametrize('roles', ATTACKERS)
def test_customer_admin_cannot_reach_another_projects_images(victim, roles):
    endpoint, owner, images = victim
    attacker = clients.GlanceClient(endpoint, clients.new_project(), roles)
    try:
        unexpected = []
        for kind in ('private', 'shared'):
            for name, method, path, kwargs in _probes(owner.project, attacker.project,
                                                      images[kind]):
                if method == 'PATCH':
                    resp = attacker.patch(path, kwargs['json'])
                else:
                    resp = attacker.request(method, path, **kwargs)
                if resp.status_code != 404:
                    unexpected.append((kind, name, resp.status_code))
        resp = attacker.put('/v2/images/%s/file' % images['queued'], data=b'x',
                            headers={'Content-Type': 'application/octet-stream'})
        if resp.status_code != 404:
            unexpected.append(('queued', 'upload', resp.status_code))
        assert not unexpected, unexpected

        for query in ('', '?visibility=private', '?visibility=shared', '?visibility=all',
                      '?owner=%s' % owner.project, '?member_status=all&visibility=shared'):
            resp = attacker.get('/v2/images' + query)
            assert resp.status_code == 200, (query, resp.text)
            seen = {i['id'] for i in resp.json()['images']}
            assert not seen & set(images.values()), query
        resp = attacker.post('/v2/images', json={'name': 'planted', 'disk_format': 'raw',
                                                 'container_format': 'bare',
                                                 'owner': owner.project})
        assert resp.status_code == 403, resp.text
    finally:
        attacker.close()

    # The owner's images are untouched.
    for kind in ('private', 'shared'):
        shown = owner.get('/v2/images/%s' % images[kind]).json()
        assert (shown['name'], shown['status'], shown['tags']) == (
            'victim-' + kind, 'active', ['keep'])
        assert owner.get('/v2/images/%s/file' % images[kind]).content == DATA
    assert owner.get('/v2/images/%s/members' % images['shared']).json()['members'] == []
    assert owner.get('/v2/images/%s' % images['queued']).json()['status'] == 'queued'
    names = {i['name'] for i in owner.get('/v2/images').json()['images']}
    assert 'planted' not in names


def test_operator_does_see_other_projects_images(victim):
    """The counterpart that shows the probes above can tell: the operator role reaches them."""
    endpoint, owner, images = victim
    operator = clients.GlanceClient(endpoint, 'ops-' + clients.new_project()[:8],
                                    'rax-glance-operator')
    try:
        assert operator.get('/v2/images/%s' % images['private']).status_code == 200
        assert operator.get('/v2/images/%s/file' % images['private']).content == DATA
    finally:
        operator.close()
