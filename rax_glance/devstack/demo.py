"""`rax-glance-devstack demo`: show a running stack working, then how to use and stop it."""

import hashlib
import os
import uuid

import requests
import swiftclient

DEMO_PROJECT = 'demo'
DEMO_USER = 'demo-user'
# A customer-admin in Cloud Images terms (etc/policy.yaml needs no stock member/reader).
DEMO_ROLES = 'cloudImages:admin'


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

    _say(out, '== Glance: create, upload and download an image as project %r' % DEMO_PROJECT)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    resp = session.post(glance + '/v2/images', json={
        'name': 'rax-glance demo %s' % uuid.uuid4().hex[:8], 'disk_format': 'raw',
        'container_format': 'bare'})
    resp.raise_for_status()
    image = resp.json()
    _say(out, 'created image %s (status %s)' % (image['id'], image['status']))
    resp = session.put('%s/v2/images/%s/file' % (glance, image['id']), data=payload,
                       headers={'Content-Type': 'application/octet-stream'})
    resp.raise_for_status()
    resp = session.get('%s/v2/images/%s/file' % (glance, image['id']))
    resp.raise_for_status()
    same = hashlib.sha256(resp.content).digest() == hashlib.sha256(payload).digest()
    _say(out, 'uploaded and downloaded %d bytes: %s' % (len(payload),
                                                         'identical' if same else 'DIFFERENT'))
    if not same:
        raise SystemExit('demo failed: downloaded image differs from upload')

    _say(out, '\n== Swift: a container and object in project %r\'s account' % DEMO_PROJECT)
    conn = project_swift(info, DEMO_PROJECT)
    conn.put_container('exports')
    conn.put_object('exports', 'hello.txt', contents=b'hello from rax-glance\n')
    _, body = conn.get_object('exports', 'hello.txt')
    _say(out, 'put and got exports/hello.txt: %r' % body)

    _print_usage(info, out, image['id'])


def _print_usage(info, out, image_id):
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
    _say(out, '  .venv/bin/rax-glance-devstack status --json')
    _say(out, '\nStop it with:  .venv/bin/rax-glance-devstack down')
