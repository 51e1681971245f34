"""The swiftdlo glance_store driver inside the dev stack's real glance-api (multi-store:
`enabled_backends = local:file, swift:swiftdlo`), and the export-flow entry point."""

import hashlib
import io
import types

import pytest
import requests

from rax_glance.store import swiftdlo
from rax_glance.swift import access
from rax_glance.swift import dlo
from rax_glance.swift import errors
from tests.functional import clients
from tests.functional.swift_helpers import names_under
from tests.functional.swift_helpers import random_bytes
from tests.functional.swift_helpers import service_conf

CONTAINER = 'glance-images'  # the dev stack's [swift] swiftdlo_container
MiB = 1024 * 1024


@pytest.fixture
def store_account(stack_info):
    """A connection to the service account where the Glance store keeps images."""
    swift = access.ProjectSwift.service_account(service_conf(stack_info['swift']))
    return swift, swift.connection()


def _upload_to_swift(glance, data):
    image = glance.create_image()
    # Only the operator (and services) may PUT image data.
    glance.upload_as_operator(image['id'], data, headers={'X-Image-Meta-Store': 'swift'})
    return glance.get('/v2/images/%s' % image['id']).json()


def test_stores_info_lists_swift(glance_factory):
    stores = glance_factory().get('/v2/info/stores').json()['stores']
    by_id = {s['id']: s for s in stores}
    assert by_id['local'].get('default') == 'true'
    assert 'swift' in by_id and not by_id['swift'].get('default')


def test_upload_and_download_through_swiftdlo(glance_factory, store_account):
    swift, conn = store_account
    glance = glance_factory()
    data = random_bytes(3 * MiB + 5)  # the dev stack uses 1 MiB segments: 4 segments
    image = _upload_to_swift(glance, data)
    assert image['status'] == 'active'
    assert image['stores'] == 'swift'
    assert image['size'] == len(data)
    assert image['checksum'] == hashlib.md5(data).hexdigest()
    assert image['os_hash_algo'] == 'sha512'
    assert image['os_hash_value'] == hashlib.sha512(data).hexdigest()

    stored = names_under(conn, CONTAINER, image['id'])
    assert stored == [image['id']] + [dlo.segment_name(image['id'], i) for i in range(1, 5)]
    assert dlo.verify_dlo(swift, CONTAINER, image['id'])['ok']

    resp = glance.get('/v2/images/%s/file' % image['id'])
    assert resp.status_code == 200
    assert resp.content == data

    resp = glance.get('/v2/images/%s/file' % image['id'],
                      headers={'Range': 'bytes=%d-%d' % (MiB - 3, 2 * MiB + 9)})
    assert resp.status_code == 206
    assert resp.content == data[MiB - 3:2 * MiB + 10]

    assert glance.delete('/v2/images/%s' % image['id']).status_code == 204
    assert names_under(conn, CONTAINER, image['id']) == []


def test_empty_image(glance_factory, store_account):
    swift, conn = store_account
    glance = glance_factory()
    image = _upload_to_swift(glance, b'')
    assert image['size'] == 0
    assert names_under(conn, CONTAINER, image['id']) == [image['id']]
    resp = glance.get('/v2/images/%s/file' % image['id'])
    assert resp.status_code in (200, 204)
    assert resp.content == b''


def test_lost_segment_fails_the_download(glance_factory, store_account):
    swift, conn = store_account
    glance = glance_factory()
    data = random_bytes(2 * MiB + 100)
    image = _upload_to_swift(glance, data)
    conn.delete_object(CONTAINER, dlo.segment_name(image['id'], 2))
    resp = glance.get('/v2/images/%s/file' % image['id'])
    # Stock swift stores would answer 200 with a short body; this one refuses.
    assert resp.status_code == 503, resp.status_code
    assert resp.content != data


def test_stray_object_fails_the_download(glance_factory, store_account):
    swift, conn = store_account
    glance = glance_factory()
    data = random_bytes(MiB + 100)
    image = _upload_to_swift(glance, data)
    conn.put_object(CONTAINER, image['id'] + '-zz', b'appended')
    assert conn.get_object(CONTAINER, image['id'])[1] == data + b'appended'
    resp = glance.get('/v2/images/%s/file' % image['id'])
    assert resp.status_code == 503, resp.status_code
    # Deleting the image removes the stray object too: nothing is left under its name.
    assert glance.delete('/v2/images/%s' % image['id']).status_code == 204
    assert names_under(conn, CONTAINER, image['id']) == []


def test_altered_bytes_cut_the_download_short(glance_factory, store_account):
    """Damage only the bytes can reveal (here a tampered record): the download starts but
    never completes, so a client sees a truncated transfer, not a valid image."""
    swift, conn = store_account
    glance = glance_factory()
    data = random_bytes(2 * MiB + 100)
    image = _upload_to_swift(glance, data)
    headers = conn.head_object(CONTAINER, image['id'], query_string='multipart-manifest=get')
    meta = {k: v for k, v in headers.items() if k.startswith('x-object-meta-')}
    meta['x-object-meta-rax-dlo-sha256'] = hashlib.sha256(b'x').hexdigest()
    meta['x-object-manifest'] = headers['x-object-manifest']
    conn.post_object(CONTAINER, image['id'], headers=meta)

    received = bytearray()
    with pytest.raises(requests.exceptions.RequestException):
        with glance.get('/v2/images/%s/file' % image['id'], stream=True) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_content(65536):
                received += chunk
    assert len(received) < len(data)


def test_export_entry_point_writes_into_the_project_account(stack_info):
    info = stack_info['swift']
    conf = service_conf(info, segment_size=256 * 1024)
    project, other = clients.new_project(), clients.new_project()
    context = types.SimpleNamespace(project_id=project, auth_token=None,
                                    service_catalog=None)
    own = access.ProjectSwift.for_project(project, conf).connection()
    own.put_container('exports')
    data = random_bytes(600 * 1024)

    with pytest.raises(errors.ContainerNotFound) as err:
        swiftdlo.write_project_object(context, 'missing', 'a.vhd', io.BytesIO(data), conf)
    assert err.value.message == 'Container not found. Container: missing'
    for bad in ('ex.ports', 'ex?ports', 'ex/ports'):
        with pytest.raises(errors.InvalidName):
            swiftdlo.write_project_object(context, bad, 'a.vhd', io.BytesIO(data), conf)

    result = swiftdlo.write_project_object(context, 'exports', 'a.vhd', io.BytesIO(data),
                                           conf)
    assert result['location'] == 'exports/a.vhd'
    assert result['segment_count'] == 3
    assert own.get_object('exports', 'a.vhd')[1] == data
    # Nothing landed in any other account.
    other_conn = access.ProjectSwift.for_project(other, conf).connection()
    assert other_conn.get_account()[1] == []

    with pytest.raises(errors.ObjectExists):
        swiftdlo.write_project_object(context, 'exports', 'a.vhd', io.BytesIO(data), conf)
    assert swiftdlo.delete_project_object(context, 'exports', 'a.vhd', conf) == 4
    assert names_under(own, 'exports', 'a.vhd') == []
