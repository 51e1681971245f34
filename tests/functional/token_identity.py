"""Test-only paste filter: the identity of a request comes from its X-Auth-Token.

python-glanceclient's CLI cannot send custom headers (it talks to an explicit endpoint only
with `--os-image-url` + `--os-auth-token`), and openstackclient's `admin_token` auth sends
only a token too. The CLI tests therefore encode the identity that the `trusted-headers`
flavor expects into the token, `rax-test.` + urlsafe base64 of
{"project": ..., "user": ..., "roles": "r1,r2"}, and this filter, first after `json-errors` in a
test flavor, turns it into X-Identity-Status/X-Project-Id/X-User-Id/X-Roles. Never shipped in
etc/: `paste_ini()` writes a copy of the bundle's paste file with the extra flavor.
"""

import base64
import json
import re

PREFIX = 'rax-test.'
FLAVOR = 'test-token'
_IDENTITY = ('HTTP_X_IDENTITY_STATUS', 'HTTP_X_PROJECT_ID', 'HTTP_X_TENANT_ID',
             'HTTP_X_USER_ID', 'HTTP_X_ROLES', 'HTTP_X_SERVICE_ROLES')


def token(project, user, roles):
    raw = json.dumps({'project': project, 'user': user, 'roles': roles}).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode()


# openstackclient resolves a project named in `image add project` / `image set --project`
# through Keystone. Glance's tests have no Keystone; a customer asking real Keystone about
# another project gets 403, and openstackclient then uses the id as given. This prefix answers
# as Keystone would: its v3 version document, and 403 for everything else.
IDENTITY_PREFIX = '/rax-test-identity/v3'


def _identity(environ, start_response):
    path = environ.get('PATH_INFO', '')
    if path.rstrip('/') == IDENTITY_PREFIX:
        host = 'http://%s' % environ['HTTP_HOST']
        status, body = '200 OK', {'version': {
            'id': 'v3.14', 'status': 'stable', 'updated': '2020-04-07T00:00:00Z',
            'media-types': [{'base': 'application/json',
                             'type': 'application/vnd.openstack.identity-v3+json'}],
            'links': [{'rel': 'self', 'href': host + IDENTITY_PREFIX + '/'}]}}
    else:
        status, body = '403 Forbidden', {'error': {
            'code': 403, 'title': 'Forbidden',
            'message': 'You are not authorized to perform the requested action: '
                       'identity:get_project.'}}
    data = json.dumps(body).encode()
    start_response(status, [('Content-Type', 'application/json'),
                            ('Content-Length', str(len(data)))])
    return [data]


def filter_factory(global_conf, **local_conf):
    def make(app):
        def middleware(environ, start_response):
            if environ.get('PATH_INFO', '').startswith(IDENTITY_PREFIX):
                return _identity(environ, start_response)
            for key in _IDENTITY:  # nothing but the token decides
                environ.pop(key, None)
            value = environ.get('HTTP_X_AUTH_TOKEN', '')
            if value.startswith(PREFIX):
                ident = json.loads(base64.urlsafe_b64decode(value[len(PREFIX):]))
                environ.update({'HTTP_X_IDENTITY_STATUS': 'Confirmed',
                                'HTTP_X_PROJECT_ID': ident['project'],
                                'HTTP_X_USER_ID': ident['user'],
                                'HTTP_X_ROLES': ident['roles']})
            return app(environ, start_response)
        return middleware
    return make


def paste_ini(source, dest):
    """Copy the bundle's paste ini `source` to `dest` with the `test-token` flavor added."""
    text = open(source).read()
    line = re.search(r'^trusted-headers = json-errors (.*)$', text, re.M)
    assert line, 'trusted-headers flavor not found in %s' % source
    text = text.replace(line.group(0), '%s\n%s = json-errors token-identity %s'
                        % (line.group(0), FLAVOR, line.group(1)))
    text += ('\n[composite:glance-api-%s]\n'
             'paste.composite_factory = glance.api:root_app_factory\n'
             '/: api\n/healthcheck: healthcheck-json\n' % FLAVOR)
    text += ('\n[filter:token-identity]\n'
             'paste.filter_factory = tests.functional.token_identity:filter_factory\n')
    with open(dest, 'w') as fh:
        fh.write(text)
    return dest
