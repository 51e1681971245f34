"""The production identity path on a real Keystone 30 (`rax-glance-devstack up --auth keystone`).

Every request here carries a token that Keystone issued to a persona of the stack (no trusted
headers): glance-api runs the `keystone` paste flavor (keystonemiddleware's authtoken) and
Swift runs authtoken + keystoneauth, so the bundle's default Swift mode `keystone` (the
customer's own token and catalog) does the imports and exports. Keystone's policy is its
defaults plus etc/keystone-policy.yaml.
"""

import datetime
import time
import uuid

import pytest
import requests
import swiftclient

from rax_glance.devstack import keystone as ks
from rax_glance.swift import dlo
from tests.functional import tasks_helpers as th
from tests.functional import vhd_images
from tests.functional.conftest import KEYSTONE_TOKEN_SECONDS

CUSTOMER_CLASSES = {
    # persona suffix -> Cloud Images class (CLOUD_IMAGES.md section 1)
    'user-admin': 'admin', 'admin': 'admin', 'cloudimages-admin': 'admin',
    'creator': 'creator', 'observer': 'observer', 'multi-observer': 'observer',
}


class Persona:
    """A Keystone user of the stack with a project-scoped token, renewed when it expires (the
    stack's tokens live KEYSTONE_TOKEN_SECONDS only, so that tasks can outlive them)."""

    def __init__(self, info, name):
        self.info = info
        self.creds = info['keystone']['personas'].get(name) or \
            info['keystone']['services'][name]
        self.project_id = self.creds['project_id']
        self.glance = info['glance']['endpoint']
        self.session = requests.Session()
        self.renew()

    def renew(self):
        self.token, self.body = ks.get_token(self.info['keystone']['auth_url'],
                                             self.creds['name'], self.creds['password'],
                                             self.creds['project'])
        self.session.headers['X-Auth-Token'] = self.token

    def request(self, method, path, **kwargs):
        kwargs.setdefault('timeout', 120)
        resp = self.session.request(method, self.glance + path, **kwargs)
        if resp.status_code == 401:  # the token expired: a client gets a new one
            self.renew()
            resp = self.session.request(method, self.glance + path, **kwargs)
        return resp

    def get(self, path, **kwargs):
        return self.request('GET', path, **kwargs)

    def post(self, path, **kwargs):
        return self.request('POST', path, **kwargs)

    def put(self, path, **kwargs):
        return self.request('PUT', path, **kwargs)

    def patch(self, path, ops, **kwargs):
        return self.request('PATCH', path, json=ops, headers={
            'Content-Type': 'application/openstack-images-v2.1-json-patch'}, **kwargs)

    def keystone(self, method, path, **kwargs):
        def call():
            headers = dict(kwargs.pop('headers', {}), **{'X-Auth-Token': self.token})
            return requests.request(method, self.info['keystone']['auth_url'] + path,
                                    headers=headers, timeout=60, **kwargs)
        resp = call()
        if resp.status_code == 401:
            self.renew()
            resp = call()
        return resp

    @property
    def storage_url(self):
        return next(ep['url'] for svc in self.body['catalog']
                    if svc['type'] == 'object-store'
                    for ep in svc['endpoints'] if ep['interface'] == 'public')

    def swift(self):
        """swiftclient on the object-store endpoint of this persona's own catalog; it
        authenticates again with the persona's password when the token expires."""
        return swiftclient.Connection(
            preauthurl=self.storage_url, preauthtoken=self.token, retries=2,
            authurl=self.info['keystone']['auth_url'], user=self.creds['name'],
            key=self.creds['password'], auth_version='3', os_options={
                'project_name': self.creds['project'], 'user_domain_id': ks.DOMAIN,
                'project_domain_id': ks.DOMAIN})

    @property
    def project(self):  # what tasks_helpers.image_ids expects of a client
        return self.project_id


@pytest.fixture(scope='module')
def stack(keystone_devstack):
    return keystone_devstack[1]


@pytest.fixture
def personas(stack):
    """personas(name) -> Persona with a fresh token (one per test and name)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = Persona(stack, name)
        return cache[name]
    return get


def _new_image(persona, **fields):
    body = {'name': 'ks-%s' % uuid.uuid4().hex[:8], 'disk_format': 'raw',
            'container_format': 'bare'}
    body.update(fields)
    resp = persona.post('/v2/images', json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_status_json_lists_keystone_and_every_persona(stack):
    keystone = stack['keystone']
    assert keystone['auth_url'].endswith('/v3')
    names = set(keystone['personas'])
    for project in ks.CUSTOMER_PROJECTS:
        assert {'%s-%s' % (project, p) for p in ks.PERSONAS} <= names
    assert 'operator' in names and {'glance', 'swift', 'nova'} <= set(keystone['services'])
    assert stack['glance']['identity'].startswith('keystone')
    assert stack['swift']['auth'] == 'keystone'


def test_every_persona_gets_a_token_with_its_role_and_catalog(stack, personas):
    for name, creds in stack['keystone']['personas'].items():
        persona = personas(name)
        roles = {r['name'] for r in persona.body['roles']}
        assert set(creds['roles']) <= roles, name
        types = {svc['type'] for svc in persona.body['catalog']}
        assert {'image', 'object-store', 'identity'} <= types, name


def test_trusted_headers_mean_nothing_in_the_keystone_flavor(stack):
    resp = requests.get(stack['glance']['endpoint'] + '/v2/images', timeout=60, headers={
        'X-Identity-Status': 'Confirmed', 'X-Project-Id': 'p', 'X-User-Id': 'u',
        'X-Roles': 'rax-glance-operator'})
    assert resp.status_code == 401


@pytest.mark.parametrize('suffix', sorted(CUSTOMER_CLASSES))
def test_role_matrix_subset(personas, suffix):
    """list / create / PATCH / upload / create task, per Cloud Images class, with real tokens."""
    cls = CUSTOMER_CLASSES[suffix]
    persona = personas('demo-' + suffix)
    owner = personas('demo-cloudimages-admin')
    image = _new_image(owner)
    path = '/v2/images/%s' % image['id']

    assert persona.get('/v2/images').status_code == 200
    assert persona.get(path).status_code == 200
    created = persona.post('/v2/images', json={'name': 'm', 'disk_format': 'raw',
                                                'container_format': 'bare'})
    assert created.status_code == (403 if cls == 'observer' else 201), created.text
    patched = persona.patch(path, [{'op': 'replace', 'path': '/name', 'value': 'renamed'}])
    assert patched.status_code == (200 if cls == 'admin' else 403), patched.text
    # Customer data never enters by upload, whatever the role.
    upload = persona.put(path + '/file', data=b'x',
                         headers={'Content-Type': 'application/octet-stream'})
    assert upload.status_code == 403, upload.text
    task = persona.post('/v2/tasks', json={'type': 'import', 'input': {
        'import_from': 'absent/nothing.vhd', 'import_from_format': 'vhd',
        'image_properties': {'name': 'never'}}})
    assert task.status_code == (201 if cls == 'admin' else 403), task.text


def test_projects_are_isolated_and_the_operator_sees_all(personas):
    demo = personas('demo-cloudimages-admin')
    image = _new_image(demo)
    path = '/v2/images/%s' % image['id']
    for other in ('alt-cloudimages-admin', 'alt-admin', 'alt-user-admin'):
        intruder = personas(other)
        assert intruder.get(path).status_code == 404, other
        ids = {i['id'] for i in intruder.get('/v2/images?limit=1000').json()['images']}
        assert image['id'] not in ids, other
        resp = intruder.patch(path, [{'op': 'replace', 'path': '/name', 'value': 'x'}])
        assert resp.status_code == 404, other
        assert intruder.request('DELETE', path).status_code == 404, other
    operator = personas('operator')
    assert operator.get(path).status_code == 200
    resp = operator.put(path + '/file', data=b'operator data',
                        headers={'Content-Type': 'application/octet-stream'})
    assert resp.status_code == 204, resp.text
    assert demo.get(path).json()['status'] == 'active'


def test_customer_swift_account_is_its_own(personas):
    demo, alt = personas('demo-cloudimages-admin'), personas('alt-cloudimages-admin')
    container = 'iso-%s' % uuid.uuid4().hex[:8]
    demo.swift().put_container(container)
    foreign = swiftclient.Connection(preauthurl=demo.storage_url, preauthtoken=alt.token,
                                     retries=0)
    with pytest.raises(swiftclient.ClientException) as exc:
        foreign.get_container(container)
    assert exc.value.http_status == 403


def test_service_token_upload_as_nova_sends_it(personas):
    """Nova uploads a snapshot with the user's token plus its own as X-Service-Token."""
    customer, nova = personas('demo-cloudimages-admin'), personas('nova')
    octets = {'Content-Type': 'application/octet-stream'}
    image = _new_image(customer)
    path = '/v2/images/%s/file' % image['id']
    assert customer.put(path, data=b'snap', headers=octets).status_code == 403
    # A "service token" from a customer (no service role) is no service token.
    fake = personas('demo-admin')
    resp = customer.put(path, data=b'snap', headers=dict(octets,
                                                          **{'X-Service-Token': fake.token}))
    assert resp.status_code in (401, 403), resp.text
    resp = customer.put(path, data=b'snapshot bytes',
                        headers=dict(octets, **{'X-Service-Token': nova.token}))
    assert resp.status_code == 204, resp.text
    got = customer.get('/v2/images/%s' % image['id']).json()
    assert got['status'] == 'active' and got['owner'] == customer.project_id


def test_import_and_export_with_swift_in_keystone_mode(personas):
    """The task reaches the customer's account with the customer's own token and catalog."""
    customer = personas('demo-cloudimages-admin')
    swift = customer.swift()
    container = 'ks-%s' % uuid.uuid4().hex[:8]
    raw, vhd = th.sample_disk(seed=7)
    th.upload(swift, container, 'disk.vhd', vhd)
    task = th.run_import(customer, '%s/disk.vhd' % container)
    assert task['status'] == 'success', task
    image_id = task['result']['image_id']
    image = customer.get('/v2/images/%s' % image_id).json()
    assert image['owner'] == customer.project_id and image['status'] == 'active'

    task = th.run_export(customer, image_id, container)
    assert task['status'] == 'success', task
    location = task['result']['export_location']
    assert location == '%s/%s.vhd' % (container, image_id)
    report = dlo.verify_dlo(customer.swift, container, '%s.vhd' % image_id)
    assert report
    _, exported = swift.get_object(container, '%s.vhd' % image_id)
    disk = vhd_images.vhd_to_raw(exported)
    assert disk[:len(raw)] == raw and not disk[len(raw):].strip(b'\0')

    # Another project's import cannot name this project's object: its own account is read.
    alt = personas('alt-cloudimages-admin')
    task = th.run_import(alt, '%s/disk.vhd' % container)
    assert task['status'] == 'failure', task


# -- the role called `admin` (etc/keystone-policy.yaml) ----------------------------------------

def _user_body(name, project_id=None):
    body = {'name': name, 'domain_id': ks.DOMAIN, 'password': uuid.uuid4().hex}
    if project_id:
        body['default_project_id'] = project_id
    return {'user': body}


@pytest.mark.parametrize('suffix', ['admin', 'user-admin', 'cloudimages-admin'])
def test_customer_admin_is_no_identity_administrator(stack, personas, suffix):
    customer = personas('demo-' + suffix)
    keystone = stack['keystone']
    alt_project = keystone['projects']['alt']
    demo_project = keystone['projects']['demo']
    operator_role = keystone['roles'][ks.OPERATOR_ROLE]
    admin_role = keystone['roles']['admin']
    # No users anywhere (not in its own project either: Keystone has no per-project users).
    assert customer.keystone('POST', '/users', json=_user_body(
        'evil-%s' % uuid.uuid4().hex[:6], alt_project)).status_code == 403
    assert customer.keystone('POST', '/users', json=_user_body(
        'evil-%s' % uuid.uuid4().hex[:6], demo_project)).status_code == 403
    assert customer.keystone('POST', '/projects', json={'project': {
        'name': 'evil-%s' % uuid.uuid4().hex[:6], 'domain_id': ks.DOMAIN}}).status_code == 403
    me = customer.creds['id']
    victim = keystone['personas']['alt-observer']['id']
    # No grants outside its project, and not the operator role anywhere (its own project too).
    for project_id, user_id, role_id in (
            (alt_project, me, admin_role), (alt_project, victim, operator_role),
            (demo_project, me, operator_role), (keystone['projects']['operators'], me,
                                                operator_role)):
        resp = customer.keystone('PUT', '/projects/%s/users/%s/roles/%s'
                                 % (project_id, user_id, role_id))
        assert resp.status_code == 403, (project_id, user_id, role_id, resp.text)
    assert customer.keystone('PUT', '/system/users/%s/roles/%s'
                             % (me, admin_role)).status_code == 403
    assert customer.keystone('GET', '/users').status_code == 403
    assert customer.keystone('GET', '/role_assignments').status_code == 403
    assert customer.keystone('PATCH', '/users/%s' % victim, json={'user': {
        'password': 'taken-over'}}).status_code == 403
    # What any user keeps: itself and its own projects.
    assert customer.keystone('GET', '/users/%s' % me).status_code == 200
    assert customer.keystone('GET', '/users/%s/projects' % me).status_code == 200


def test_system_admin_still_administers_identity(stack):
    """The control: the cloud admin (system scope) can do what the customers above cannot."""
    keystone = stack['keystone']
    token, _ = ks.get_token(keystone['auth_url'], 'admin', keystone['admin']['password'],
                            system=True)
    resp = requests.post(keystone['auth_url'] + '/users', timeout=60,
                         headers={'X-Auth-Token': token},
                         json=_user_body('ok-%s' % uuid.uuid4().hex[:6]))
    assert resp.status_code == 201, resp.text


def test_swiftdlo_store_in_the_glance_users_own_account(stack, personas):
    """The swiftdlo store authenticates as the glance service user through Keystone and keeps
    images in that user's own account, which no customer token reaches."""
    customer, operator = personas('demo-cloudimages-admin'), personas('operator')
    image = _new_image(customer)
    data = b'swift store bytes' * 4096
    resp = operator.put('/v2/images/%s/file' % image['id'], data=data, headers={
        'Content-Type': 'application/octet-stream', 'X-Image-Meta-Store': 'swift'})
    assert resp.status_code == 204, resp.text
    got = operator.get('/v2/images/%s' % image['id']).json()
    assert got['status'] == 'active' and got['stores'] == 'swift'
    assert operator.get('/v2/images/%s/file' % image['id']).content == data
    glance = personas('glance')
    assert glance.storage_url.endswith('AUTH_%s' % stack['keystone']['projects']['service'])
    names = [o['name'] for o in glance.swift().get_container('glance-images',
                                                            full_listing=True)[1]]
    assert image['id'] in names
    foreign = swiftclient.Connection(preauthurl=glance.storage_url,
                                     preauthtoken=customer.token, retries=0)
    with pytest.raises(swiftclient.ClientException) as exc:
        foreign.get_container('glance-images')
    assert exc.value.http_status == 403
    detail = operator.get('/v2/info/stores/detail')
    assert detail.status_code == 200, detail.text
    assert customer.get('/v2/info/stores/detail').status_code == 403


# -- tasks outlive tokens (issue 12 item 3); keep last: it stops and restarts the conductor ---

def _redis_dump(host):
    """Every key and value of the dev stack's Redis (the jobboard), as one bytes blob."""
    import redis

    hostname, _, port = host.rpartition(':')
    client = redis.Redis(host=hostname or host, port=int(port or 6379))
    out = []
    for key in client.scan_iter():
        kind = client.type(key)
        out.append(key)
        if kind == b'string':
            out.append(client.get(key))
        elif kind == b'hash':
            for field, value in client.hgetall(key).items():
                out += [field, value]
        elif kind == b'list':
            out += client.lrange(key, 0, -1)
        elif kind == b'set':
            out += list(client.smembers(key))
        elif kind == b'zset':
            out += client.zrange(key, 0, -1)
    client.close()
    return b'\n'.join(v for v in out if v)

def test_task_queued_on_the_jobboard_outlives_its_token(keystone_devstack, personas):
    """The customer's token expires while the import waits on the jobboard (no conductor);
    a conductor started afterwards still reads the customer's container: Swift accepts the
    expired token because the bundle sends the glance service user's token with it."""
    dev, stack = keystone_devstack
    customer = personas('demo-cloudimages-admin')
    container = 'late-%s' % uuid.uuid4().hex[:8]
    raw, vhd = th.sample_disk(seed=11)
    th.upload(customer.swift(), container, 'disk.vhd', vhd)
    try:
        for rec in dev.conductors():
            if not rec.get('stopped'):
                dev.kill_conductor(rec['index'])
        token, body = ks.get_token(stack['keystone']['auth_url'], customer.creds['name'],
                                   customer.creds['password'], customer.creds['project'])
        resp = requests.post(stack['glance']['endpoint'] + '/v2/tasks', timeout=120,
                             headers={'X-Auth-Token': token}, json={
                                 'type': 'import', 'input': {
                                     'import_from': '%s/disk.vhd' % container,
                                     'import_from_format': 'vhd',
                                     'image_properties': {'name': 'late'}}})
        assert resp.status_code == 201, resp.text
        task_id = resp.json()['id']
        expires = datetime.datetime.fromisoformat(body['expires_at'].replace('Z', '+00:00'))
        wait = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + 3
        assert wait < 2 * KEYSTONE_TOKEN_SECONDS
        time.sleep(max(wait, 0))
        # The token is expired now: Keystone (asked by a service) and glance-api refuse it.
        check = personas('glance').keystone('GET', '/auth/tokens',
                                            headers={'X-Subject-Token': token})
        assert check.status_code == 404, check.text
        assert requests.get(stack['glance']['endpoint'] + '/v2/tasks/%s' % task_id,
                            headers={'X-Auth-Token': token}, timeout=60).status_code == 401
        assert customer.get('/v2/tasks/%s' % task_id).json()['status'] == 'pending'
        # While the job waits, the board holds the token sealed only ([rax_jobboard] auth_keys).
        board = _redis_dump(stack['jobboard']['redis'])
        assert task_id.encode() in board
        assert token.encode() not in board
    finally:
        dev.start_conductor()
    task = th.wait_task(customer, task_id)
    assert task['status'] == 'success', task
    image = customer.get('/v2/images/%s' % task['result']['image_id']).json()
    assert image['status'] == 'active' and image['owner'] == customer.project_id
