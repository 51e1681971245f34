"""`rax-glance-export-verify` (the installed console script) against the real Swift."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import swiftclient

from rax_glance.swift import dlo
from tests.functional import clients
from tests.functional.swift_helpers import SEG
from tests.functional.swift_helpers import project_access
from tests.functional.swift_helpers import random_bytes

CLI = str(Path(sys.executable).parent / 'rax-glance-export-verify')


def run(*args):
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    assert 'Traceback' not in proc.stderr + proc.stdout
    return proc


@pytest.fixture
def exported(stack_info):
    """An intact export in a fresh project; (project, swift access, raw connection)."""
    project = clients.new_project()
    swift = project_access(stack_info['swift'], project)
    conn = swift.connection()
    conn.put_container('exports')
    dlo.write_dlo(swift, 'exports', 'img.vhd', io.BytesIO(random_bytes(3 * SEG + 7)),
                  segment_size=SEG)
    return project, swift, conn


def _service_args(stack_info, project):
    # glance-api.conf of the stack holds [rax_swift] service credentials.
    return ['--project', project, '--config-file', stack_info['glance']['config_file']]


def test_intact_export(stack_info, exported):
    project, swift, conn = exported
    proc = run('exports/img.vhd', *_service_args(stack_info, project))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'RESULT   : INTACT' in proc.stdout
    assert 'records %d bytes in 4 segment(s)' % (3 * SEG + 7) in proc.stdout

    # Same check with a storage URL and token, as a customer would run it, in JSON.
    token = conn.token
    proc = run('exports/img.vhd', '--os-storage-url', swift.storage_url,
               '--os-auth-token', token, '--json')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report['ok'] is True and report['bytes_read'] == 3 * SEG + 7


def test_deleted_segment(stack_info, exported):
    project, swift, conn = exported
    conn.delete_object('exports', 'img.vhd-00002')
    proc = run('exports/img.vhd', *_service_args(stack_info, project))
    assert proc.returncode == 1
    assert 'PROBLEM  : segment img.vhd-00002 is missing' in proc.stdout
    assert 'RESULT   : DAMAGED' in proc.stdout


def test_stray_object(stack_info, exported):
    project, swift, conn = exported
    conn.put_object('exports', 'img.vhd-00005', b'extra')
    proc = run('exports/img.vhd', *_service_args(stack_info, project), '--skip-data')
    assert proc.returncode == 1
    assert 'unexpected object img.vhd-00005 under the segment prefix' in proc.stdout


def test_not_a_verifiable_export(stack_info, exported):
    project, swift, conn = exported
    conn.put_object('exports', 'plain.vhd', b'just an object')
    proc = run('exports/plain.vhd', *_service_args(stack_info, project))
    assert proc.returncode == 1
    assert 'not a verifiable Dynamic Large Object' in proc.stdout
    proc = run('exports/absent.vhd', *_service_args(stack_info, project))
    assert proc.returncode == 1
    assert 'Object not found: exports/absent.vhd' in proc.stdout


def test_user_credentials_reach_only_their_own_account(stack_info):
    info = stack_info['swift']
    demo = info['project_users']['demo']
    url, token = swiftclient.get_auth(info['auth_url'], demo['user'], demo['key'],
                                      auth_version='1')
    conn = swiftclient.Connection(preauthurl=url, preauthtoken=token)
    conn.put_container('exports')
    swift = project_access(info, 'demo')
    try:
        dlo.delete_dlo(swift, 'exports', 'cli-user.vhd')
    except Exception:
        pass
    dlo.write_dlo(swift, 'exports', 'cli-user.vhd', io.BytesIO(b'x' * 1000),
                  segment_size=SEG)
    creds = ['--os-auth-url', info['auth_url'], '--os-username', demo['user'],
             '--os-password', demo['key'], '--auth-version', '1']
    proc = run('exports/cli-user.vhd', *creds)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Another project's export is not reachable with these credentials.
    other = clients.new_project()
    proc = run('exports/cli-user.vhd', '--os-storage-url',
               info['storage_url_template'] % {'project_id': other}, '--os-auth-token',
               token)
    assert proc.returncode == 2
    assert 'denied access (403)' in proc.stderr


@pytest.mark.parametrize('args,message', [
    (['nocontainer'], 'Expected CONTAINER/OBJECT'),
    (['exports/x.vhd'], 'Say how to reach Swift'),
    (['exports/x.vhd', '--os-storage-url', 'http://127.0.0.1:1/v1/AUTH_x'],
     'go together'),
    (['exports/x.vhd', '--project', '../AUTH_x', '--config-file', '/dev/null'],
     'Not a valid project id'),
    (['exports/x.vhd', '--os-storage-url', 'http://127.0.0.1:9/v1/AUTH_x',
      '--os-auth-token', 'tok'], 'Checking exports/x.vhd: cannot connect to Swift'),
])
def test_usage_errors(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
