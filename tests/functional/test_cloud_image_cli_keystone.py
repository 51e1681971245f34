"""`openstack cloud-image ...` with real Keystone password authentication (`--auth keystone`
dev stack): the catalog gives the image endpoint, tasks use the customer's own token."""

import json
import os
import subprocess
import uuid

from tests.functional import tasks_helpers as th
from tests.functional.test_clients_cli import BIN
from tests.functional.test_keystone_stack import Persona
from tests.functional.test_keystone_stack import personas  # noqa: F401 (fixture)
from tests.functional.test_keystone_stack import stack  # noqa: F401 (fixture)


def _cli(stack, home, name):  # noqa: F811
    creds = stack['keystone']['personas'][name]
    config = home / name / '.config' / 'openstack'
    config.mkdir(parents=True)
    (config / 'clouds.yaml').write_text(json.dumps({'clouds': {'rax-ks': {
        'auth_type': 'password',
        'auth': {'auth_url': stack['keystone']['auth_url'], 'username': creds['name'],
                 'password': creds['password'], 'project_name': creds['project'],
                 'user_domain_id': 'default', 'project_domain_id': 'default'}}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    env.update(HOME=str(home / name), OS_CLOUD='rax-ks', PYTHONWARNINGS='ignore')

    def run(*args):
        proc = subprocess.run([str(BIN / 'openstack'), *args], env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert 'Traceback' not in proc.stderr, proc.stderr
        return proc
    return run


def test_import_export_and_refusal_with_keystone(stack, personas, tmp_path):  # noqa: F811
    customer = personas('demo-cloudimages-admin')
    assert isinstance(customer, Persona)
    container = 'osc-%s' % uuid.uuid4().hex[:8]
    th.upload(customer.swift(), container, 'disk.vhd', th.sample_disk(seed=31)[1])
    admin = _cli(stack, tmp_path, 'demo-cloudimages-admin')
    name = 'osc-ks-%s' % uuid.uuid4().hex[:8]

    proc = admin('cloud-image', 'import', '%s/disk.vhd' % container, '--name', name,
                 '--wait', '--poll-interval', '0.5', '-f', 'json')
    assert proc.returncode == 0, proc.stderr
    task = json.loads(proc.stdout)
    assert task['status'] == 'success' and task['owner'] == customer.project_id, task
    proc = admin('cloud-image', 'export', name, container, '--wait', '--poll-interval', '0.5',
                 '-f', 'json')
    assert proc.returncode == 0, proc.stderr
    export = json.loads(proc.stdout)
    assert export['result'] == {'export_location': '%s/%s.vhd' % (
        container, task['result']['image_id'])}, export
    proc = admin('cloud-image', 'task', 'list', '--type', 'export', '-f', 'json')
    assert export['id'] in {r['ID'] for r in json.loads(proc.stdout)}

    observer = _cli(stack, tmp_path, 'demo-observer')
    proc = observer('cloud-image', 'import', '%s/disk.vhd' % container, '--name', 'x',
                    '--wait')
    assert proc.returncode == 1 and proc.stdout == ''
    assert '403 Forbidden: You are not authorized to create tasks.' in proc.stderr, proc.stderr
    proc = observer('cloud-image', 'task', 'show', task['id'], '-f', 'value', '-c', 'status')
    assert proc.returncode == 0 and proc.stdout.strip() == 'success', proc.stderr
