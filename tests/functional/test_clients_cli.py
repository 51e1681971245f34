"""The real command-line clients Cloud Images users run work unchanged (issue 11).

python-glanceclient 4.13 (`glance task-create/task-show/task-list`) and python-openstackclient
10.5 with openstacksdk 4.22 (`openstack image ...`, `openstack image task ...`), pinned in
test-requirements.txt, run as subprocesses against a real glance-api + Swift with the bundle.
Neither CLI can send the trusted-headers identity, so this module's stack uses a test-only
flavor that reads the identity from the token (tests/functional/token_identity.py); everything
after it is the bundle's own `trusted-headers` pipeline.
"""

import json
import os
import pty
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rax_glance.devstack import glance as devstack_glance
from rax_glance.devstack.stack import DevStack
from tests.functional import clients
from tests.functional import tasks_helpers as th
from tests.functional import token_identity
from tests.functional.conftest import TEST_GLANCE_CONFIG

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
ADMIN, CREATOR, OBSERVER = 'cloudImages:admin', 'cloudImages:creator', 'cloudImages:observer'


@pytest.fixture(scope='module')
def cli_stack(tmp_path_factory):
    etc = tmp_path_factory.mktemp('cli-etc')
    ini = token_identity.paste_ini(devstack_glance.etc_dir() / 'glance-api-paste.ini',
                                   etc / 'glance-api-paste.ini')
    config = dict(TEST_GLANCE_CONFIG,
                  paste_deploy={'config_file': str(ini), 'flavor': token_identity.FLAVOR})
    dev = DevStack(tmp_path_factory.mktemp('cli-devstack'))
    saved = os.environ.get('PYTHONPATH')
    # glance-api imports the test filter from this checkout.
    os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), saved]))
    try:
        info = dev.up(glance_config=config)
    except Exception:
        dev.down()
        raise
    finally:
        if saved is None:
            os.environ.pop('PYTHONPATH', None)
        else:
            os.environ['PYTHONPATH'] = saved
    yield info
    dev.down()


class Persona:
    """One user of one project running the real CLIs (own $HOME: no shared client caches)."""

    def __init__(self, info, home, project, roles):
        self.info = info
        self.endpoint = info['glance']['endpoint']
        self.project = project
        self.user = 'user-%s' % uuid.uuid4().hex[:8]
        self.roles = roles
        self.token = token_identity.token(project, self.user, roles)
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
        self.env.update(HOME=str(home), PYTHONWARNINGS='ignore', OS_CLOUD='rax-test')
        # openstacksdk: the image service at the endpoint (version discovery as usual); the
        # identity lookups of `image add project`/`set --project` at the test flavor's stand-in
        # for Keystone (tests/functional/token_identity.py).
        config = home / '.config' / 'openstack'
        config.mkdir(parents=True)
        (config / 'clouds.yaml').write_text(json.dumps({'clouds': {'rax-test': {
            'auth_type': 'admin_token',
            'auth': {'endpoint': self.endpoint + '/v2', 'token': self.token},
            'image_endpoint_override': self.endpoint,
            'identity_endpoint_override': self.endpoint + token_identity.IDENTITY_PREFIX,
        }}}))

    def _run(self, argv, tty_stdin=False):
        # A terminal on stdin: `openstack image create` then sends no image data, as for a
        # user at a shell (with a pipe it would upload stdin).
        master = slave = None
        if tty_stdin:
            master, slave = pty.openpty()
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                  stdin=slave if tty_stdin else subprocess.DEVNULL,
                                  timeout=300)
        finally:
            for fd in (master, slave):
                if fd is not None:
                    os.close(fd)
        assert 'Traceback' not in proc.stderr, proc.stderr
        return proc

    def openstack(self, *args, ok=True):
        proc = self._run([str(BIN / 'openstack'), *args], tty_stdin=True)
        assert (proc.returncode == 0) == ok, (args, proc.returncode, proc.stdout, proc.stderr)
        if ok and '-f' in args and proc.stdout.strip():
            return json.loads(proc.stdout)
        return proc

    def glance(self, *args, ok=True):
        proc = self._run([str(BIN / 'glance'), '--os-image-url', self.endpoint,
                          '--os-auth-token', self.token, *args])
        assert (proc.returncode == 0) == ok, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def http(self):
        """A plain HTTP client with this identity (for polling and checks)."""
        return _http(self.endpoint, self.project, self.roles, self.user)


def _http(endpoint, project, roles, user):
    client = clients.GlanceClient(endpoint, project, roles, user)
    client.session.headers['X-Auth-Token'] = token_identity.token(project, client.user, roles)
    return client


def _table(text):
    """glanceclient's `| Property | Value |` table as a dict."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r'^\|\s*(\S+)\s*\|\s?(.*?)\s*\|$', line)
        if match and match.group(1) != 'Property':
            rows[match.group(1)] = match.group(2)
    return rows


def _list_ids(text):
    return set(re.findall(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
                          text))


@pytest.fixture
def people(cli_stack, tmp_path):
    project = clients.new_project()

    def make(roles, project_id=project):
        home = tmp_path / uuid.uuid4().hex[:8]
        home.mkdir()
        return Persona(cli_stack, home, project_id, roles)

    return make


def _operator_upload(info, image_id, data):
    http = _http(info['glance']['endpoint'], 'operators', clients.OPERATOR_ROLES, 'operator')
    try:
        http.upload(image_id, data)
    finally:
        http.close()


# -- python-glanceclient: tasks ------------------------------------------------------------

def test_glance_task_commands_import_export_and_failures(people, cli_stack):
    admin = people(ADMIN)
    swift = clients.project_swift(cli_stack, admin.project)
    raw, vhd = th.sample_disk(seed=11)
    th.upload(swift, 'exports', 'disk.vhd', vhd)

    # Import, with image_properties {} (Rackspace's own test framework sends that).
    created = _table(admin.glance('task-create', '--type', 'import', '--input', json.dumps({
        'import_from': 'exports/disk.vhd', 'import_from_format': 'vhd',
        'image_properties': {}})).stdout)
    assert created['type'] == 'import' and created['status'] == 'pending', created
    assert created['owner'] == admin.project and created['message'] == ''
    http = admin.http()
    try:
        done = th.wait_task(http, created['id'])
        assert done['status'] == 'success', done
        image_id = done['result']['image_id']
        shown = _table(admin.glance('task-show', created['id']).stdout)
        assert shown['status'] == 'success' and image_id in shown['result']
        # virtual_size is the VHD's disk size; size is the stored package's.
        image = http.get('/v2/images/%s' % image_id).json()
        assert image['virtual_size'] == len(raw), image
        assert image['size'] == len(http.get('/v2/images/%s/file' % image_id).content)
        assert image['name'] is None  # no name given: Glance's null name

        # Export of that image, then a failing export and a failing import.
        export = _table(admin.glance('task-create', '--type', 'export', '--input', json.dumps({
            'image_uuid': image_id, 'receiving_swift_container': 'exports'})).stdout)
        assert th.wait_task(http, export['id'])['status'] == 'success'
        shown = _table(admin.glance('task-show', export['id']).stdout)
        assert 'exports/%s.vhd' % image_id in shown['result'], shown
        bad_export = _table(admin.glance('task-create', '--type', 'export', '--input',
                                         json.dumps({'image_uuid': image_id,
                                                     'receiving_swift_container': 'nope'})
                                         ).stdout)
        bad_import = _table(admin.glance('task-create', '--type', 'import', '--input',
                                         json.dumps({'import_from': 'exports/missing.vhd'})
                                         ).stdout)
        for task_id, message in ((bad_export['id'], 'Container not found. Container: nope'),
                                 (bad_import['id'], 'Image not found for import')):
            assert th.wait_task(http, task_id)['status'] == 'failure'
            shown = _table(admin.glance('task-show', task_id).stdout)
            assert shown['status'] == 'failure' and message in shown['message'], shown
    finally:
        http.close()

    listed = admin.glance('task-list').stdout
    assert _list_ids(listed) >= {created['id'], export['id'], bad_export['id'],
                                 bad_import['id']}
    filtered = admin.glance('task-list', '--type', 'export', '--sort-key', 'status',
                            '--sort-dir', 'asc').stdout
    assert _list_ids(filtered) == {export['id'], bad_export['id']}
    paged = admin.glance('task-list', '--page-size', '1', '--status', 'failure').stdout
    assert _list_ids(paged) == {bad_export['id'], bad_import['id']}

    # Refusals are clean client errors, not validation crashes.
    observer = people(OBSERVER)
    proc = observer.glance('task-create', '--type', 'import', '--input',
                           json.dumps({'import_from': 'exports/disk.vhd'}), ok=False)
    assert 'You are not authorized to create tasks.' in proc.stderr, proc.stderr
    assert created['id'] in observer.glance('task-list').stdout
    proc = admin.glance('task-create', '--type', 'import', '--input',
                        json.dumps({'import_from': 7}), ok=False)
    assert 'import_from in input must be a non-empty string.' in proc.stderr, proc.stderr
    stranger = people(ADMIN, project_id=clients.new_project())
    proc = stranger.glance('task-show', created['id'], ok=False)
    assert 'not found' in proc.stderr.lower(), proc.stderr
    assert created['id'] not in stranger.glance('task-list').stdout


# -- openstackclient: images -----------------------------------------------------------------

OWNER_SPECIFIED = ('owner_specified.openstack.md5', 'owner_specified.openstack.sha256',
                   'owner_specified.openstack.object')


@pytest.mark.parametrize('roles', [CREATOR, ADMIN, 'admin', 'identity:user-admin'])
def test_openstack_image_create_as_creator_and_admins(people, roles):
    user = people(roles)
    image = user.openstack('image', 'create', 'made-by-cli', '-f', 'json')
    assert image['name'] == 'made-by-cli' and image['status'] == 'queued', image
    assert image['owner'] == user.project
    props = image.get('properties') or {}
    assert all(key in props for key in OWNER_SPECIFIED), image
    listed = user.openstack('image', 'list', '-f', 'json')
    assert image['id'] in {row['ID'] for row in listed}
    assert user.openstack('image', 'show', image['id'], '-f', 'json')['id'] == image['id']


@pytest.mark.parametrize('roles', [OBSERVER, 'observer'])
def test_openstack_image_create_refused_for_observers(people, roles):
    proc = people(roles).openstack('image', 'create', 'nope', ok=False)
    assert '403' in proc.stderr or 'Forbidden' in proc.stderr, proc.stderr


def test_creator_may_not_smuggle_other_properties_at_create(people):
    creator = people(CREATOR)
    for prop in ('foo=bar', 'com.rackspace__1__options=0', 'owner_specified.openstack.x=1'):
        proc = creator.openstack('image', 'create', 'nope', '--property', prop, ok=False)
        assert '403' in proc.stderr, proc.stderr
    assert creator.openstack('image', 'list', '-f', 'json') == []


def test_openstack_image_lifecycle_by_persona(people, cli_stack, tmp_path):
    admin, creator, observer = people(ADMIN), people(CREATOR), people(OBSERVER)
    image = creator.openstack('image', 'create', 'shared-one', '--disk-format', 'raw',
                              '--container-format', 'bare', '-f', 'json')
    _operator_upload(cli_stack, image['id'], b'disk bytes' * 100)

    for who in (admin, creator, observer):
        assert who.openstack('image', 'show', image['id'], '-f', 'json')['status'] == 'active'
        assert image['id'] in {r['ID'] for r in who.openstack('image', 'list', '-f', 'json')}

    # set: customer-admins only; creators and observers get a clean refusal.
    for who in (creator, observer):
        proc = who.openstack('image', 'set', '--name', 'renamed', image['id'], ok=False)
        assert '403' in proc.stderr or 'Forbidden' in proc.stderr, proc.stderr
        who.openstack('image', 'set', '--property', 'foo=bar', image['id'], ok=False)
        # The checksums a creator may set at create time are an admin's to change.
        who.openstack('image', 'set', '--property', 'owner_specified.openstack.md5=x',
                      image['id'], ok=False)
    admin.openstack('image', 'set', '--name', 'renamed', '--property', 'foo=bar',
                    '--property', 'owner_specified.openstack.md5=abc', image['id'])
    shown = admin.openstack('image', 'show', image['id'], '-f', 'json')
    assert shown['name'] == 'renamed' and shown['properties']['foo'] == 'bar', shown
    assert shown['properties']['owner_specified.openstack.md5'] == 'abc'
    proc = admin.openstack('image', 'set', '--property', 'com.rackspace__1__options=0',
                           image['id'], ok=False)
    assert '403' in proc.stderr, proc.stderr

    # save (download): customer-admins of the owner only.
    out = tmp_path / 'saved.img'
    admin.openstack('image', 'save', '--file', str(out), image['id'])
    assert out.read_bytes() == b'disk bytes' * 100
    for who in (creator, observer):
        target = tmp_path / ('%s.img' % who.user)
        proc = who.openstack('image', 'save', '--file', str(target), image['id'], ok=False)
        # openstacksdk 4.22 does not check the status of the download: it hashes the 403's
        # body and reports a checksum mismatch. The server's answer is the 403 itself.
        assert '403' in proc.stderr or 'checksum mismatch' in proc.stderr, proc.stderr
        assert not target.exists() or b'disk bytes' not in target.read_bytes()
        http = who.http()
        try:
            resp = http.get('/v2/images/%s/file' % image['id'])
            assert resp.status_code == 403 and resp.json()['error']['message'], resp.text
        finally:
            http.close()

    # add project (share): creators and admins; observers not. Accept: the consumer's admin.
    consumer_project = clients.new_project()
    observer.openstack('image', 'add', 'project', image['id'], consumer_project, ok=False)
    creator.openstack('image', 'add', 'project', image['id'], consumer_project)
    consumer_creator = people(CREATOR, project_id=consumer_project)
    consumer_admin = people(ADMIN, project_id=consumer_project)
    # `--project` names the consumer: with Keystone the CLI takes it from the token.
    consumer_creator.openstack('image', 'set', '--project', consumer_project, '--accept',
                               image['id'], ok=False)
    consumer_admin.openstack('image', 'set', '--project', consumer_project, '--accept',
                             image['id'])
    assert image['id'] in {r['ID'] for r in consumer_admin.openstack('image', 'list', '-f',
                                                                      'json')}
    # The consumer cannot change or delete what is shared with it.
    consumer_admin.openstack('image', 'set', '--name', 'mine', image['id'], ok=False)
    consumer_admin.openstack('image', 'delete', image['id'], ok=False)
    stranger = people(ADMIN, project_id=clients.new_project())
    stranger.openstack('image', 'show', image['id'], ok=False)

    # delete: customer-admins only.
    for who in (creator, observer):
        who.openstack('image', 'delete', image['id'], ok=False)
    admin.openstack('image', 'delete', image['id'])
    admin.openstack('image', 'show', image['id'], ok=False)


def test_openstack_image_task_list_and_show(people, cli_stack):
    admin, observer = people(ADMIN), people(OBSERVER)
    http = admin.http()
    try:
        task = th.post_import(http, 'exports/missing.vhd')
        th.wait_task(http, task['id'])
    finally:
        http.close()
    for who in (admin, observer):
        rows = who.openstack('image', 'task', 'list', '-f', 'json')
        assert task['id'] in {r['ID'] for r in rows}, rows
        shown = who.openstack('image', 'task', 'show', task['id'], '-f', 'json')
        assert shown['id'] == task['id'] and shown['status'] == 'failure', shown
    stranger = people(ADMIN, project_id=clients.new_project())
    assert stranger.openstack('image', 'task', 'list', '-f', 'json') == []
    stranger.openstack('image', 'task', 'show', task['id'], ok=False)
