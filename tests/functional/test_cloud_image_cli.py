"""`openstack cloud-image ...` (the OpenStackClient plugin in osc-plugin/) and every command of
doc/user-guide.md, run as real CLIs against a real glance-api + Swift with the bundle.

The stack is the token-identity one of test_clients_cli (the CLIs send a token; a test-only
filter turns it into the trusted headers). The guide's commands run in one bash session, in
order; the dev stack has no Keystone, so `swift`, `glance` and `rax-glance-export-verify`
get the persona's credentials from shell functions the test defines (a customer's come from
clouds.yaml or an openrc) and `openstack` from the persona's clouds.yaml.
"""

import hashlib
import json
import os
import pty
import re
import shlex
import subprocess

import yaml

from tests.functional import clients
from tests.functional import tasks_helpers as th
from tests.functional.test_clients_cli import ADMIN
from tests.functional.test_clients_cli import BIN
from tests.functional.test_clients_cli import CREATOR
from tests.functional.test_clients_cli import OBSERVER
from tests.functional.test_clients_cli import REPO
from tests.functional.test_clients_cli import cli_stack  # noqa: F401 (module fixture)
from tests.functional.test_clients_cli import people  # noqa: F401 (fixture)

GUIDE = REPO / 'doc' / 'user-guide.md'


def _wait_all(persona, task_ids):
    http = persona.http()
    try:
        return {task_id: th.wait_task(http, task_id) for task_id in task_ids}
    finally:
        http.close()


def _text(persona, *args):
    """The stdout of a successful `openstack ARGS` (Persona.openstack parses JSON only)."""
    proc = persona._run([str(BIN / 'openstack'), *args], tty_stdin=True)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout.strip()


def _value(persona, *args):
    return _text(persona, *args, '-f', 'value')


# -- the plugin --------------------------------------------------------------------------------

def test_import_wait_export_show_list_and_failures(people, cli_stack):  # noqa: F811
    admin = people(ADMIN)
    swift = clients.project_swift(cli_stack, admin.project)
    raw, vhd = th.sample_disk(seed=16)
    th.upload(swift, 'images', 'disk.vhd', vhd)
    swift.put_container('exports')

    done = admin.openstack('cloud-image', 'import', 'images/disk.vhd', '--name', 'cli import',
                           '--wait', '--poll-interval', '0.5', '-f', 'json')
    assert done['type'] == 'import' and done['status'] == 'success', done
    assert done['message'] == '' and done['owner'] == admin.project
    assert done['input'] == {'import_from': 'images/disk.vhd', 'import_from_format': 'vhd',
                             'image_properties': {'name': 'cli import'}}
    image_id = done['result']['image_id']
    image = admin.openstack('image', 'show', image_id, '-f', 'json')
    assert image['name'] == 'cli import' and image['virtual_size'] == len(raw), image

    # Export by name; the table formatter and `-c` work too.
    proc = admin.openstack('cloud-image', 'export', 'cli import', 'exports', '--wait',
                           '--poll-interval', '0.5')
    assert "export_location='exports/%s.vhd'" % image_id in proc.stdout, proc.stdout
    assert '| status' in proc.stdout and 'success' in proc.stdout
    _, listing = swift.get_container('exports')
    assert '%s.vhd' % image_id in {o['name'] for o in listing}

    # Failures: exit 1, the Cloud Images message on stderr, the failed task on stdout.
    failed = admin.openstack('cloud-image', 'import', 'images/missing.vhd', '--name', 'x',
                             '--wait', '--poll-interval', '0.5', '-f', 'json', ok=False)
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith(
        'Task failed: Image not found for import. Possible invalid location'), failed.stderr
    failed_import = json.loads(failed.stdout)
    assert failed_import['status'] == 'failure'
    failed = admin.openstack('cloud-image', 'export', image_id, 'nope', '--wait',
                             '--poll-interval', '0.5', '-f', 'value', '-c', 'id', ok=False)
    assert failed.returncode == 1
    assert 'Task failed: Container not found. Container: nope' in failed.stderr
    failed_export = failed.stdout.strip()

    # Without --wait: the pending task at once, then task show / list.
    pending = admin.openstack('cloud-image', 'import', 'images/disk.vhd', '--name', 'later',
                              '-f', 'json')
    assert pending['status'] in ('pending', 'processing') and pending['result'] is None
    _wait_all(admin, [pending['id']])
    shown = admin.openstack('cloud-image', 'task', 'show', pending['id'], '-f', 'json')
    assert shown['status'] == 'success' and shown['result']['image_id'], shown
    assert _value(admin, 'cloud-image', 'task', 'show', failed_export, '-c',
                  'message') == 'Container not found. Container: nope'

    rows = admin.openstack('cloud-image', 'task', 'list', '-f', 'json')
    assert {r['ID'] for r in rows} >= {done['id'], pending['id'], failed_import['id'],
                                       failed_export}
    assert len(rows) == 5 and set(rows[0]) == {'ID', 'Type', 'Status', 'Created At',
                                               'Message'}
    exports = admin.openstack('cloud-image', 'task', 'list', '--type', 'export', '-f', 'json')
    assert len(exports) == 2 and {r['Type'] for r in exports} == {'export'}
    failures = admin.openstack('cloud-image', 'task', 'list', '--status', 'failure', '-f',
                               'json')
    assert {r['ID'] for r in failures} == {failed_import['id'], failed_export}
    assert {r['Message'] for r in failures} == {
        'Image not found for import. Possible invalid location',
        'Container not found. Container: nope'}
    yaml_out = _text(admin, 'cloud-image', 'task', 'list', '--type', 'import', '-f', 'yaml')
    assert sorted(r['ID'] for r in yaml.safe_load(yaml_out)) == sorted(
        [done['id'], pending['id'], failed_import['id']]), yaml_out
    assert _value(admin, 'cloud-image', 'task', 'list', '--type', 'export', '--status',
                  'failure', '-c', 'ID') == failed_export


def test_refusals_and_bad_input_are_clear_errors(people, cli_stack):  # noqa: F811
    admin, creator, observer = people(ADMIN), people(CREATOR), people(OBSERVER)
    swift = clients.project_swift(cli_stack, admin.project)
    th.upload(swift, 'images', 'disk.vhd', th.sample_disk(seed=17)[1])

    # Tasks are for customer-admins: observers and creators get the service's refusal.
    for who in (observer, creator):
        proc = who.openstack('cloud-image', 'import', 'images/disk.vhd', '--name', 'n',
                             '--wait', ok=False)
        assert proc.returncode == 1 and proc.stdout == ''
        assert proc.stderr == '403 Forbidden: You are not authorized to create tasks.\n', \
            proc.stderr
    assert observer.openstack('cloud-image', 'task', 'list', '-f', 'json') == []

    task = admin.openstack('cloud-image', 'import', 'images/disk.vhd', '--name', 'mine',
                           '--wait', '--poll-interval', '0.5', '-f', 'json')
    assert task['status'] == 'success', task
    image_id = task['result']['image_id']
    swift.put_container('exports')
    for who in (creator, observer):
        proc = who.openstack('cloud-image', 'export', image_id, 'exports', ok=False)
        assert proc.returncode == 1 and '403 Forbidden' in proc.stderr, proc.stderr
    # Observers and creators see the project's tasks.
    assert task['id'] in {r['ID'] for r in creator.openstack('cloud-image', 'task', 'list',
                                                             '-f', 'json')}
    assert task['id'] in {r['ID'] for r in observer.openstack('cloud-image', 'task', 'list',
                                                              '-f', 'json')}

    # Another project sees nothing of it, by id or by name.
    stranger = people(ADMIN, project_id=clients.new_project())
    proc = stranger.openstack('cloud-image', 'task', 'show', task['id'], ok=False)
    assert proc.returncode == 1 and '404' in proc.stderr, proc.stderr
    for image in (image_id, 'mine'):
        proc = stranger.openstack('cloud-image', 'export', image, 'exports', ok=False)
        assert proc.returncode == 1 and 'No Image found for %s' % image in proc.stderr, \
            proc.stderr

    # Bad input: refused by the CLI before anything is sent, or by the service with its text.
    proc = admin.openstack('cloud-image', 'import', 'disk.vhd', '--name', 'n', ok=False)
    assert 'The source must be CONTAINER/OBJECT' in proc.stderr, proc.stderr
    proc = admin.openstack('cloud-image', 'import', 'images/disk.vhd', ok=False)
    assert proc.returncode == 2 and '--name' in proc.stderr, proc.stderr
    proc = admin.openstack('cloud-image', 'export', image_id, 'a/b', ok=False)
    assert 'container name' in proc.stderr, proc.stderr
    proc = admin.openstack('cloud-image', 'task', 'list', '--status', 'done', ok=False)
    assert proc.returncode == 2 and 'invalid choice' in proc.stderr, proc.stderr
    proc = admin.openstack('cloud-image', 'task', 'show', 'not-a-task', ok=False)
    assert proc.returncode == 1 and '404' in proc.stderr, proc.stderr
    proc = admin.openstack('cloud-image', 'import', 'images/disk.vhd', '--name', 'x' * 300,
                           ok=False)
    assert proc.returncode == 1 and '400 Bad Request' in proc.stderr, proc.stderr
    assert [r['ID'] for r in admin.openstack('cloud-image', 'task', 'list', '-f',
                                             'json')] == [task['id']]


def test_wait_draws_progress_on_a_terminal(people, cli_stack):  # noqa: F811
    """On a terminal `--wait` draws a status line on stderr, then clears it."""
    admin = people(ADMIN)
    swift = clients.project_swift(cli_stack, admin.project)
    th.upload(swift, 'images', 'disk.vhd', th.sample_disk(seed=18)[1])
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [str(BIN / 'openstack'), 'cloud-image', 'import', 'images/disk.vhd', '--name',
             'tty', '--wait', '--poll-interval', '0.2', '-f', 'value', '-c', 'status'],
            env=admin.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
            timeout=300)
        os.close(slave)
        slave = None
        drawn = b''
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    assert proc.returncode == 0 and proc.stdout.decode().strip() == 'success'
    text = drawn.decode()
    assert re.search(r'import (pending|processing)\b.* \d+:\d\d', text), text
    assert text.endswith('\r') and 'Traceback' not in text


# -- doc/user-guide.md --------------------------------------------------------------------------

# Values the guide lets the reader choose, set as the test needs them (small files here).
OVERRIDES = {'SEGMENT_SIZE': '1M'}


def guide_commands(text):
    """[(command, [shown output lines])] of the ```console blocks, in order."""
    commands = []
    for block in re.findall(r'^```console\n(.*?)^```', text, re.S | re.M):
        for line in block.splitlines():
            if line.startswith('$ '):
                commands.append((line[2:], []))
            else:
                assert commands, 'output before any command in %r' % block
                commands[-1][1].append(line)
    return commands


def _checked_lines(shown):
    """The shown output lines that are literal (no <placeholder>, no table rules)."""
    return [line.strip() for line in shown
            if line.strip() and '<' not in line and '...' not in line
            and not line.lstrip().startswith(('+', '|'))]


def test_guide_commands_are_extracted():
    commands = guide_commands(GUIDE.read_text())
    tools = {shlex.split(c)[0].split('=')[0] for c, _ in commands}
    assert {'swift', 'openstack', 'glance', 'rax-glance-export-verify', 'echo', 'test',
            'export'} <= tools | {c.split()[0] for c, _ in commands}, tools
    assert any('--use-slo' in c for c, _ in commands)
    assert any('--use-dlo' in c for c, _ in commands)
    assert any('sha256sum -c' in c for c, _ in commands)
    assert '## 5. Cloning' in GUIDE.read_text()


def test_every_command_of_the_user_guide(people, cli_stack, tmp_path):  # noqa: F811
    admin = people(ADMIN)
    swift_conn = clients.project_swift(cli_stack, admin.project)
    storage_url, swift_token = swift_conn.url, swift_conn.token
    swift_conn.close()
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'my-server.vhd').write_bytes(th.sample_disk(seed=21)[1])
    (work / 'big-server.vhd').write_bytes(th.sample_disk(size=5 * th.MIB + 512, seed=22)[1])

    commands = guide_commands(GUIDE.read_text())
    lines = ['set -u',
             'export PATH=%s:"$PATH"' % shlex.quote(str(BIN)),
             'export RAXT_SWIFT_URL=%s RAXT_SWIFT_TOKEN=%s RAXT_IMAGE_URL=%s RAXT_TOKEN=%s'
             % tuple(map(shlex.quote, (storage_url, swift_token, admin.endpoint,
                                       admin.token))),
             'swift() { OS_STORAGE_URL=$RAXT_SWIFT_URL OS_AUTH_TOKEN=$RAXT_SWIFT_TOKEN '
             'command swift "$@"; }',
             'rax-glance-export-verify() { OS_STORAGE_URL=$RAXT_SWIFT_URL '
             'OS_AUTH_TOKEN=$RAXT_SWIFT_TOKEN command rax-glance-export-verify "$@"; }',
             'glance() { command glance --os-image-url "$RAXT_IMAGE_URL" '
             '--os-auth-token "$RAXT_TOKEN" "$@"; }',
             '__rc=0']
    for i, (command, _) in enumerate(commands):
        match = re.match(r'export (\w+)=', command)
        if match and match.group(1) in OVERRIDES:
            command = 'export %s=%s' % (match.group(1), OVERRIDES[match.group(1)])
        lines += ["printf '\\n@@CMD %d@@\\n'" % i, '(exit $__rc)',
                  '{ %s\n} 2>&1 </dev/null' % command,
                  '__rc=$?', "printf '\\n@@RC %d %%d@@\\n' $__rc" % i]
    proc = subprocess.run(['bash', '-c', '\n'.join(lines)], cwd=work, env=admin.env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for i, (command, shown) in enumerate(commands):
        section = re.search(r'@@CMD %d@@\n(.*)\n@@RC %d (\d+)@@' % (i, i), out, re.S)
        assert section, (command, out[-3000:])
        text, rc = section.group(1), int(section.group(2))
        assert 'Traceback' not in text, (command, text)
        next_command = commands[i + 1][0] if i + 1 < len(commands) else ''
        if next_command == 'echo $?':
            assert rc != 0, (command, text)
        else:
            assert rc == 0, (command, rc, text)
        got = [line.strip() for line in text.splitlines()]
        for line in _checked_lines(shown):
            assert line in got, (command, line, text)

    # What the guide did, seen through the API: three imports and two exports succeeded,
    # one import failed; the export is intact and was downloaded whole.
    http = admin.http()
    try:
        tasks = http.get('/v2/tasks').json()['tasks']
        finished = _wait_all(admin, [t['id'] for t in tasks])
        names = {}
        for task in finished.values():
            if task['type'] == 'import' and task['status'] == 'success':
                image = http.get('/v2/images/%s' % task['result']['image_id']).json()
                names[image['name']] = image
    finally:
        http.close()
    statuses = sorted((t['type'], t['status']) for t in finished.values())
    assert statuses == [('export', 'success')] * 2 + [('import', 'failure')] + \
        [('import', 'success')] * 3, finished
    assert set(names) == {'My server', 'Big server', 'Big server (SLO)'}
    image_id = names['My server']['id']
    exported = (work / 'exported.vhd').read_bytes()
    swift_conn = clients.project_swift(cli_stack, admin.project)
    try:
        headers, body = swift_conn.get_object('exports', '%s.vhd' % image_id)
        assert body == exported and int(headers['x-object-meta-rax-dlo-size']) == len(body)
        # glanceclient's export (a new VHD: its footer carries its own timestamp).
        headers, body = swift_conn.get_object('backups', '%s.vhd' % image_id)
        assert headers['x-object-meta-rax-dlo-sha256'] == hashlib.sha256(body).hexdigest()
        _, segs = swift_conn.get_container('images_segments')
        assert len(segs) >= 10  # the DLO's and the SLO's segments: 1 MiB each
    finally:
        swift_conn.close()
