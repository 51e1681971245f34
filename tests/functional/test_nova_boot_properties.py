"""Issue 10 class 7: the properties Nova 34 writes on snapshots and reads when it boots are the
operator's and the services' (etc/property-protections.conf), like the other Nova snapshot
properties. Every customer persona is refused creating, adding, changing and removing each of
them; the operator and Nova (a user's request with a service token, X-Service-Roles: service)
may; everybody still reads them."""

import html
import json

import pytest

from tests.functional import clients
from tests.functional.test_rbac_matrix import OPERATOR_ROLE
from tests.functional.test_rbac_matrix import PERSONAS

V21 = 'application/openstack-images-v2.1-json-patch'
_BDM = json.dumps([{'boot_index': 0, 'source_type': 'snapshot', 'destination_type': 'volume',
                    'snapshot_id': '6f1b1d7e-0000-4000-8000-000000000001',
                    'delete_on_termination': False}])
# From nova/compute/api.py (snapshot_volume_backed), nova/compute/utils.py (create_image,
# initialize_instance_snapshot_metadata), nova/conf/compute.py
# (non_inheritable_image_properties) and nova/objects/image_meta.py (the img_ names).
NOVA_PROPERTIES = {
    'block_device_mapping': _BDM, 'bdm_v2': 'True', 'root_device_name': '/dev/vda',
    'mappings': json.dumps([{'virtual': 'swap', 'device': 'vdb'}]),
    'cache_in_nova': 'True', 'bittorrent': 'True',
    'img_block_device_mapping': _BDM, 'img_bdm_v2': 'True',
    'img_root_device_name': '/dev/vda', 'img_mappings': '[]', 'img_cache_in_nova': 'True',
    'img_bittorrent': 'True', 'backup_type': 'daily',
    'instance_owner': 'f00dfeedf00dfeedf00dfeedf00dfeed', 'owner_project_name': 'acme',
    'owner_user_name': 'alice', 'boot_roles': 'admin,member',
}
# Letter case does not help (Glance stores names as given).
VARIANTS = ('Block_Device_Mapping', 'BDM_V2', 'Root_Device_Name')
CUSTOMER_PERSONAS = [roles for roles, klass in PERSONAS if klass != 'operator']
CLASS_OF = dict(PERSONAS)


def _refused(resp, prop):
    return resp.status_code == 403 and prop in html.unescape(resp.text)


def _patch(client, image_id, *ops):
    return client.request('PATCH', '/v2/images/%s' % image_id, data=json.dumps(list(ops)),
                          headers={'Content-Type': V21})


@pytest.fixture(scope='module')
def world(stack_info):
    endpoint = stack_info['glance']['endpoint']
    project = clients.new_project()
    made = []

    def client(roles, proj=project, service=False):
        c = clients.GlanceClient(endpoint, proj, roles)
        if service:
            c.session.headers['X-Service-Roles'] = 'service'
        made.append(c)
        return c

    operator = client(OPERATOR_ROLE, 'ops-' + clients.new_project()[:8])
    # An image carrying every property (a snapshot as Nova makes it) and a plain one.
    snapshot = operator.create_image(owner=project, **NOVA_PROPERTIES)
    plain = client('cloudImages:admin').create_image(name='plain')
    yield {'project': project, 'client': client, 'operator': operator,
           'snapshot': snapshot['id'], 'plain': plain['id']}
    for c in made:
        c.close()


@pytest.mark.parametrize('roles', CUSTOMER_PERSONAS)
def test_customers_cannot_write_nova_boot_properties(world, roles):
    customer = world['client'](roles)
    failures = []
    for prop in list(NOVA_PROPERTIES) + list(VARIANTS):
        value = NOVA_PROPERTIES.get(prop, 'True')
        resp = customer.post('/v2/images', json={'name': 'x', 'disk_format': 'raw',
                                                 'container_format': 'bare', prop: value})
        if resp.status_code != 403:
            failures.append((prop, 'create', resp.status_code))
        elif CLASS_OF[roles] in ('admin', 'creator'):
            # May create images: the property is the reason, and the answer names it.
            if not _refused(resp, prop):
                failures.append((prop, 'create', resp.status_code, resp.text[-120:]))
        patches = [(world['plain'], {'op': 'add', 'path': '/' + prop, 'value': value})]
        if prop in NOVA_PROPERTIES:
            patches += [(world['snapshot'], {'op': op, 'path': '/' + prop, 'value': 'changed'})
                        for op in ('add', 'replace')]
            patches.append((world['snapshot'], {'op': 'remove', 'path': '/' + prop}))
        for image_id, op in patches:
            resp = _patch(customer, image_id, op)
            if CLASS_OF[roles] == 'admin':  # may PATCH: the property is the reason
                ok = _refused(resp, prop)
            else:  # 403, or 404 without any read role
                ok = resp.status_code in (403, 404)
            if not ok:
                failures.append((prop, op['op'], resp.status_code, resp.text[-120:]))
    assert not failures, failures
    shown = world['operator'].get('/v2/images/%s' % world['snapshot']).json()
    assert {k: shown.get(k) for k in NOVA_PROPERTIES} == NOVA_PROPERTIES
    plain = world['operator'].get('/v2/images/%s' % world['plain']).json()
    assert not set(plain) & (set(NOVA_PROPERTIES) | set(VARIANTS))
    names = customer.get('/v2/images', params={'name': 'x'})
    assert names.status_code in (200, 403) and not (
        names.status_code == 200 and names.json()['images']), names.text


def test_customers_still_read_them(world):
    reader = world['client']('cloudImages:observer')
    shown = reader.get('/v2/images/%s' % world['snapshot'])
    assert shown.status_code == 200, shown.text
    assert {k: shown.json().get(k) for k in NOVA_PROPERTIES} == NOVA_PROPERTIES


@pytest.mark.parametrize('who', ['operator', 'nova'])
def test_operator_and_nova_write_them(world, who):
    if who == 'operator':
        writer = world['operator']
        image = writer.create_image(owner=world['project'], **NOVA_PROPERTIES)
    else:  # a customer-admin's request carrying Nova's service token, as for a snapshot
        writer = world['client']('cloudImages:admin', service=True)
        image = writer.create_image(**NOVA_PROPERTIES)
    assert {k: image.get(k) for k in NOVA_PROPERTIES} == NOVA_PROPERTIES
    for prop in NOVA_PROPERTIES:
        resp = _patch(writer, image['id'], {'op': 'replace', 'path': '/' + prop, 'value': 'v'})
        assert resp.status_code == 200 and resp.json()[prop] == 'v', (prop, resp.text)
        resp = _patch(writer, image['id'], {'op': 'remove', 'path': '/' + prop})
        assert resp.status_code == 200 and prop not in resp.json(), (prop, resp.text)
        resp = _patch(writer, image['id'], {'op': 'add', 'path': '/' + prop, 'value': 'w'})
        assert resp.status_code == 200 and resp.json()[prop] == 'w', (prop, resp.text)
