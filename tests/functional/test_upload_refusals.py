"""Refused image uploads: clean answers, one log line, and no data left behind (issue 11, 7-8).

Real glance-api and Swift (the shared stack). Before the `cloudimages-image-upload` filter:

* every customer upload (refused by design: `upload_image` is the operator's and the
  services') logged an ERROR "Failed to upload image data due to HTTP error" and a traceback
  ("Image status transition from queued to queued is not allowed");
* an upload Glance's format inspection refused (415 "Image disk_format vhd does not match
  stream data raw") left the image `queued` with a checksum, a location and its data in the
  store: its download answered 500 (`Content-Length: None`) and a corrected upload 500.
"""

import os
from pathlib import Path

import pytest

from tests.functional import clients

OCTETS = {'Content-Type': 'application/octet-stream', 'Connection': 'close'}
CUSTOMERS = ['cloudImages:admin', 'admin', 'identity:user-admin', 'cloudImages:creator',
             'cloudImages:observer',
             'admin,identity:user-admin,cloudImages:admin,cloudImages:creator,member,reader']
FORBIDDEN = 'You are not authorized to complete upload_image action.'


class GlanceLog:
    """What glance-api logged since the last mark."""

    def __init__(self, stack_info):
        self.path = Path(stack_info['logs']['glance-api'])
        self.offset = self.path.stat().st_size

    def new(self):
        with self.path.open('rb') as log:
            log.seek(self.offset)
            return log.read().decode('utf-8', 'replace')


def _assert_no_error_logged(text):
    assert 'Traceback' not in text, text
    assert ' ERROR ' not in text, text
    assert 'queued to queued' not in text, text


def _stored_files(stack_info):
    root = os.path.join(stack_info['state_dir'], 'glance', 'images')
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


def _operator(stack_info):
    return clients.GlanceClient(stack_info['glance']['endpoint'], 'operators',
                                clients.OPERATOR_ROLES, user='operator')


def _uploader(stack_info, who, project):
    """The operator, or Nova uploading a snapshot (the owner's token plus a service token)."""
    if who == 'operator':
        return _operator(stack_info)
    nova = clients.GlanceClient(stack_info['glance']['endpoint'], project,
                                'cloudImages:creator')
    nova.session.headers['X-Service-Roles'] = 'service'
    return nova


def _assert_without_data(glance, image_id):
    image = glance.get('/v2/images/%s' % image_id).json()
    assert image['status'] == 'queued', image
    for field in ('checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size'):
        assert image[field] is None, (field, image)
    resp = glance.get('/v2/images/%s/file' % image_id)
    assert resp.status_code == 204, (resp.status_code, resp.headers, resp.text)
    assert resp.content == b''


def test_refused_customer_upload_logs_one_info_line(glance_factory, stack_info):
    admin = glance_factory()
    for roles in CUSTOMERS:
        customer = glance_factory(admin.project, roles=roles)
        image = admin.create_image()
        log = GlanceLog(stack_info)
        resp = customer.put('/v2/images/%s/file' % image['id'], data=b'x' * 4096,
                            headers=OCTETS)
        assert resp.status_code == 403, (roles, resp.text)
        assert resp.headers['Content-Type'].startswith('application/json')
        assert resp.json() == {'error': {'code': 403, 'title': 'Forbidden',
                                         'message': FORBIDDEN}}
        text = log.new()
        _assert_no_error_logged(text)
        refused = [line for line in text.splitlines()
                   if 'Refused an upload to image %s' % image['id'] in line]
        assert len(refused) == 1 and ' INFO ' in refused[0], text
        _assert_without_data(admin, image['id'])


def test_refused_upload_to_unseen_or_missing_image(glance_factory, stack_info):
    """Another project's image and an unknown id answer the same 404, without a traceback."""
    owner = glance_factory()
    image = owner.create_image()
    stranger = glance_factory()
    log = GlanceLog(stack_info)
    answers = []
    for image_id in (image['id'], '8bd4e1a2-21a3-4d3b-9d49-6b8c5b4b1e6f'):
        resp = stranger.put('/v2/images/%s/file' % image_id, data=b'x' * 4096,
                            headers=OCTETS)
        assert resp.status_code == 404, resp.text
        assert resp.headers['Content-Type'].startswith('application/json')
        answers.append(resp.json()['error']['title'])
    assert answers[0] == answers[1]
    _assert_no_error_logged(log.new())
    _assert_without_data(owner, image['id'])


@pytest.mark.parametrize('who', ['operator', 'service'])
@pytest.mark.parametrize('disk_format', ['vhd', 'qcow2'])
def test_upload_refused_by_format_inspection_leaves_no_data(glance_factory, stack_info,
                                                            disk_format, who):
    customer = glance_factory()
    operator = _uploader(stack_info, who, customer.project)
    try:
        image = customer.create_image(disk_format=disk_format, container_format='bare')
        before = _stored_files(stack_info)
        resp = operator.put('/v2/images/%s/file' % image['id'], data=b'x' * 100000,
                            headers=OCTETS)
        assert resp.status_code == 415, resp.text
        assert ('Image disk_format %s does not match stream data raw' % disk_format
                in resp.json()['error']['message'])
        _assert_without_data(customer, image['id'])
        _assert_without_data(operator, image['id'])
        assert _stored_files(stack_info) == before  # the refused bytes are gone
        # The image is usable again: corrected, its data uploads and downloads.
        fix = customer.patch('/v2/images/%s' % image['id'],
                             [{'op': 'replace', 'path': '/disk_format', 'value': 'raw'}])
        assert fix.status_code == 200, fix.text
        data = b'corrected data\n' * 1000
        customer.upload_as_operator(image['id'], data)
        shown = customer.get('/v2/images/%s' % image['id']).json()
        assert shown['status'] == 'active' and shown['size'] == len(data), shown
        assert customer.get('/v2/images/%s/file' % image['id']).content == data
    finally:
        operator.close()


def test_refused_wrong_content_type_leaves_a_clean_image(glance_factory, stack_info):
    customer = glance_factory()
    operator = _operator(stack_info)
    try:
        image = customer.create_image()
        resp = operator.put('/v2/images/%s/file' % image['id'], data=b'x' * 4096,
                            headers={'Content-Type': 'text/plain', 'Connection': 'close'})
        assert resp.status_code == 415, resp.text
        _assert_without_data(customer, image['id'])
    finally:
        operator.close()
