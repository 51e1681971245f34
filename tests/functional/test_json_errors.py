"""Every error answer is JSON with the same message whatever Accept says (doc/api.md section 4).

Real glance-api with the bundle: Glance's own errors (401 without identity, 403 by policy, 404,
405, 400, 415), the bundle's (tasks API) and paths nobody serves, times a list of Accept
headers a browser, an XML client or curl sends.
"""

import json
import uuid

import pytest
import requests

from rax_glance.devstack import demo
from tests.functional import clients

ACCEPTS = [None, '*/*', 'text/html', 'application/xml', 'text/plain', 'application/json',
           'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'image/png',
           'application/xml;q=1.0, application/json;q=0.1']

_MISSING = str(uuid.uuid4())
# (name, roles or None for no identity, method, path, kwargs, status)
CASES = [
    ('no identity', None, 'GET', '/v2/images', {}, 401),
    ('observer creates', 'cloudImages:observer', 'POST', '/v2/images', {'json': {}}, 403),
    ('observer posts task', 'cloudImages:observer', 'POST', '/v2/tasks',
     {'json': {'type': 'import', 'input': {'import_from': 'c/o'}}}, 403),
    ('missing image', 'cloudImages:admin', 'GET', '/v2/images/%s' % _MISSING, {}, 404),
    ('missing task', 'cloudImages:admin', 'GET', '/v2/tasks/%s' % _MISSING, {}, 404),
    ('unknown path', 'cloudImages:admin', 'GET', '/v2/nothing-here', {}, 404),
    ('schema delete', 'cloudImages:admin', 'DELETE', '/v2/schemas/image', {}, 405),
    ('task delete', 'cloudImages:admin', 'DELETE', '/v2/tasks/%s' % _MISSING, {}, 405),
    ('bad json', 'cloudImages:admin', 'POST', '/v2/images',
     {'data': b'{not json', 'headers': {'Content-Type': 'application/json'}}, 400),
    ('bad task', 'cloudImages:admin', 'POST', '/v2/tasks', {'json': {'type': 'bogus'}}, 400),
    ('bad list filter', 'cloudImages:admin', 'GET', '/v2/images?limit=-7', {}, 400),
    ('bad patch type', 'cloudImages:admin', 'PATCH', '/v2/images/%s' % _MISSING,
     {'data': b'[]', 'headers': {'Content-Type': 'text/plain'}}, 415),
]


def _request(endpoint, project, roles, method, path, kwargs, accept):
    headers = dict(kwargs.get('headers', {}))
    if roles is not None:
        headers.update(demo.identity_headers(project, 'user-json', roles))
    if accept is not None:
        headers['Accept'] = accept
    else:
        headers['Accept'] = None  # requests then sends no Accept at all
    extra = {k: v for k, v in kwargs.items() if k != 'headers'}
    return requests.request(method, endpoint + path, headers=headers, timeout=120, **extra)


@pytest.mark.parametrize('name,roles,method,path,kwargs,status', CASES,
                         ids=[c[0] for c in CASES])
def test_errors_are_json_whatever_accept(stack_info, name, roles, method, path, kwargs,
                                         status):
    endpoint = stack_info['glance']['endpoint']
    project = clients.new_project()
    messages = {}
    for accept in ACCEPTS:
        resp = _request(endpoint, project, roles, method, path, kwargs, accept)
        assert resp.status_code == status, (accept, resp.status_code, resp.text)
        assert resp.headers['Content-Type'].split(';')[0] == 'application/json', \
            (accept, resp.headers['Content-Type'], resp.text)
        body = json.loads(resp.text)
        assert set(body) == {'error'}, body
        assert body['error']['code'] == status and body['error']['title'], body
        message = body['error']['message']
        assert message and 'Traceback' not in message
        assert '<html' not in resp.text.lower() and '<br' not in message
        messages[accept] = message
    assert len(set(messages.values())) == 1, messages


def test_successes_are_unchanged(stack_info):
    glance = clients.GlanceClient(stack_info['glance']['endpoint'], clients.new_project(),
                                  clients.CUSTOMER_ADMIN_ROLES)
    try:
        resp = glance.get('/v2/images', headers={'Accept': 'text/html'})
        assert resp.status_code == 200 and resp.json()['images'] == []
        # Media-type version negotiation still works.
        resp = glance.get('/images', headers={'Accept': 'application/vnd.openstack.images-v2'})
        assert resp.status_code == 200 and 'images' in resp.json()
    finally:
        glance.close()
