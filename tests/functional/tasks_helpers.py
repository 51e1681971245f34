"""Helpers for the tasks API tests: polling, Swift uploads as single objects, DLO and SLO."""

import json
import time

from tests.unit.vhd import builder

MIB = 1024 * 1024
FINAL = ('success', 'failure')


def wait_task(glance, task_id, timeout=180):
    """Poll until the task finishes; returns its body."""
    deadline = time.monotonic() + timeout
    while True:
        resp = glance.get('/v2/tasks/%s' % task_id)
        assert resp.status_code == 200, resp.text
        task = resp.json()
        if task['status'] in FINAL:
            return task
        assert time.monotonic() < deadline, 'task %s stuck in %s' % (task_id, task['status'])
        time.sleep(0.3)


def post_import(glance, import_from, name='imported', **props):
    body = {'type': 'import', 'input': {'import_from': import_from,
                                        'import_from_format': 'vhd',
                                        'image_properties': dict(name=name, **props)}}
    resp = glance.post('/v2/tasks', json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def post_export(glance, image_id, container='exports'):
    resp = glance.post('/v2/tasks', json={'type': 'export', 'input': {
        'image_uuid': image_id, 'receiving_swift_container': container}})
    assert resp.status_code == 201, resp.text
    return resp.json()


def run_import(glance, import_from, **kwargs):
    return wait_task(glance, post_import(glance, import_from, **kwargs)['id'])


def run_export(glance, image_id, container='exports'):
    return wait_task(glance, post_export(glance, image_id, container)['id'])


def upload(swift, container, name, data, how='object', segment=MIB):
    """Put `data` as one object, a DLO or an SLO (segments in the same container)."""
    swift.put_container(container)
    if how == 'object':
        swift.put_object(container, name, data)
        return
    pieces = [data[i:i + segment] for i in range(0, len(data), segment)]
    seg_names = ['%s.seg/%05d' % (name, i) for i in range(len(pieces))]
    etags = [swift.put_object(container, n, p) for n, p in zip(seg_names, pieces, strict=True)]
    if how == 'dlo':
        swift.put_object(container, name, b'', headers={
            'X-Object-Manifest': '%s/%s.seg/' % (container, name)})
    elif how == 'slo':
        manifest = [{'path': '/%s/%s' % (container, n), 'etag': e, 'size_bytes': len(p)}
                    for n, e, p in zip(seg_names, etags, pieces, strict=True)]
        swift.put_object(container, name, json.dumps(manifest),
                         query_string='multipart-manifest=put')
    else:
        raise ValueError(how)


def sample_disk(size=6 * MIB, seed=0):
    """(raw content, dynamic VHD bytes) built by the test's own VHD builder."""
    disk = builder.Dynamic(size)
    raw = bytearray(size)
    marks = [(0, b'\x11' * 4096), (3 * MIB, bytes(range(256)) * 4096),
             (size - 8192, (b'%08d' % seed) * 1024)]
    for offset, data in marks:
        disk.write(offset, data)
        raw[offset:offset + len(data)] = data
    return bytes(raw), disk.build()


def image_ids(glance):
    """The project's own images (public images of other tests show in every list)."""
    resp = glance.get('/v2/images?owner=%s&limit=1000' % glance.project)
    assert resp.status_code == 200, resp.text
    return {img['id'] for img in resp.json()['images']}
