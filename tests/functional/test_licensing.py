"""Licensing cannot be sidestepped: an image whose `com.rackspace__1__options` is present and not
`0` may not leave the cloud, and no customer role can flip that property (e.g. 1 -> 0) to make
it downloadable. The operator can (which also shows the checks below can tell the difference).
"""

import pytest

from tests.functional import clients

OPTIONS = 'com.rackspace__1__options'
DATA = b'licensed operating system\n'
CUSTOMER_ROLES = ('identity:user-admin', 'admin', 'cloudImages:admin', 'cloudImages:creator',
                  'cloudImages:observer', 'observer',
                  'identity:user-admin,admin,cloudImages:admin,member,reader')


@pytest.fixture
def licensed(glance_factory):
    project = clients.new_project()
    operator = glance_factory('ops-' + clients.new_project()[:8], 'rax-glance-operator')
    image = operator.create_image(owner=project, **{OPTIONS: '1'})
    operator.upload(image['id'], DATA)
    return project, operator, image['id']


@pytest.mark.parametrize('roles', CUSTOMER_ROLES)
def test_no_customer_role_can_unlock_a_licensed_image(glance_factory, licensed, roles):
    project, _, image_id = licensed
    customer = glance_factory(project, roles)
    attempts = [
        [{'op': 'replace', 'path': '/' + OPTIONS, 'value': '0'}],
        [{'op': 'add', 'path': '/' + OPTIONS, 'value': '0'}],
        [{'op': 'remove', 'path': '/' + OPTIONS}],
        [{'op': 'remove', 'path': '/' + OPTIONS},
         {'op': 'add', 'path': '/' + OPTIONS, 'value': '0'}],
    ]
    for ops in attempts:
        resp = customer.patch('/v2/images/%s' % image_id, ops)
        assert resp.status_code == 403, (ops, resp.status_code, resp.text)
    shown = customer.get('/v2/images/%s' % image_id)
    assert shown.status_code == 200 and shown.json()[OPTIONS] == '1'
    resp = customer.get('/v2/images/%s/file' % image_id)
    assert resp.status_code == 403, resp.text
    assert DATA not in resp.content


def test_sharing_does_not_sidestep_licensing(glance_factory, licensed):
    project, _, image_id = licensed
    owner = glance_factory(project, 'cloudImages:admin')
    consumer = glance_factory(clients.new_project(), 'cloudImages:admin')
    resp = owner.post('/v2/images/%s/members' % image_id, json={'member': consumer.project})
    assert resp.status_code == 200, resp.text
    resp = consumer.put('/v2/images/%s/members/%s' % (image_id, consumer.project),
                        json={'status': 'accepted'})
    assert resp.status_code == 200, resp.text
    assert consumer.get('/v2/images/%s' % image_id).status_code == 200
    assert consumer.get('/v2/images/%s/file' % image_id).status_code == 403
    resp = consumer.patch('/v2/images/%s' % image_id,
                          [{'op': 'replace', 'path': '/' + OPTIONS, 'value': '0'}])
    assert resp.status_code == 403, resp.text


def test_only_absent_or_zero_options_allow_a_download(glance_factory, licensed):
    project, operator, image_id = licensed
    owner = glance_factory(project, 'cloudImages:admin')
    assert operator.get('/v2/images/%s/file' % image_id).content == DATA
    for ops, allowed in (
            ([{'op': 'replace', 'path': '/' + OPTIONS, 'value': '0'}], True),
            ([{'op': 'replace', 'path': '/' + OPTIONS, 'value': '2'}], False),
            ([{'op': 'replace', 'path': '/' + OPTIONS, 'value': ''}], False),
            ([{'op': 'remove', 'path': '/' + OPTIONS}], True)):
        resp = operator.patch('/v2/images/%s' % image_id, ops)
        assert resp.status_code == 200, resp.text
        resp = owner.get('/v2/images/%s/file' % image_id)
        if allowed:
            assert resp.status_code == 200 and resp.content == DATA, ops
        else:
            assert resp.status_code == 403, ops


def test_nova_with_a_service_token_may_boot_and_snapshot_licensed_images(glance_factory,
                                                                         licensed):
    """Nova acts with the user's token plus its service token (keystonemiddleware then sets
    X-Service-Roles): it may fetch a licensed image to boot it and copy the protected
    properties onto a snapshot. The same user without the service token may not."""
    project, _, image_id = licensed
    snapshot = {'name': 'snap', 'disk_format': 'vhd', 'container_format': 'ovf',
                'image_type': 'snapshot', 'instance_uuid': '8c1e0b5e-2f4e-4f7e-9a55-1b2c3d4e5f60',
                OPTIONS: '1', 'base_image_ref': image_id}
    user = glance_factory(project, 'cloudImages:creator')
    assert user.get('/v2/images/%s/file' % image_id).status_code == 403
    assert user.post('/v2/images', json=snapshot).status_code == 403

    nova = glance_factory(project, 'cloudImages:creator', user=user.user)
    nova.session.headers['X-Service-Roles'] = 'service'
    resp = nova.get('/v2/images/%s/file' % image_id)
    assert resp.status_code == 200 and resp.content == DATA
    resp = nova.post('/v2/images', json=snapshot)
    assert resp.status_code == 201, resp.text
    assert resp.json()[OPTIONS] == '1' and resp.json()['owner'] == project
    # The snapshot is as locked as its parent for the customer, even its admin.
    admin = glance_factory(project, 'cloudImages:admin')
    resp = admin.patch('/v2/images/%s' % resp.json()['id'],
                       [{'op': 'replace', 'path': '/' + OPTIONS, 'value': '0'}])
    assert resp.status_code == 403 and OPTIONS in resp.text, resp.text
