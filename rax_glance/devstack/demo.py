"""`rax-glance-devstack demo`: show a running stack working, then how to use and stop it."""

import hashlib
import io
import json
import os
import time
import uuid

import requests
import swiftclient

DEMO_PROJECT = 'demo'
DEMO_USER = 'demo-user'
# A customer-admin in Cloud Images terms (etc/policy.yaml needs no stock member/reader).
DEMO_ROLES = 'cloudImages:admin'
# The cloud operator (context_is_admin): the only identity besides services that uploads data.
OPERATOR_ROLES = 'rax-glance-operator'


def identity_headers(project=DEMO_PROJECT, user=DEMO_USER, roles=DEMO_ROLES):
    """The headers keystonemiddleware would set; the trusted-headers flavor reads them."""
    return {'X-Identity-Status': 'Confirmed', 'X-Project-Id': project, 'X-User-Id': user,
            'X-Roles': roles}


def project_swift(info, project):
    """A swiftclient connection acting on `project`'s account through the service user."""
    swift = info['swift']
    conn = swiftclient.Connection(authurl=swift['auth_url'], user=swift['service_user'],
                                  key=swift['service_key'], auth_version='1', retries=2)
    storage_url = swift['storage_url_template'] % {'project_id': project}
    _, token = conn.get_auth()
    return swiftclient.Connection(preauthurl=storage_url, preauthtoken=token, retries=2)


def _say(out, text=''):
    out.write(text + '\n')
    out.flush()


def run(info, out):
    glance = info['glance']['endpoint']
    headers = identity_headers()
    session = requests.Session()
    session.headers.update(headers)

    _say(out, '== Glance: project %r creates an image record; the operator uploads its data'
         % DEMO_PROJECT)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    resp = session.post(glance + '/v2/images', json={
        'name': 'rax-glance demo %s' % uuid.uuid4().hex[:8], 'disk_format': 'raw',
        'container_format': 'bare'})
    resp.raise_for_status()
    image = resp.json()
    _say(out, 'created image %s (status %s) as the customer' % (image['id'], image['status']))
    data_url = '%s/v2/images/%s/file' % (glance, image['id'])
    octets = {'Content-Type': 'application/octet-stream'}
    # Customer data enters only through the import task (VHD checks, no Windows disks).
    resp = session.put(data_url, data=b'customer bytes', headers=octets)
    _say(out, 'customer PUT /file: %d (customers bring data in with an import task)'
          % resp.status_code)
    if resp.status_code != 403:
        raise SystemExit('demo failed: a customer could upload image data directly')
    operator = requests.Session()
    operator.headers.update(identity_headers('demo-operators', 'demo-operator',
                                             OPERATOR_ROLES))
    resp = operator.put(data_url, data=payload, headers=octets)
    resp.raise_for_status()
    resp = session.get(data_url)
    resp.raise_for_status()
    same = hashlib.sha256(resp.content).digest() == hashlib.sha256(payload).digest()
    _say(out, 'operator (role %s) uploaded %d bytes; the customer downloaded them: %s'
         % (OPERATOR_ROLES, len(payload), 'identical' if same else 'DIFFERENT'))
    if not same:
        raise SystemExit('demo failed: downloaded image differs from upload')

    _say(out, '\n== Swift: a container and object in project %r\'s account' % DEMO_PROJECT)
    conn = project_swift(info, DEMO_PROJECT)
    conn.put_container('exports')
    conn.put_object('exports', 'hello.txt', contents=b'hello from rax-glance\n')
    _, body = conn.get_object('exports', 'hello.txt')
    _say(out, 'put and got exports/hello.txt: %r' % body)

    imported = _demo_import(info, session, out)
    export_location = _demo_export(info, session, out, imported)
    _print_usage(info, out, imported['image_id'], export_location)


def _demo_disk(size=16 * 1024 * 1024):
    """Raw content of a small disk: an MBR with one Linux partition and some data."""
    disk = bytearray(size)
    disk[446 + 4] = 0x83  # Linux partition type
    disk[446 + 8:446 + 16] = (2048).to_bytes(4, 'little') + (size // 512 - 2048).to_bytes(
        4, 'little')
    disk[510:512] = b'\x55\xaa'
    disk[1024 * 1024:1024 * 1024 + 4096] = b'rax-glance demo filesystem'.ljust(4096, b'.')
    disk[9 * 1024 * 1024:10 * 1024 * 1024] = os.urandom(1024 * 1024)
    return bytes(disk)


def _run_task(glance, session, body, out, timeout=300):
    """POST a task, follow its status until it ends; the finished task, or exit on failure."""
    _say(out, 'POST /v2/tasks %s' % json.dumps(body))
    resp = session.post(glance + '/v2/tasks', json=body)
    resp.raise_for_status()
    task = _wait_task(glance, session, resp.json()['id'], out, timeout)
    if task['status'] != 'success':
        raise SystemExit('demo failed: %s task failed: %s' % (body['type'], task['message']))
    return task


def _wait_task(glance, session, task_id, out, timeout):
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        resp = session.get('%s/v2/tasks/%s' % (glance, task_id))
        resp.raise_for_status()
        task = resp.json()
        if task['status'] != status:
            status = task['status']
            _say(out, '  task %s: %s' % (task_id, status))
        if status in ('success', 'failure'):
            return task
        time.sleep(0.5)
    raise SystemExit('demo failed: task %s still %s after %d s' % (task_id, status, timeout))


def _demo_import(info, session, out):
    """Write a dynamic VHD with the bundle's engine, put it in Swift, import it."""
    from rax_glance.vhd import content as vhd_content

    glance = info['glance']['endpoint']
    raw = _demo_disk()
    vhd = vhd_content.dynamic_stream(
        vhd_content.RawFileContent(io.BytesIO(raw), len(raw))).read()
    name = 'demo-%s.vhd' % uuid.uuid4().hex[:8]
    conn = project_swift(info, DEMO_PROJECT)
    conn.put_container('imports')
    conn.put_object('imports', name, contents=vhd)
    _say(out, '\n== Cloud Images import: a %d MiB disk as a %d-byte dynamic VHD in '
              'imports/%s' % (len(raw) >> 20, len(vhd), name))
    body = {'type': 'import', 'input': {'import_from': 'imports/%s' % name,
                                        'import_from_format': 'vhd',
                                        'image_properties': {'name': 'Demo import'}}}
    task = _run_task(glance, session, body, out)
    image_id = task['result']['image_id']
    image = session.get('%s/v2/images/%s' % (glance, image_id)).json()
    _say(out, 'result %s: image %s, %s/%s, owner %s, image_type=%s os_type=%s '
              'auto_disk_config=%s' % (json.dumps(task['result']), image['status'],
                                       image['disk_format'], image['container_format'],
                                       image['owner'], image['image_type'], image['os_type'],
                                       image['auto_disk_config']))
    return {'image_id': image_id, 'raw': raw}


def _demo_export(info, session, out, imported):
    """Export the imported image to the demo project's `exports` container and verify it."""
    from rax_glance.swift import dlo
    from rax_glance.vhd import content as vhd_content

    glance = info['glance']['endpoint']
    image_id = imported['image_id']
    body = {'type': 'export', 'input': {'image_uuid': image_id,
                                        'receiving_swift_container': 'exports'}}
    _say(out, '\n== Cloud Images export')
    task = _run_task(glance, session, body, out)
    location = task['result']['export_location']
    container, obj = location.split('/', 1)
    report = dlo.verify_dlo(lambda: project_swift(info, DEMO_PROJECT), container, obj)
    record = report['record'] or {}
    _say(out, 'result %s: DLO of %s segments, %s bytes, sha256 %s: %s'
         % (json.dumps(task['result']), record.get('segment-count'), record.get('size'),
            record.get('sha256'), 'verified' if report['ok'] else 'DAMAGED %s'
            % report['problems']))
    _, exported = project_swift(info, DEMO_PROJECT).get_object(container, obj)
    content = vhd_content.content_from_stream(io.BytesIO(exported), len(exported), 'vhd')
    disk = vhd_content.raw_stream(content).read()
    raw = imported['raw']
    same = disk[:len(raw)] == raw and not disk[len(raw):].strip(b'\0')
    _say(out, 'exported disk content equals the imported disk: %s' % ('yes' if same else 'NO'))
    if not (report['ok'] and same):
        raise SystemExit('demo failed: the export does not match the import')
    return location


def _print_usage(info, out, image_id, export_location=None):
    glance = info['glance']['endpoint']
    swift = info['swift']
    hdr = ' '.join("-H '%s: %s'" % kv for kv in identity_headers().items())
    _say(out, '\n== The stack is up (state dir %s)' % info['state_dir'])
    _say(out, 'glance-api : %s   (identity from headers; loopback only)' % glance)
    _say(out, 'swift auth : %s   user %s  key %s' % (swift['auth_url'], swift['service_user'],
                                                      swift['service_key']))
    _say(out, 'swift URL  : %s' % swift['storage_url_template'])
    _say(out, 'logs       : %s/logs' % info['state_dir'])
    _say(out, '\nTry:')
    _say(out, '  curl -s %s %s/v2/images | python3 -m json.tool' % (hdr, glance))
    _say(out, '  curl -s %s %s/v2/images/%s' % (hdr, glance, image_id))
    _say(out, '  curl -s %s %s/v2/tasks | python3 -m json.tool' % (hdr, glance))
    if export_location:
        _say(out, '  .venv/bin/rax-glance-export-verify --config-file %s --project %s %s'
             % (info['glance'].get('config_file', 'glance-api.conf'), DEMO_PROJECT,
                export_location))
    _say(out, '  .venv/bin/rax-glance-devstack status --json')
    _say(out, '\nStop it with:  .venv/bin/rax-glance-devstack down')
