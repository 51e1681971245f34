"""Issue 10 class 2 (image owner transfer) and class 5 (existence oracles) on the real stack.

Every JSON-patch operation x every core attribute of Glance's image schema that a customer may
not change x every customer persona answers 403 with a JSON body, and afterwards the image is
exactly as before (owner unchanged, still in its owner's list, not in the other project's).
Glance 33 alone saves a customer-admin's `add` on `/owner` before answering 403; the bundle's
`cloudimages-image-patch-guard` filter refuses it first. The set of attributes comes from the
running glance-api's own `/v2/schemas/image`, so an attribute a Glance upgrade adds is covered.
"""

import html
import http.client
import json
import urllib.parse
import uuid

import pytest

from tests.functional import clients
from tests.functional.test_rbac_matrix import OPERATOR_ROLE
from tests.functional.test_rbac_matrix import PERSONAS

V21 = 'application/openstack-images-v2.1-json-patch'
V20 = 'application/openstack-images-v2.0-json-patch'
DATA = b'image patch guard\n'

# What doc/api.md section 1 lets a customer-admin change among the core attributes
# ("PATCH image (any property, incl. name)"); every other schema attribute is Glance's.
CUSTOMER_EDITABLE = {'name', 'visibility', 'protected', 'os_hidden', 'container_format',
                     'disk_format', 'min_ram', 'min_disk', 'tags'}
CUSTOMER_PERSONAS = [roles for roles, klass in PERSONAS if klass != 'operator']


def _value(attribute, world):
    """A value of the right type, so Glance would apply it if nothing stopped it."""
    return {
        'owner': world['O'], 'id': str(uuid.uuid4()), 'status': 'active',
        'locations': [{'url': 'file:///etc/passwd', 'metadata': {}}],
        'checksum': 'a' * 32, 'os_hash_algo': 'md5', 'os_hash_value': 'a' * 128,
        'size': 1, 'virtual_size': 1, 'created_at': '2020-01-01T00:00:00Z',
        'updated_at': '2020-01-01T00:00:00Z', 'tags': ['t'],
    }.get(attribute, '/v2/elsewhere')


def _operations(attribute, world):
    """(media type, patch document) for every way to touch `attribute`."""
    value = _value(attribute, world)
    paths = ['/' + attribute]
    if attribute == 'owner':  # spellings Glance decodes to `owner`
        paths += ['//owner', '/ owner', '/owner\t']
    docs = []
    for path in paths:
        add_path = '/locations/-' if attribute == 'locations' else path
        item = value[0] if attribute == 'locations' else value
        remove_path = '/locations/0' if attribute == 'locations' else path
        docs += [
            (V21, [{'op': 'add', 'path': add_path, 'value': item}]),
            (V21, [{'op': 'replace', 'path': path, 'value': value}]),
            (V21, [{'op': 'remove', 'path': remove_path}]),
            (V21, [{'op': 'move', 'from': '/name', 'path': path}]),
            (V21, [{'op': 'move', 'from': path, 'path': '/x_moved'}]),
            (V21, [{'op': 'copy', 'from': '/name', 'path': path}]),
            (V21, [{'op': 'copy', 'from': path, 'path': '/x_copied'}]),
            # An allowed change first does not make the forbidden one pass.
            (V21, [{'op': 'replace', 'path': '/name', 'value': 'renamed'},
                   {'op': 'add', 'path': add_path, 'value': item}]),
            (V20, [{'add': add_path, 'value': item}]),
            (V20, [{'replace': path, 'value': value}]),
            (V20, [{'remove': remove_path}]),
        ]
    return docs


def _patch(client, image_id, content_type, doc):
    return client.request('PATCH', '/v2/images/%s' % image_id, data=json.dumps(doc),
                          headers={'Content-Type': content_type})


def _is_json_403(resp):
    if resp.status_code != 403 or not resp.headers.get('Content-Type', '').startswith(
            'application/json'):
        return False
    try:
        return bool(resp.json().get('error', {}).get('message'))
    except ValueError:
        return False


def _listed(client, image_id):
    resp = client.get('/v2/images', params={'limit': 1000})
    assert resp.status_code == 200, resp.text
    return image_id in [image['id'] for image in resp.json()['images']]


@pytest.fixture(scope='module')
def world(stack_info):
    endpoint = stack_info['glance']['endpoint']
    made = []

    def client(project, roles):
        c = clients.GlanceClient(endpoint, project, roles)
        made.append(c)
        return c

    w = {'P': clients.new_project(), 'O': clients.new_project(),
         'OPS': 'ops-%s' % uuid.uuid4().hex[:12], 'client': client}
    w['p_admin'] = client(w['P'], 'cloudImages:admin')
    w['o_admin'] = client(w['O'], 'cloudImages:admin')
    w['operator'] = client(w['OPS'], OPERATOR_ROLE)
    image = w['p_admin'].create_image(name='guarded', my_note='n')
    w['p_admin'].upload_as_operator(image['id'], DATA)  # active: checksum, size, locations
    w['image'] = image['id']
    schema = w['p_admin'].get('/v2/schemas/image')
    assert schema.status_code == 200, schema.text
    w['schema_attributes'] = set(schema.json()['properties'])
    yield w
    for c in made:
        c.close()


def _snapshot(world):
    resp = world['operator'].get('/v2/images/%s' % world['image'])
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_schema_has_the_attributes_the_issue_names(world):
    guarded = world['schema_attributes'] - CUSTOMER_EDITABLE
    assert {'owner', 'id', 'status', 'locations', 'checksum', 'os_hash_algo', 'os_hash_value',
            'size', 'virtual_size', 'created_at', 'updated_at', 'direct_url', 'file', 'schema',
            'self'} <= guarded
    assert CUSTOMER_EDITABLE <= world['schema_attributes']


@pytest.mark.parametrize('roles', CUSTOMER_PERSONAS)
def test_no_customer_patch_touches_a_core_attribute(world, roles):
    customer = world['client'](world['P'], roles)
    before = _snapshot(world)
    assert before['owner'] == world['P'] and before['status'] == 'active'
    failures = []
    for attribute in sorted(world['schema_attributes'] - CUSTOMER_EDITABLE):
        for content_type, doc in _operations(attribute, world):
            resp = _patch(customer, world['image'], content_type, doc)
            if not _is_json_403(resp):
                failures.append((attribute, content_type[-13:], doc, resp.status_code,
                                 resp.headers.get('Content-Type'), resp.text[:160]))
    after = _snapshot(world)
    assert after == before, 'the image changed: %r' % {
        k: (before.get(k), after.get(k)) for k in set(before) | set(after)
        if before.get(k) != after.get(k)}
    assert _listed(world['p_admin'], world['image'])
    assert not _listed(world['o_admin'], world['image'])
    assert not failures, '%d cells not refused with a JSON 403, e.g. %r' % (
        len(failures), failures[:5])


def test_owner_add_by_customer_admin_leaves_the_owner(world):
    """The reported attack, spelled out."""
    resp = _patch(world['p_admin'], world['image'], V21,
                  [{'op': 'add', 'path': '/owner', 'value': world['O']}])
    assert _is_json_403(resp), resp.text
    assert "'owner'" in resp.json()['error']['message']
    assert _snapshot(world)['owner'] == world['P']
    assert world['p_admin'].get('/v2/images/%s' % world['image']).status_code == 200
    assert world['o_admin'].get('/v2/images/%s' % world['image']).status_code == 404


@pytest.mark.parametrize('roles', ['cloudImages:admin', 'admin', 'identity:user-admin'])
def test_customer_admins_still_edit_what_they_may(world, roles):
    admin = world['client'](world['P'], roles)
    image = world['p_admin'].create_image(name='editable')
    for doc in ([{'op': 'replace', 'path': '/name', 'value': 'renamed'}],
                [{'op': 'replace', 'path': '/min_ram', 'value': 512}],
                [{'op': 'replace', 'path': '/min_disk', 'value': 2}],
                [{'op': 'replace', 'path': '/os_hidden', 'value': True}],
                [{'op': 'replace', 'path': '/protected', 'value': False}],
                [{'op': 'replace', 'path': '/tags', 'value': ['a', 'b']}],
                [{'op': 'replace', 'path': '/disk_format', 'value': 'qcow2'}],
                [{'op': 'replace', 'path': '/visibility', 'value': 'shared'}],
                [{'op': 'add', 'path': '/owner_note', 'value': 'mine'}],
                [{'op': 'add', 'path': '/my~1owner', 'value': 'x'}]):
        resp = _patch(admin, image['id'], V21, doc)
        assert resp.status_code == 200, (doc, resp.text)
    resp = _patch(admin, image['id'], V20, [{'replace': '/name', 'value': 'v20'}])
    assert resp.status_code == 200 and resp.json()['name'] == 'v20', resp.text
    shown = admin.get('/v2/images/%s' % image['id']).json()
    assert shown['owner'] == world['P'] and shown['my/owner'] == 'x'
    assert shown['min_ram'] == 512 and shown['tags'] in (['a', 'b'], ['b', 'a'])


def test_operator_still_does_what_the_policy_gives_it(world):
    operator = world['operator']
    image = world['p_admin'].create_image(name='to-transfer')
    resp = _patch(operator, image['id'], V21,
                  [{'op': 'replace', 'path': '/owner', 'value': world['O']}])
    assert resp.status_code == 200 and resp.json()['owner'] == world['O'], resp.text
    assert world['o_admin'].get('/v2/images/%s' % image['id']).status_code == 200
    resp = _patch(operator, image['id'], V21,
                  [{'op': 'add', 'path': '/owner', 'value': world['P']}])
    assert resp.status_code == 200 and resp.json()['owner'] == world['P'], resp.text
    # Glance's own checks still apply to the operator: read-only attributes stay read-only.
    resp = _patch(operator, image['id'], V21,
                  [{'op': 'replace', 'path': '/status', 'value': 'active'}])
    assert resp.status_code == 403, resp.text
    assert _snapshot(dict(world, image=image['id']))['status'] == 'queued'


def test_patch_bodies_are_bounded_and_parsed_safely(world):
    admin = world['p_admin']
    image_id = world['image']
    # A body declared larger than the limit is refused before it is read: send only the
    # headers (the server answers without reading, so a client still sending would be cut off).
    url = urllib.parse.urlsplit(admin.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        conn.putrequest('PATCH', '/v2/images/%s' % image_id)
        for key, value in dict(admin.session.headers, **{
                'Content-Type': V21, 'Content-Length': str(3 << 20)}).items():
            conn.putheader(key, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 413 and json.loads(body)['error']['code'] == 413, body[:300]
    for raw in (b'[' * 100000 + b']' * 100000, b'\xff\xfe[]', b'[{"op": "add"'):
        resp = admin.request('PATCH', '/v2/images/%s' % image_id, data=raw,
                             headers={'Content-Type': V21})
        assert resp.status_code == 400 and resp.json()['error']['code'] == 400, resp.text[:300]
    resp = _patch(admin, image_id, V21, [{'op': 'add', 'path': ['owner'], 'value': 'x'}])
    assert resp.status_code == 400, resp.text
    # A chunked body (no Content-Length) is read with the same bound.
    resp = admin.request('PATCH', '/v2/images/%s' % image_id, headers={'Content-Type': V21},
                         data=iter([b'[{"op": "add", "path": "/owner", ',
                                    b'"value": "%s"}]' % world['O'].encode()]))
    assert _is_json_403(resp), resp.text
    resp = admin.request('PATCH', '/v2/images/%s' % image_id, headers={'Content-Type': V21},
                         data=iter([b'[{"op": "replace", "path": "/my_note", ',
                                    b'"value": "chunked"}]']))
    assert resp.status_code == 200 and resp.json()['my_note'] == 'chunked', resp.text
    assert _snapshot(world)['owner'] == world['P']


# -- class 5: existence oracles -----------------------------------------------------------

def _same_answer(resp_a, id_a, resp_b, id_b):
    def norm(resp, image_id):
        return (resp.status_code, resp.headers.get('Content-Type'),
                html.unescape(resp.text).replace(image_id, '<ID>'))
    return norm(resp_a, id_a) == norm(resp_b, id_b)


@pytest.mark.parametrize('roles', CUSTOMER_PERSONAS)
def test_list_marker_of_a_hidden_image_answers_like_an_unknown_one(world, roles):
    customer = world['client'](world['P'], roles)
    hidden = world['o_admin'].create_image(name='hidden', visibility='private')['id']
    unknown = str(uuid.uuid4())
    resp_hidden = customer.get('/v2/images', params={'marker': hidden})
    resp_unknown = customer.get('/v2/images', params={'marker': unknown})
    assert _same_answer(resp_hidden, hidden, resp_unknown, unknown), (
        resp_hidden.status_code, resp_hidden.text, resp_unknown.status_code,
        resp_unknown.text)
    if resp_unknown.status_code == 400:  # readers: the list itself is allowed
        own = customer.get('/v2/images', params={'marker': world['image']})
        assert own.status_code == 200, own.text


def test_operator_may_page_from_any_image(world):
    hidden = world['o_admin'].create_image(name='hidden-op', visibility='private')['id']
    resp = world['operator'].get('/v2/images', params={'marker': hidden})
    assert resp.status_code == 200, resp.text


def test_creating_an_existing_id_answers_the_same_for_any_owner(world):
    """Decision (doc/security.md): Glance's 409 stays. It is the same answer for an
    id of the caller's own image, of another project's private image and of a deleted image,
    so it confirms only that an id the caller already knows is taken."""
    admin = world['p_admin']
    other = world['o_admin'].create_image(name='other-private')['id']
    own = admin.create_image(name='own')['id']
    deleted = admin.create_image(name='deleted')['id']
    assert admin.delete('/v2/images/%s' % deleted).status_code == 204
    answers = {}
    for key, image_id in (('other', other), ('own', own), ('deleted', deleted)):
        resp = admin.post('/v2/images', json={'id': image_id, 'name': 'dup',
                                              'disk_format': 'raw',
                                              'container_format': 'bare'})
        answers[key] = (resp, image_id)
    assert answers['other'][0].status_code == 409
    assert _same_answer(*answers['other'], *answers['own'])
    assert _same_answer(*answers['other'], *answers['deleted'])
    # Nothing about the other project's image leaks through the answer.
    assert 'other-private' not in answers['other'][0].text
    assert world['o_admin'].get('/v2/images/%s' % other).json()['owner'] == world['O']



# Metadata definition namespaces: another project's private namespace is a missing one.
_NS_READS = ('', '/objects', '/properties', '/tags', '/resource_types', '/objects/o1',
             '/properties/p1', '/tags/t1')


@pytest.fixture(scope='module')
def namespaces(world):
    operator = world['operator']
    hidden = 'rax-hidden-%s' % uuid.uuid4().hex[:8]
    public = 'rax-public-%s' % uuid.uuid4().hex[:8]
    for name, visibility, owner in ((hidden, 'private', world['O']),
                                    (public, 'public', world['OPS'])):
        resp = operator.post('/v2/metadefs/namespaces', json={
            'namespace': name, 'visibility': visibility, 'owner': owner})
        assert resp.status_code == 201, resp.text
        resp = operator.post('/v2/metadefs/namespaces/%s/objects' % name,
                             json={'name': 'o1', 'properties': {}})
        assert resp.status_code == 201, resp.text
    yield {'hidden': hidden, 'public': public}
    for name in (hidden, public):
        operator.delete('/v2/metadefs/namespaces/%s' % name)


@pytest.mark.parametrize('roles', ['cloudImages:admin', 'cloudImages:observer', ''])
def test_hidden_metadef_namespace_answers_like_a_missing_one(world, namespaces, roles):
    customer = world['client'](world['P'], roles)
    hidden, unknown = namespaces['hidden'], 'rax-nope-%s' % uuid.uuid4().hex[:8]
    failures = []
    for rest in _NS_READS:
        resp_hidden = customer.get('/v2/metadefs/namespaces/%s%s' % (hidden, rest))
        resp_unknown = customer.get('/v2/metadefs/namespaces/%s%s' % (unknown, rest))
        if not _same_answer(resp_hidden, hidden, resp_unknown, unknown):
            failures.append((rest, resp_hidden.status_code, resp_hidden.text[-150:],
                             resp_unknown.status_code, resp_unknown.text[-150:]))
    resp_hidden = customer.get('/v2/metadefs/namespaces', params={'marker': hidden})
    resp_unknown = customer.get('/v2/metadefs/namespaces', params={'marker': unknown})
    if not _same_answer(resp_hidden, hidden, resp_unknown, unknown):
        failures.append(('?marker', resp_hidden.status_code, resp_hidden.text[-150:],
                         resp_unknown.status_code, resp_unknown.text[-150:]))
    assert not failures, failures


def test_errors_inside_a_readable_namespace_stay_glance_s(world, namespaces):
    reader = world['client'](world['P'], 'cloudImages:observer')
    public = namespaces['public']
    assert reader.get('/v2/metadefs/namespaces/%s' % public).status_code == 200
    assert reader.get('/v2/metadefs/namespaces/%s/objects/o1' % public).status_code == 200
    missing = reader.get('/v2/metadefs/namespaces/%s/objects/nope' % public)
    assert missing.status_code == 404 and 'nope' in html.unescape(missing.text), missing.text
    assert public in html.unescape(missing.text) or 'object' in missing.text.lower()
    assert reader.get('/v2/metadefs/namespaces', params={'marker': public}).status_code == 200
    # The operator reads the private namespace as before.
    resp = world['operator'].get('/v2/metadefs/namespaces/%s' % namespaces['hidden'])
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize('roles', ['cloudImages:admin', 'admin', 'cloudImages:creator'])
def test_create_cannot_set_core_attributes_either(world, roles):
    """Nor at creation: Glance 33 refuses most core attributes in POST /v2/images itself but
    answered 201 to `os_hash_algo` (handled as an extra property);
    the guard refuses them all (`id` is the customer's choice, `owner` the add_image policy's).
    """
    creator = world['client'](world['P'], roles)
    failures = []
    for attribute in sorted(world['schema_attributes'] - CUSTOMER_EDITABLE - {'id'}):
        name = 'core-%s' % attribute
        resp = creator.post('/v2/images', json={'name': name, 'disk_format': 'raw',
                                                'container_format': 'bare',
                                                attribute: _value(attribute, world)})
        # Another project as `owner`: Glance's add_image policy refuses it (403).
        ok = resp.status_code == 403 if attribute == 'owner' else _is_json_403(resp)
        if not ok:
            failures.append((attribute, resp.status_code, resp.text[:200]))
    listed = world['operator'].get('/v2/images', params={'owner': world['O'], 'limit': 1000})
    assert listed.status_code == 200, listed.text
    assert not [i for i in listed.json()['images'] if i['name'].startswith('core-')]
    assert not failures, failures
