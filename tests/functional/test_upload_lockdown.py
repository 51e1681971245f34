"""Customer data enters the cloud only through the import task.

`PUT /v2/images/{id}/file` is for the operator and services, and Glance's interoperable
import (stage + import) is off on the dev stack (`enabled_import_methods = []`). Either would
otherwise put a Windows disk or a non-VHD into a customer's image without the import task's
checks. Real glance-api; every refusal is checked to leave the image queued and no data in
Glance's stores.
"""

import html
import os

import pytest

from tests.functional import clients
from tests.functional import tasks_helpers as th
from tests.functional.test_tasks_import import _windows_disk

# Refused uploads are answered before Glance reads their body: close the connection after
# each, so the next request never rides a connection the server may already have dropped.
OCTETS = {'Content-Type': 'application/octet-stream', 'Connection': 'close'}
# Customer personas that could create images before: every customer-admin role, the creator
# and a user holding every customer role plus Keystone's stock ones.
CUSTOMERS = ['cloudImages:admin', 'admin', 'identity:user-admin', 'cloudImages:creator',
             'admin,identity:user-admin,cloudImages:admin,cloudImages:creator,member,reader']
PAYLOADS = {
    'windows-ntfs-vhd': lambda: _windows_disk(2 * th.MIB),
    'not-a-vhd': lambda: b'MZ this is no disk at all\n' * 200,
}


def _stored_files(stack_info):
    root = os.path.join(stack_info['state_dir'], 'glance')
    return {os.path.join(d, f) for sub in ('images', 'staging')
            for d, _, files in os.walk(os.path.join(root, sub)) for f in files}


def _assert_no_data(glance, image_id, stack_info, before):
    image = glance.get('/v2/images/%s' % image_id).json()
    assert image['status'] == 'queued', image
    assert image['size'] is None and image['checksum'] is None, image
    assert glance.get('/v2/images/%s/file' % image_id).status_code == 204  # no data
    assert _stored_files(stack_info) == before


@pytest.mark.parametrize('payload', sorted(PAYLOADS))
def test_customers_cannot_put_image_data(glance_factory, stack_info, payload):
    data = PAYLOADS[payload]()
    admin = glance_factory()
    for roles in CUSTOMERS:
        customer = glance_factory(admin.project, roles=roles)
        for disk_format, container_format in (('vhd', 'bare'), ('vhd', 'ovf'), ('raw', 'bare')):
            # Creating the record is still a customer's right (creators and admins).
            image = customer.create_image(disk_format=disk_format,
                                          container_format=container_format)
            before = _stored_files(stack_info)
            resp = customer.put('/v2/images/%s/file' % image['id'], data=data, headers=OCTETS)
            assert resp.status_code == 403, (roles, resp.status_code, resp.text)
            _assert_no_data(admin, image['id'], stack_info, before)


def test_stage_and_import_are_closed(glance_factory, stack_info):
    admin = glance_factory()
    info = admin.get('/v2/info/import')
    assert info.status_code == 200, info.text
    assert info.json()['import-methods']['value'] == []
    for payload in sorted(PAYLOADS):
        image = admin.create_image(disk_format='vhd', container_format='bare')
        before = _stored_files(stack_info)
        resp = admin.put('/v2/images/%s/stage' % image['id'], data=PAYLOADS[payload](),
                         headers=OCTETS)
        assert resp.status_code == 404, resp.text
        assert "'glance-direct' method is not available" in html.unescape(resp.text)
        for method in ({'name': 'glance-direct'},
                       {'name': 'web-download', 'uri': 'http://127.0.0.1:9/win.vhd'}):
            resp = admin.post('/v2/images/%s/import' % image['id'], json={'method': method})
            assert resp.status_code == 400, resp.text
            assert ("Unknown import method name '%s'" % method['name']
                    in html.unescape(resp.text))
        _assert_no_data(admin, image['id'], stack_info, before)


def test_operator_and_service_token_may_upload(glance_factory, stack_info):
    customer = glance_factory()
    data = b'operator data\n' * 100
    image = customer.create_image()
    customer.upload_as_operator(image['id'], data)
    assert customer.get('/v2/images/%s/file' % image['id']).content == data
    # Nova uploading a snapshot: the user's token plus a service token (keystonemiddleware
    # turns the service token's roles into X-Service-Roles).
    snapshot = customer.create_image()
    nova = clients.GlanceClient(stack_info['glance']['endpoint'], customer.project,
                                'cloudImages:creator')
    nova.session.headers['X-Service-Roles'] = 'service'
    try:
        nova.upload(snapshot['id'], data)
    finally:
        nova.close()
    shown = customer.get('/v2/images/%s' % snapshot['id']).json()
    assert shown['status'] == 'active' and shown['size'] == len(data)
