"""A real Keystone 30 for the dev stack (`rax-glance-devstack up --auth keystone`).

Keystone runs from its own virtualenv (`.venv-keystone`, made by tools/bootstrap from
keystone-constraints.txt: its pins need not match Glance's), under gunicorn with one worker and
one thread (sqlite answers "database is locked" otherwise), its database and fernet keys under
`<state>/keystone`. Keystone 30 has no `keystone-wsgi-public` script and
`keystone.wsgi.api` parses `sys.argv` at import (gunicorn's own arguments make it exit), so a
tiny module written next to the config loads it with a clean argv.

Keystone's policy is Keystone's defaults plus the bundle's override `etc/keystone-policy.yaml`
(a customer's project-scoped `admin` role is no identity administrator there).

`bootstrap()` then creates, through Keystone's API with the system-scoped bootstrap admin: the
service project, the Cloud Images roles, the operator role, the `service` and `swiftoperator`
roles, the service users (glance, swift, nova), two customer projects with one user per
Cloud Images persona, an operator, and the `image` and `object-store` catalog entries.
"""

import os
import secrets
import subprocess
import time
from pathlib import Path

import requests

from rax_glance.devstack import process

REGION = 'RegionOne'
DOMAIN = 'default'
SERVICE_PROJECT = 'service'
OPERATOR_ROLE = 'rax-glance-operator'
SWIFT_OPERATOR_ROLE = 'swiftoperator'
SERVICE_ROLE = 'service'
CLOUD_IMAGES_ROLES = ('cloudImages:admin', 'cloudImages:creator', 'cloudImages:observer',
                      'identity:user-admin', 'observer')
# persona -> the Cloud Images role it holds on its customer project. Every customer persona also
# holds `swiftoperator` (its own Cloud Files account), as a Cloud Files customer would.
PERSONAS = {
    'user-admin': 'identity:user-admin',
    'admin': 'admin',
    'cloudimages-admin': 'cloudImages:admin',
    'creator': 'cloudImages:creator',
    'observer': 'cloudImages:observer',
    'multi-observer': 'observer',
}
CUSTOMER_PROJECTS = ('demo', 'alt')
SERVICE_USERS = ('glance', 'swift', 'nova')
WSGI_MODULE = '''\
"""Keystone's WSGI app for gunicorn (written by rax_glance.devstack.keystone)."""
import sys

# keystone.wsgi.api parses sys.argv at import and rejects gunicorn's own arguments.
sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401
'''


def venv_dir():
    """Keystone's virtualenv: $RAX_GLANCE_KEYSTONE_VENV, else the checkout's .venv-keystone."""
    env = os.environ.get('RAX_GLANCE_KEYSTONE_VENV')
    path = Path(env) if env else Path(__file__).resolve().parents[2] / '.venv-keystone'
    if not (path / 'bin' / 'keystone-manage').exists():
        raise process.StackError(
            'Keystone is not installed in %s: run tools/bootstrap (it makes .venv-keystone '
            'from keystone-constraints.txt) or set RAX_GLANCE_KEYSTONE_VENV' % path)
    return path


def policy_file():
    from rax_glance.devstack.glance import etc_dir

    return etc_dir() / 'keystone-policy.yaml'


class KeystoneServer:
    def __init__(self, state_dir):
        self.dir = Path(state_dir) / 'keystone'
        self.venv = venv_dir()
        self.port = None
        self.admin_password = secrets.token_urlsafe(16)

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    @property
    def auth_url(self):
        return self.url + '/v3'

    @property
    def config_file(self):
        return self.dir / 'keystone.conf'

    def configure(self, token_expiration=3600):
        self.port = process.free_port()
        for sub in ('fernet-keys', 'credential-keys'):
            (self.dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = [
            '[DEFAULT]', 'use_stderr = true', '',
            '[database]', 'connection = sqlite:///%s' % (self.dir / 'keystone.sqlite'), '',
            '[token]', 'provider = fernet', 'expiration = %d' % token_expiration, '',
            '[fernet_tokens]', 'key_repository = %s' % (self.dir / 'fernet-keys'), '',
            '[credential]', 'key_repository = %s' % (self.dir / 'credential-keys'), '',
            '[oslo_policy]', 'policy_file = %s' % policy_file(), '',
        ]
        self.config_file.write_text('\n'.join(lines))
        (self.dir / 'keystone_app.py').write_text(WSGI_MODULE)

    def _manage(self, logs_dir, *args):
        log = Path(logs_dir) / 'keystone-manage.log'
        import grp
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        extra = ['--keystone-user', user, '--keystone-group', group] \
            if args[0] in ('fernet_setup', 'credential_setup') else []
        with open(log, 'ab') as fh:
            result = subprocess.run(
                [str(self.venv / 'bin' / 'keystone-manage'), '--config-file',
                 str(self.config_file)] + list(args) + extra,
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if result.returncode:
            raise process.StackError('keystone-manage %s failed (exit %d); see %s'
                                     % (args[0], result.returncode, log))

    def setup(self, logs_dir):
        """Schema, fernet and credential keys, and `keystone-manage bootstrap` (the admin
        user with the system-scoped admin role, the identity endpoint)."""
        self._manage(logs_dir, 'db_sync')
        self._manage(logs_dir, 'fernet_setup')
        self._manage(logs_dir, 'credential_setup')
        # `--opt=value`: a random password may start with '-', which argparse would take
        # for an option.
        self._manage(logs_dir, 'bootstrap', '--bootstrap-password=%s' % self.admin_password,
                     '--bootstrap-region-id', REGION,
                     '--bootstrap-public-url', self.auth_url,
                     '--bootstrap-internal-url', self.auth_url)

    def start(self, logs_dir, on_spawn, timeout=90.0):
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(self.config_file),
                   OS_KEYSTONE_CONFIG_DIR=str(self.dir))
        env.pop('VIRTUAL_ENV', None)
        argv = [str(self.venv / 'bin' / 'gunicorn'),
                '--bind', '127.0.0.1:%d' % self.port,
                # sqlite: one worker, one thread, or "database is locked".
                '--workers', '1', '--threads', '1', '--timeout', '120',
                '--chdir', str(self.dir), '--pythonpath', str(self.dir),
                '--access-logfile', '-', '--error-logfile', '-',
                '--name', 'keystone', 'keystone_app:application']
        rec = process.spawn('keystone', argv, Path(logs_dir) / 'keystone.log', env=env,
                            cwd=str(self.dir))
        on_spawn(rec)
        process.wait_http_ok('keystone', self.auth_url, rec, timeout)
        return rec


def password_auth(username, password, project=None, system=False):
    scope = ({'system': {'all': True}} if system else
             {'project': {'name': project, 'domain': {'id': DOMAIN}}} if project else None)
    body = {'auth': {'identity': {'methods': ['password'], 'password': {'user': {
        'name': username, 'domain': {'id': DOMAIN}, 'password': password}}}}}
    if scope:
        body['auth']['scope'] = scope
    return body


def get_token(auth_url, username, password, project=None, system=False):
    """(token, token body) for a user, scoped to `project` (by name) or to the system."""
    resp = requests.post(auth_url + '/auth/tokens',
                         json=password_auth(username, password, project, system),
                         timeout=60)
    if resp.status_code != 201:
        raise process.StackError('Keystone refused a token for %s (HTTP %s): %s'
                                 % (username, resp.status_code, resp.text[:300]))
    return resp.headers['X-Subject-Token'], resp.json()['token']


class _Admin:
    """Keystone's API as the bootstrap admin (system scope)."""

    def __init__(self, auth_url, password):
        self.auth_url = auth_url
        token, _ = get_token(auth_url, 'admin', password, system=True)
        self.session = requests.Session()
        self.session.headers['X-Auth-Token'] = token

    def call(self, method, path, expect=(200, 201, 204), **kwargs):
        for attempt in range(5):
            resp = self.session.request(method, self.auth_url + path, timeout=60, **kwargs)
            if resp.status_code not in (500, 503) or attempt == 4:
                break
            time.sleep(0.5)
        if resp.status_code not in expect:
            raise process.StackError('Keystone %s %s answered %s: %s'
                                     % (method, path, resp.status_code, resp.text[:300]))
        return resp.json() if resp.content else None

    def create(self, kind, plural, body):
        return self.call('POST', '/' + plural, json={kind: body})[kind]

    def grant(self, project_id, user_id, role_id):
        self.call('PUT', '/projects/%s/users/%s/roles/%s' % (project_id, user_id, role_id))


def bootstrap(keystone, swift_url, glance_url=None):
    """Create the stack's identity world; returns its description (ids, personas, passwords).
    `swift_url` is the proxy's base URL; the image endpoint is added by `add_image_endpoint`."""
    admin = _Admin(keystone.auth_url, keystone.admin_password)
    roles = {r['name']: r['id'] for r in admin.call('GET', '/roles')['roles']}
    for name in CLOUD_IMAGES_ROLES + (OPERATOR_ROLE, SERVICE_ROLE, SWIFT_OPERATOR_ROLE,
                                      'ResellerAdmin'):
        if name not in roles:
            roles[name] = admin.create('role', 'roles', {'name': name})['id']
    projects = {}
    for name in (SERVICE_PROJECT, 'operators') + CUSTOMER_PROJECTS:
        projects[name] = admin.create('project', 'projects', {
            'name': name, 'domain_id': DOMAIN,
            'description': 'rax-glance dev stack'})['id']

    def user(name, project, role_names):
        password = secrets.token_urlsafe(12)
        uid = admin.create('user', 'users', {'name': name, 'domain_id': DOMAIN,
                                             'password': password,
                                             'default_project_id': projects[project]})['id']
        for role in role_names:
            admin.grant(projects[project], uid, roles[role])
        return {'name': name, 'id': uid, 'password': password, 'project': project,
                'project_id': projects[project], 'roles': list(role_names)}

    services = {}
    for name in SERVICE_USERS:
        role_names = [SERVICE_ROLE]
        if name == 'glance':
            # Its own Swift account holds the swiftdlo store's images.
            role_names.append(SWIFT_OPERATOR_ROLE)
        services[name] = user(name, SERVICE_PROJECT, role_names)
    personas = {}
    for project in CUSTOMER_PROJECTS:
        for persona, role in PERSONAS.items():
            personas['%s-%s' % (project, persona)] = user(
                '%s-%s' % (project, persona), project, [role, SWIFT_OPERATOR_ROLE])
    personas['operator'] = user('operator', 'operators', [OPERATOR_ROLE])

    swift_service = admin.create('service', 'services', {'type': 'object-store',
                                                         'name': 'swift'})['id']
    for interface in ('public', 'internal'):
        admin.create('endpoint', 'endpoints', {
            'service_id': swift_service, 'interface': interface, 'region_id': REGION,
            'url': swift_url + '/v1/AUTH_$(project_id)s'})
    info = {
        'url': keystone.url, 'auth_url': keystone.auth_url, 'region': REGION,
        'admin': {'name': 'admin', 'password': keystone.admin_password,
                  'scope': 'system'},
        'projects': projects, 'roles': roles, 'services': services, 'personas': personas,
    }
    if glance_url:
        add_image_endpoint(info, glance_url)
    return info


def add_image_endpoint(info, glance_url):
    admin = _Admin(info['auth_url'], info['admin']['password'])
    image_service = admin.create('service', 'services', {'type': 'image',
                                                         'name': 'glance'})['id']
    for interface in ('public', 'internal'):
        admin.create('endpoint', 'endpoints', {
            'service_id': image_service, 'interface': interface, 'region_id': REGION,
            'url': glance_url})


def authtoken_section(info, service='glance'):
    """A [keystone_authtoken] section for `service`'s user (glance or swift)."""
    user = info['services'][service]
    return {
        'www_authenticate_uri': info['auth_url'],
        'auth_url': info['auth_url'],
        'auth_type': 'password',
        'username': user['name'],
        'password': user['password'],
        'project_name': SERVICE_PROJECT,
        'user_domain_id': DOMAIN,
        'project_domain_id': DOMAIN,
        'region_name': REGION,
        # A service token (X-Service-Token, as Nova sends) counts only with the service role.
        'service_token_roles': SERVICE_ROLE,
        'service_token_roles_required': 'true',
    }

