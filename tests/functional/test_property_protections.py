"""Property protections (etc/property-protections.conf, doc/api.md section 2) on the real
glance-api: who may create, update and delete protected, reserved and custom properties, that
refusals answer 403 naming the property, and that protected values stay readable."""

import html

import pytest

from tests.functional import clients

OPERATOR = 'rax-glance-operator'
CUSTOMER_ADMINS = ('identity:user-admin', 'admin', 'cloudImages:admin')
READERS = ('cloudImages:creator', 'cloudImages:observer', 'observer')

# Properties only the operator may write (one or more per protected section).
PROTECTED = {
    'com.rackspace__1__options': '1',
    'com.rackspace__1__build_core': '1',
    'com.rackspace__1__visible_managed': '1',
    'org.openstack__1__os_distro': 'org.debian',
    'image_type': 'base',
    'os_type': 'linux',
    'user_id': 'someone',
    'instance_uuid': '9b3c7e0e-4c5c-4b5a-8a3e-2c8f1e9d6a11',
    'base_image_ref': 'f1d2c3b4-0000-4000-8000-000000000001',
    'image_location': 'snapshot',
    'image_state': 'available',
    'owner_id': 'account-1',
    'vm_mode': 'hvm',
    'xenapi_use_agent': 'true',
    'instance_type_memory_mb': '1024',
}
# Names a customer might try to slip past a case-sensitive or unanchored rule.
NEW_RESERVED = ('com.rackspace__9__new', 'COM.RACKSPACE__1__options', 'Com.Rackspace_x',
                'org.openstack__1__new')


def _patch(client, image_id, *ops):
    return client.patch('/v2/images/%s' % image_id, list(ops))


def _refused_naming(resp, prop):
    text = html.unescape(resp.text)
    return resp.status_code == 403 and ("Attribute '%s' is reserved" % prop) in text


@pytest.fixture(scope='module')
def world(stack_info):
    endpoint = stack_info['glance']['endpoint']
    project = clients.new_project()
    made = []

    def client(roles, proj=project):
        c = clients.GlanceClient(endpoint, proj, roles)
        made.append(c)
        return c

    operator = client(OPERATOR, 'ops-' + clients.new_project()[:8])
    image = operator.create_image(owner=project, **PROTECTED)
    yield {'project': project, 'image': image['id'], 'client': client, 'operator': operator}
    for c in made:
        c.close()


@pytest.mark.parametrize('roles', CUSTOMER_ADMINS)
def test_customer_admin_cannot_write_protected_properties(world, roles):
    admin = world['client'](roles)
    image_id = world['image']
    failures = []
    for prop in PROTECTED:
        for ops in ([{'op': 'replace', 'path': '/' + prop, 'value': 'changed'}],
                    [{'op': 'remove', 'path': '/' + prop}]):
            resp = _patch(admin, image_id, *ops)
            if not _refused_naming(resp, prop):
                failures.append((prop, ops[0]['op'], resp.status_code, resp.text[-200:]))
    for prop in NEW_RESERVED:
        resp = _patch(admin, image_id, {'op': 'add', 'path': '/' + prop, 'value': '0'})
        if not _refused_naming(resp, prop):
            failures.append((prop, 'add', resp.status_code, resp.text[-200:]))
        resp = admin.post('/v2/images', json={'name': 'x', 'disk_format': 'raw',
                                              'container_format': 'bare', prop: '0'})
        if not _refused_naming(resp, prop):
            failures.append((prop, 'create', resp.status_code, resp.text[-200:]))
    assert not failures, failures
    # Nothing changed, and every protected value is still readable by the customer.
    shown = admin.get('/v2/images/%s' % image_id).json()
    assert {k: shown.get(k) for k in PROTECTED} == PROTECTED
    for prop in NEW_RESERVED:
        assert prop not in shown


@pytest.mark.parametrize('roles', READERS)
def test_read_roles_see_protected_values_but_cannot_change_them(world, roles):
    reader = world['client'](roles)
    shown = reader.get('/v2/images/%s' % world['image'])
    assert shown.status_code == 200
    assert {k: shown.json().get(k) for k in PROTECTED} == PROTECTED
    for ops in ([{'op': 'replace', 'path': '/com.rackspace__1__options', 'value': '0'}],
                [{'op': 'remove', 'path': '/image_type'}],
                [{'op': 'add', 'path': '/my_app', 'value': 'v1'}]):
        assert _patch(reader, world['image'], *ops).status_code == 403, ops
    resp = reader.post('/v2/images', json={'name': 'x', 'disk_format': 'raw',
                                           'container_format': 'bare',
                                           'com.rackspace__1__options': '0'})
    assert resp.status_code == 403, resp.text
    if roles == 'cloudImages:creator':  # may create images, so the property is the reason
        assert _refused_naming(resp, 'com.rackspace__1__options'), resp.text
    shown = reader.get('/v2/images/%s' % world['image']).json()
    assert {k: shown.get(k) for k in PROTECTED} == PROTECTED and 'my_app' not in shown


def test_operator_may_create_update_and_delete_protected_properties(world):
    operator = world['operator']
    image_id = operator.create_image(owner=world['project'])['id']
    for prop in list(PROTECTED) + list(NEW_RESERVED):
        resp = _patch(operator, image_id, {'op': 'add', 'path': '/' + prop, 'value': 'a'})
        assert resp.status_code == 200, (prop, resp.text)
        resp = _patch(operator, image_id, {'op': 'replace', 'path': '/' + prop, 'value': 'b'})
        assert resp.status_code == 200 and resp.json()[prop] == 'b', (prop, resp.text)
        resp = _patch(operator, image_id, {'op': 'remove', 'path': '/' + prop})
        assert resp.status_code == 200 and prop not in resp.json(), (prop, resp.text)


@pytest.mark.parametrize('roles', CUSTOMER_ADMINS)
def test_customer_admin_owns_custom_properties_auto_disk_config_and_name(world, roles):
    admin = world['client'](roles)
    image = admin.create_image(my_app='v1', auto_disk_config='False')
    assert image['my_app'] == 'v1'
    for prop, op, value in (('my_app', 'replace', 'v2'), ('auto_disk_config', 'replace', 'True'),
                            ('brand_new', 'add', 'x')):
        resp = _patch(admin, image['id'], {'op': op, 'path': '/' + prop, 'value': value})
        assert resp.status_code == 200 and resp.json()[prop] == value, resp.text
        resp = _patch(admin, image['id'], {'op': 'remove', 'path': '/' + prop})
        assert resp.status_code == 200 and prop not in resp.json(), resp.text
    resp = _patch(admin, image['id'], {'op': 'replace', 'path': '/name', 'value': 'renamed'})
    assert resp.status_code == 200 and resp.json()['name'] == 'renamed'


def test_creator_may_create_images_but_not_properties(world):
    creator = world['client']('cloudImages:creator')
    resp = creator.post('/v2/images', json={'name': 'c', 'disk_format': 'raw',
                                            'container_format': 'bare', 'my_app': 'v1'})
    assert _refused_naming(resp, 'my_app'), resp.text
    image = creator.create_image(name='plain')
    resp = _patch(creator, image['id'], {'op': 'add', 'path': '/my_app', 'value': 'v1'})
    assert resp.status_code == 403
    listed = creator.get('/v2/images').json()['images']
    assert [i['id'] for i in listed if i['name'] == 'c'] == []


def test_refused_patch_changes_nothing(world):
    """A PATCH mixing an allowed and a forbidden change is refused as a whole."""
    admin = world['client']('cloudImages:admin')
    resp = _patch(admin, world['image'],
                  {'op': 'replace', 'path': '/name', 'value': 'sneaky'},
                  {'op': 'add', 'path': '/my_note', 'value': 'x'},
                  {'op': 'replace', 'path': '/com.rackspace__1__options', 'value': '0'})
    assert _refused_naming(resp, 'com.rackspace__1__options'), resp.text
    shown = admin.get('/v2/images/%s' % world['image']).json()
    assert shown['name'] != 'sneaky' and 'my_note' not in shown
    assert shown['com.rackspace__1__options'] == '1'


@pytest.mark.parametrize('roles', (OPERATOR, 'cloudImages:admin'))
def test_os_glance_prefix_stays_reserved_to_glance(world, roles):
    user = world['client'](roles)
    resp = user.post('/v2/images', json={'name': 'g', 'disk_format': 'raw',
                                         'container_format': 'bare', 'os_glance_x': '1'})
    assert resp.status_code == 403 and 'os_glance_x' in html.unescape(resp.text), resp.text
